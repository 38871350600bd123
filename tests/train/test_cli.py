"""The training command line's closing line."""

from __future__ import annotations

from kws_jax.train import cli, loop


def test_a_run_without_test_clips_names_its_workdir(repo_root, tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(loop, "train_and_evaluate", lambda config, workdir: {"accuracy": None})
  workdir = tmp_path / "mine"
  assert cli.main([str(repo_root / "experiments" / "custom_words.py"), "--workdir", str(workdir),
                   "--config.data.data_dir=/words"]) == 0
  assert capsys.readouterr().out.splitlines() == [
      f"{workdir}: no test clips; results in {workdir / 'results.json'}"]
