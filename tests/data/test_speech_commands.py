"""Google's speech_commands through tfds.

tfds' `speech_commands` builder (and `tfds.testing.mock_data` for it) imports
TensorFlow, which the default install leaves out; without it these tests check
the error messages and run the conversion code against a stand-in builder.
"""

from __future__ import annotations

import importlib.util
import types

import numpy as np
import pytest
import tensorflow_datasets as tfds

from kws_jax.configs import default as config_default
from kws_jax.data import speech_commands
from kws_jax.errors import DataError, KwsError

HAS_TF = importlib.util.find_spec("tensorflow") is not None
TFDS_NAMES = ["down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes",
              "_silence_", "_unknown_"]  # tfds' label order


@pytest.mark.skipif(HAS_TF, reason="TensorFlow is installed")
def test_without_tensorflow_the_error_names_the_extra():
  with pytest.raises(KwsError, match=r"tensorflow.*pip install 'kws_jax\[tfds\]'"):
    speech_commands.load()


class _FakeBuilder:
  """Stands in for tfds.builder("speech_commands") (same info and split names)."""

  def __init__(self, fail_download=False):
    self.fail_download = fail_download
    label = types.SimpleNamespace(names=TFDS_NAMES)
    self.info = types.SimpleNamespace(features={"label": label})

  def download_and_prepare(self, download_config=None):
    if self.fail_download:
      raise ConnectionError("Failed to resolve 'download.tensorflow.org'")

  def as_dataset(self, split):
    rng = np.random.default_rng(len(split))
    return [{"audio": rng.integers(-100, 100, size=n).astype(np.int16), "label": label}
            for n, label in ((16000, 9), (12000, 10), (17000, 11), (16000, 3))]


@pytest.fixture
def fake_tfds(monkeypatch):
  monkeypatch.setattr(speech_commands, "require_tensorflow", lambda: None)
  monkeypatch.setattr(tfds, "as_numpy", lambda ds: ds)
  return monkeypatch


def test_download_failure_explains_manual_dir(fake_tfds):
  fake_tfds.setattr(tfds, "builder", lambda name, data_dir=None: _FakeBuilder(fail_download=True))
  with pytest.raises(DataError, match="manual_dir.*speech_commands_v0.02.tar.gz|"
                     "speech_commands_v0.02.tar.gz.*manual_dir"):
    speech_commands.load()


def test_labels_are_remapped_to_tf_order_and_clips_fit(fake_tfds):
  fake_tfds.setattr(tfds, "builder", lambda name, data_dir=None: _FakeBuilder())
  data = speech_commands.load(clip_samples=16000)
  assert data.label_names == ["_silence_", "_unknown_", "yes", "no", "up", "down", "left",
                              "right", "on", "off", "stop", "go"]
  for split in ("train", "validation", "test"):
    arrays = data.splits[split]
    assert [data.label_names[i] for i in arrays.labels] == ["yes", "_silence_", "_unknown_", "no"]
    assert arrays.audio.shape == (4, 16000) and arrays.audio.dtype == np.int16
    assert not arrays.audio[1, 12000:].any()  # short clip zero-padded


@pytest.mark.skipif(not HAS_TF or importlib.util.find_spec("pydub") is None,
                    reason="needs the tfds extra: pip install 'kws_jax[tfds]'")
def test_pipeline_on_mocked_tfds_speech_commands(tmp_path):
  """The real tfds builder with mocked examples (tfds.testing.mock_data), end to end."""
  import jax

  from kws_jax.data import pipeline
  cfg = config_default.data_config()
  cfg.update(source="speech_commands", data_dir=str(tmp_path / "tfds"), time_shift_ms=10.0)
  with tfds.testing.mock_data(num_examples=240):
    ds = pipeline.load_dataset(cfg, 0)
    expected = {}
    names = tfds.builder("speech_commands").info.features["label"].names
    for split in ("train", "validation", "test"):
      expected[split] = [names[int(ex["label"])] for ex in
                         tfds.as_numpy(tfds.builder("speech_commands").as_dataset(split=split))]
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
  out = np.asarray(pipeline.make_augment_fn(cfg, ds)(jax.random.key(0), audio, labels))
  assert out.shape == (32, 16000) and np.all(np.isfinite(out)) and np.all(np.abs(out) <= 1)


@pytest.mark.skipif(HAS_TF, reason="TensorFlow is installed")
def test_a_refused_speech_commands_run_writes_nothing(tmp_path):
  from tiny_training import tiny_config

  from kws_jax.train import loop
  config = tiny_config(tmp_path / "data", tmp_path / "cache")
  config.data.source = "speech_commands"
  config.data.wanted_words = ""
  with pytest.raises(KwsError, match=r"needs tensorflow"):
    loop.train_and_evaluate(config, tmp_path / "work")
  assert not (tmp_path / "work").exists()  # no config.json left behind
