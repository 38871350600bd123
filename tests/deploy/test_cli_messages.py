"""What `export` and `compile` print: the numbers say what they count, a wrong input names the
command that makes the right one."""

from __future__ import annotations

import jax
import pytest
from tiny_training import untrained_workdir

from kws_jax import errors, models
from kws_jax.deploy import iree_compile, stablehlo_export
from kws_jax.runs import trained_model


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  root = tmp_path_factory.mktemp("messages")
  return untrained_workdir(root / "qs", root / "data", root / "cache", name="dscnn", filters=8)


def run(main, argv, capsys) -> tuple[int, str, str]:
  capsys.readouterr()
  with pytest.raises(SystemExit) as exited:
    errors.run_cli(main, [str(a) for a in argv])
  out, err = capsys.readouterr()
  return exited.value.code, out, err


def test_export_counts_model_parameters_apart_from_the_exported_constants(workdir, tmp_path,
                                                                            capsys):
  code, out, _ = run(stablehlo_export.main, ["--workdir", workdir, "--out", tmp_path / "e"],
                     capsys)
  assert code == 0
  variables = trained_model.load(workdir).variables
  params = models.count_params(variables["params"])
  stats = sum(x.size for x in jax.tree.leaves(variables["batch_stats"]))
  meta = stablehlo_export.load_meta(tmp_path / "e")
  assert meta["num_weights"] == params + stats and stats > 0
  assert f" {params} parameters + {stats} batch_stats = {meta['num_weights']} exported weights;" in out


def test_compile_given_a_workdir_suggests_the_export_command(workdir, tmp_path, capsys):
  code, _, err = run(iree_compile.main, [workdir, "--target", "host-cpu", "--out",
                                         tmp_path / "c"], capsys)
  assert code == 2
  assert err.splitlines() == [
      f"error: {workdir} is a training workdir, not an export; export it first with "
      f"`python -m kws_jax.export --workdir {workdir} --out exports/qs` and use exports/qs"]
