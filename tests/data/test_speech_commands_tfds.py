"""tfds' real `speech_commands` builder under `tfds.testing.mock_data`.

The builder's own DatasetInfo (features, tfds' label order, splits) is used;
only the examples are random (mock_data replaces download_and_prepare and
as_dataset). These need the tfds extra, which README's setup and CI install;
without it they skip with the install command as the reason.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import runpy
import sys

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from kws_jax.configs import default as config_default
from kws_jax.data import augmentation, pipeline, speech_commands

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("pydub") is None,
    reason="needs the tfds extra: pip install -e '.[tfds]'")

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
import tiny_training  # noqa: E402

# The builder's own label order (tensorflow_datasets 4.9.10, speech_commands 0.0.3).
TFDS_NAMES = ["down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes",
              "_silence_", "_unknown_"]


def _mock(num_examples: int):
  # USE_CODE: the DatasetInfo comes from the builder's code, never from GCS (no internet).
  return tfds.testing.mock_data(num_examples=num_examples,
                                policy=tfds.testing.MockPolicy.USE_CODE)


def _raw_examples(split: str) -> list[dict]:
  return list(tfds.as_numpy(tfds.builder("speech_commands").as_dataset(split=split)))


def test_real_builder_labels_map_onto_the_12_tf_classes(tmp_path):
  with _mock(120):
    names = tfds.builder("speech_commands").info.features["label"].names
    data = speech_commands.load(str(tmp_path / "tfds"), clip_samples=16000)
    raw = {split: _raw_examples(split) for split in ("train", "validation", "test")}
  assert names == TFDS_NAMES
  assert data.label_names == ["_silence_", "_unknown_", "yes", "no", "up", "down", "left",
                              "right", "on", "off", "stop", "go"]
  for split, examples in raw.items():
    arrays = data.splits[split]
    assert len(arrays) == len(examples) == 120
    # Every example keeps its class under kws_jax's order, and its audio fitted to 1 s.
    assert [data.label_names[i] for i in arrays.labels] == [names[ex["label"]] for ex in examples]
    assert list(arrays.words) == [names[ex["label"]] for ex in examples]
    for clip, ex in zip(arrays.audio[:5], examples[:5]):
      length = min(len(ex["audio"]), 16000)
      np.testing.assert_array_equal(clip[:length], ex["audio"][:length])
      assert not clip[length:].any()
  assert set(data.splits["train"].labels.tolist()) == set(range(12))  # every class seen


def test_pipeline_on_mocked_tfds_speech_commands(tmp_path):
  cfg = config_default.data_config()
  cfg.update(source="speech_commands", data_dir=str(tmp_path / "tfds"), time_shift_ms=10.0)
  with _mock(240):
    ds = pipeline.load_dataset(cfg, 0)
    names = tfds.builder("speech_commands").info.features["label"].names
    expected = {split: [names[int(ex["label"])] for ex in _raw_examples(split)]
                for split in ("train", "test")}
  assert ds.label_names == speech_commands.LABEL_NAMES
  assert ds.train.audio.shape == (240, 16000) and ds.train.audio.dtype == np.int16
  assert [ds.label_names[i] for i in ds.train.labels] == expected["train"]
  # Evaluation splits hold tfds' own _silence_ clips, so they are used as they are.
  assert [ds.label_names[i] for i in ds.test.labels] == expected["test"]
  # No noise recordings: tfds' _silence_ clips become the background bank.
  assert ds.background.shape == (np.sum(ds.train.labels == 0), 16000)
  epoch = pipeline.training_epoch(ds, cfg, 0, 0)
  wanted = int(np.sum(ds.train.labels >= 2))
  assert np.sum(epoch.labels >= 2) == wanted
  assert np.sum(epoch.labels == 1) == min(np.sum(ds.train.labels == 1), -(-wanted // 10))
  audio, labels = next(pipeline.batches(epoch, 32))
  out = np.asarray(augmentation.make_augment_fn(cfg, ds)(jax.random.key(0), audio, labels))
  assert out.shape == (32, 16000) and np.all(np.isfinite(out)) and np.all(np.abs(out) <= 1)


def test_one_epoch_training_cli_on_mocked_speech_commands(tmp_path, monkeypatch, capsys):
  """`python -m kws_jax.train`, run in this process: mock_data only lives in-process."""
  experiment = tiny_training.write_experiment(tmp_path / "tiny.py", "", tmp_path / "cache",
                                              epochs=1, checkpoint_every_steps=0,
                                              steps_per_call=8)
  workdir = tmp_path / "work"
  tfds_dir = tmp_path / "tfds"  # does not exist yet: tfds creates it
  monkeypatch.setattr(sys, "argv", [
      "python -m kws_jax.train", str(experiment), "--workdir", str(workdir),
      "--config.data.source=speech_commands", f"--config.data.data_dir={tfds_dir}",
      f"--config.data.wanted_words={config_default.DEFAULT_WANTED_WORDS}"])
  with _mock(200), pytest.raises(SystemExit) as exit_info:
    runpy.run_module("kws_jax.train", run_name="__main__", alter_sys=True)
  out, err = capsys.readouterr()
  assert exit_info.value.code == 0, err[-3000:]
  assert "test accuracy" in out
  results = json.loads((workdir / "results.json").read_text())
  labels = (workdir / "labels.txt").read_text().split()
  assert labels == speech_commands.LABEL_NAMES
  assert results["num_examples"] == 200  # tfds' mocked test split, used as it is
  metrics = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert max(m.get("epoch", 0) for m in metrics) == 1
