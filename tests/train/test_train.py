"""Training end to end on a tiny generated folder: artefacts, determinism, exact resume
(in process, after a corrupt checkpoint, and after SIGKILL of the CLI), NaN guard."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import types

import jax
import numpy as np
import pytest
from tiny_training import make_folder, tiny_config, write_experiment

from kws_jax import errors
from kws_jax.configs import default as config_default
from kws_jax.data import checks as data_checks
from kws_jax.deploy import int8_report
from kws_jax.models import builder
from kws_jax.runs import checkpoints, trained_model
from kws_jax.train import loop, optimizer
from kws_jax.train import step as train_step

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  root = tmp_path_factory.mktemp("tiny")
  return types.SimpleNamespace(root=root, data=make_folder(root / "data"), cache=root / "cache")


@pytest.fixture(scope="module")
def reference(tiny):
  """One uninterrupted run; the other tests compare against it."""
  workdir = tiny.root / "reference"
  results = loop.train_and_evaluate(tiny_config(tiny.data, tiny.cache), workdir)
  return workdir, results


def comparable(results: dict) -> dict:
  return {k: v for k, v in results.items() if k != "training_seconds"}


def metric_records(workdir: pathlib.Path) -> list[dict]:
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in records]


def weights(workdir: pathlib.Path, which: str) -> list[np.ndarray]:
  return [np.asarray(x) for x in jax.tree.leaves(trained_model.load(workdir, which).variables)]


def assert_same_run(workdir: pathlib.Path, reference_dir: pathlib.Path) -> None:
  got = json.loads((workdir / "results.json").read_text())
  want = json.loads((reference_dir / "results.json").read_text())
  assert comparable(got) == comparable(want)
  assert metric_records(workdir) == metric_records(reference_dir)
  for which in (checkpoints.BEST, checkpoints.LATEST):
    for a, b in zip(weights(workdir, which), weights(reference_dir, which), strict=True):
      np.testing.assert_array_equal(a, b)


def latest_steps(workdir: pathlib.Path) -> list[int]:
  directory = checkpoints.checkpoint_dir(workdir, checkpoints.LATEST)
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def test_train_writes_every_artefact(reference):
  workdir, results = reference
  for name in ("config.json", "labels.txt", "metrics.jsonl", "results.json",
               "confusion_matrix.png", "training_curves.png"):
    assert (workdir / name).is_file(), name
  for name in ("confusion_matrix.png", "training_curves.png"):
    assert (workdir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert any(p.name.startswith("events.out.tfevents") for p in (workdir / "tensorboard").iterdir())
  assert (workdir / "labels.txt").read_text().split() == ["_silence_", "_unknown_", "yes", "no"]
  assert json.loads((workdir / "config.json").read_text())["model"]["name"] == "tf_tiny_conv"

  epochs = [r for r in metric_records(workdir) if r["kind"] == "epoch"]
  assert [r["epoch"] for r in epochs] == [1, 2]
  steps_per_epoch = results["steps_per_epoch"]
  assert [r["step"] for r in epochs] == [steps_per_epoch, 2 * steps_per_epoch]
  assert results["steps"] == 2 * steps_per_epoch == latest_steps(workdir)[-1]
  assert steps_per_epoch == results["data_sizes"]["train_epoch"] // 8

  matrix = np.asarray(results["confusion_matrix"])
  assert matrix.shape == (4, 4)
  assert matrix.sum() == results["num_examples"] == results["data_sizes"]["test"] > 0
  assert results["accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
  for i, name in enumerate(results["labels"]):
    if matrix[i].sum():
      assert results["per_class"][name]["recall"] == pytest.approx(matrix[i, i] / matrix[i].sum())
  t = trained_model.load(workdir)
  assert results["num_params"] == sum(x.size for x in jax.tree.leaves(t.variables["params"])) > 0
  assert results["macs_per_second"] > 0
  assert results["best_step"] in latest_steps(workdir)
  assert max(r["val_accuracy"] for r in epochs) == results["validation_accuracy"]


def test_trained_model_predicts_like_training_evaluation(reference, tiny):
  workdir, results = reference
  t = trained_model.load(workdir, "best")
  assert t.label_names == results["labels"]
  assert (t.num_frames, t.num_features) == tuple(results["input_shape"])
  from tiny_training import WORD_PITCH, tone
  rng = np.random.default_rng(5)
  clips = np.stack([tone(WORD_PITCH[w], rng, t.clip_samples) for w in ("yes", "no")])
  logits = np.asarray(t.predict(clips))
  assert logits.shape == (2, 4) and np.all(np.isfinite(logits))
  # int16 input is auto-scaled by the frontend: the same logits.
  from kws_jax.audio import to_int16
  np.testing.assert_allclose(np.asarray(t.predict(to_int16(clips))), logits, atol=1e-3)
  with pytest.raises(errors.KwsError, match="shape"):
    t.predict(clips[:, :100])


def test_same_seed_gives_identical_metrics_and_weights(reference, tiny):
  reference_dir, _ = reference
  workdir = tiny.root / "again"
  loop.train_and_evaluate(tiny_config(tiny.data, tiny.cache), workdir)
  assert_same_run(workdir, reference_dir)


def test_resume_mid_epoch_equals_uninterrupted(reference, tiny, capsys):
  reference_dir, _ = reference
  workdir = tiny.root / "resumed"
  shutil.copytree(reference_dir, workdir)
  # The state a kill right after the first checkpoint leaves: later checkpoints gone,
  # later metrics lines, best checkpoint and results still from the "future".
  first, *later = latest_steps(workdir)
  for step in later:
    shutil.rmtree(checkpoints.checkpoint_dir(workdir, checkpoints.LATEST) / str(step))
  loop.train_and_evaluate(tiny_config(tiny.data, tiny.cache), workdir)
  assert f"resuming from {checkpoints.checkpoint_dir(workdir, checkpoints.LATEST)}/{first}" in (
      capsys.readouterr().err)
  assert_same_run(workdir, reference_dir)


def test_rerun_of_a_finished_run_says_so_and_rewrites_the_same_results(reference, tiny, capsys):
  reference_dir, results = reference
  workdir = tiny.root / "finished"
  shutil.copytree(reference_dir, workdir)
  (workdir / "results.json").unlink()
  capsys.readouterr()
  again = loop.train_and_evaluate(tiny_config(tiny.data, tiny.cache), workdir)
  err = capsys.readouterr().err
  assert f"{workdir} already finished training (2 epochs, step {results['steps']})" in err
  assert "rewriting results.json" in err and "resuming from" not in err
  assert comparable(again) == comparable(results)
  assert json.loads((workdir / "results.json").read_text())["steps"] == results["steps"]


def test_corrupt_latest_checkpoint_falls_back_to_previous(reference, tiny):
  reference_dir, _ = reference
  workdir = tiny.root / "corrupt"
  shutil.copytree(reference_dir, workdir)
  *_, previous, newest = latest_steps(workdir)
  for path in (checkpoints.checkpoint_dir(workdir, checkpoints.LATEST) / str(newest)).rglob("*"):
    if path.is_file() and "model" in path.parts:
      path.write_bytes(b"garbage")
  with pytest.warns(UserWarning, match=f"cannot be read.*falling back to step {previous}"):
    loop.train_and_evaluate(tiny_config(tiny.data, tiny.cache), workdir)
  assert_same_run(workdir, reference_dir)


def test_nan_guard_names_the_step_and_keeps_the_last_good_checkpoint(tiny):
  workdir = tiny.root / "nan"
  config = tiny_config(tiny.data, tiny.cache, debug_inject_nan_at_step=5)
  with pytest.raises(errors.TrainingError, match=r"non-finite loss \(nan\) at step 5 .*"
                     r"last good checkpoint: .*latest/4"):
    loop.train_and_evaluate(config, workdir)
  assert latest_steps(workdir)[-1] == 4  # checkpoints every 2 steps; nothing after the NaN
  t = trained_model.load(workdir, "latest")
  assert t.step == 4
  assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(t.variables))


def test_rerun_with_a_different_config_is_refused(reference, tiny):
  workdir, _ = reference
  config = tiny_config(tiny.data, tiny.cache, learning_rate=0.1)
  with pytest.raises(errors.ConfigError, match="different config.*train.learning_rate"):
    loop.train_and_evaluate(config, workdir)


def test_missing_data_folder_is_a_clear_data_error(tmp_path):
  config = tiny_config(tmp_path / "nowhere", tmp_path / "cache")
  with pytest.raises(errors.DataError, match=r"no such folder.*--config\.data\.data_dir=PATH"):
    loop.train_and_evaluate(config, tmp_path / "work")


def test_sigkill_then_rerun_ends_like_an_uninterrupted_run(reference, tiny, tmp_path):
  reference_dir, _ = reference
  experiment = write_experiment(tmp_path / "tiny_experiment.py", tiny.data, tiny.cache)
  workdir = tmp_path / "work"
  command = [sys.executable, "-m", "kws_jax.train", str(experiment), "--workdir", str(workdir)]
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
  latest_dir = checkpoints.checkpoint_dir(workdir, checkpoints.LATEST)
  deadline = time.monotonic() + 300
  while time.monotonic() < deadline and process.poll() is None:
    if latest_dir.is_dir() and any(p.name.isdigit() for p in latest_dir.iterdir()):
      process.send_signal(signal.SIGKILL)
      break
    time.sleep(0.01)
  process.wait(timeout=60)
  stderr = process.stderr.read().decode()
  assert process.returncode == -signal.SIGKILL, f"not killed mid-run:\n{stderr[-2000:]}"
  assert not (workdir / "results.json").exists()

  rerun = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert "resuming from" in rerun.stderr
  assert "test accuracy" in rerun.stdout
  assert_same_run(workdir, reference_dir)


def test_cosine_schedule_shorter_than_its_warmup_still_peaks_and_decays():
  config = config_default.train_config()
  config.update(dict(schedule="cosine", epochs=1, warmup_epochs=2.0, learning_rate=1.0))
  rates = [float(optimizer.make_schedule(config, 10)(step)) for step in range(10)]
  assert rates[0] == 0.0 and rates[9] == pytest.approx(1.0)
  assert rates == sorted(rates)


def test_training_clips_of_validation_and_test_speakers_are_dropped(capsys):
  from kws_jax.data import pipeline
  def split(speakers):
    n = len(speakers)
    return pipeline.Split(np.arange(n, dtype=np.int16)[:, None], np.arange(n, dtype=np.int32),
                          np.asarray(speakers))
  ds = types.SimpleNamespace(train=split(["a", "b", "c", "", "b"]), validation=split(["b", ""]),
                             test=split(["c"]))
  data_checks.drop_evaluation_speakers(ds)
  assert ds.train.speakers.tolist() == ["a", ""]
  assert ds.train.labels.tolist() == [0, 3] and ds.train.audio[:, 0].tolist() == [0, 3]
  assert "dropped 3 training clips" in capsys.readouterr().err


def test_quantize_report_defaults_to_the_runs_own_test_split(reference, capsys):
  """`python -m kws_jax.quantize --workdir W` scores float and int8 steps on W's test speakers."""
  workdir, results = reference
  out = workdir / "q.json"
  assert int8_report.main(["--workdir", str(workdir), "--out", str(out)]) == 0
  report = json.loads(out.read_text())
  assert report["clips"] == results["num_examples"]
  assert report["data"].startswith("test split of ")
  # The float streaming step over a whole clip is the trained model on that clip.
  assert report["accuracy_float"] == pytest.approx(results["accuracy"], abs=1.5 / report["clips"])
  assert report["accuracy_change_points"] == pytest.approx(
      100 * (report["accuracy_int8"] - report["accuracy_float"]))
  assert 0.0 <= report["agreement"] <= 1.0 and report["quantization"]["quantized"]
  assert "int8" in capsys.readouterr().out


def test_ensemble_members_train_as_if_alone():
  """One SGD step of a 2-member DS-CNN ensemble moves each member exactly as one step of
  that member alone (its own loss, not the ensemble's averaged output)."""
  from kws_jax import models
  from kws_jax.ops import frontend
  frontend_cfg = frontend.get_config("tf_speech_commands", hop_size=320, num_mfcc=10)
  frontend_params = frontend.make_params(frontend_cfg)
  clip_samples = 4000  # short clips: a small graph to compile
  frames, features = frontend.num_frames(frontend_cfg, clip_samples), 10
  hparams = dict(filters=8, num_blocks=1, first_dropout=0.0, final_dropout=0.0)
  ensemble = models.create("dscnn", 4, frames, features, members=2, **hparams)
  single = models.create("dscnn", 4, frames, features, **hparams)
  config = config_default.train_config()
  config.update(dict(optimizer="sgd", momentum=0.0, learning_rate=0.5, steps_per_call=1))
  tx = optimizer.make_optimizer(config, optimizer.make_schedule(config, 1))
  identity = lambda key, audio, labels: audio.astype(np.float32) / 32768.0
  variables = builder.init_variables(ensemble, frames, features, jax.random.key(0))
  rng = np.random.default_rng(0)
  audio = rng.integers(-8000, 8000, (1, 6, clip_samples)).astype(np.int16)
  labels = np.array([[0, 1, 2, 3, 1, 2]], np.int32)
  args = (audio, labels, np.zeros(1, np.int32), np.ones(1, bool), np.int32(-1))

  chunks = {id(model): train_step.make_train_chunk(model, frontend_params, identity, tx, config, 4,
                                              seed=0) for model in (ensemble, single)}

  def one_step(model, variables):
    params = variables["params"]
    state = {k: v for k, v in variables.items() if k != "params"}
    (params, _, _), (loss, _) = chunks[id(model)]((params, state, tx.init(params)), *args)
    return params, float(loss[0])

  ensemble_params, ensemble_loss = one_step(ensemble, variables)
  losses = []
  for index in range(2):
    member = {col: tree[f"member_{index}"] for col, tree in variables.items()}
    alone, loss = one_step(single, member)  # the same compiled step for both members
    losses.append(loss)
    for a, b in zip(jax.tree.leaves(ensemble_params[f"member_{index}"]), jax.tree.leaves(alone),
                    strict=True):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    moved = jax.tree.leaves(jax.tree.map(lambda x, y: np.abs(np.asarray(x - y)).max(),
                                         alone, member["params"]))
    assert max(moved) > 1e-3
  assert ensemble_loss == pytest.approx(np.mean(losses), rel=1e-5)  # reported: the members' mean


def test_spec_augment_floor_masks_fill_with_each_examples_lowest_value(tmp_path):
  features = np.random.default_rng(0).uniform(2.0, 9.0, (3, 40, 12)).astype(np.float32)
  features[1] -= 1.5                       # another example, another floor
  spec = config_default.train_config().spec_augment
  spec.update(dict(time_masks=2, time_mask_max=8, freq_masks=2, freq_mask_max=3))
  for mask_with, fills in (("zero", np.zeros(3)), ("floor", features.min(axis=(1, 2)))):
    spec.mask_with = mask_with
    out = np.asarray(train_step.spec_augment_batch(jax.random.key(1), features, spec))
    for example, fill in zip(range(3), fills):
      masked = out[example] != features[example]
      assert masked.any()
      np.testing.assert_array_equal(out[example][masked], np.float32(fill))
  config = tiny_config(tmp_path, tmp_path)
  config.train.spec_augment.mask_with = "silence"
  with pytest.raises(errors.ConfigError, match="mask_with"):
    optimizer.validate_config(config)
