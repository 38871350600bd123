"""Google's speech_commands through tfds.

These need no TensorFlow: they check the error messages and run the
conversion code against a stand-in builder.
tfds' real builder runs in test_speech_commands_tfds.py (mocked examples) and
test_speech_commands_offline.py (archives built from ../shared/data).
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import tensorflow_datasets as tfds

from kws_jax.data import speech_commands
from kws_jax.errors import DataError, KwsError

TFDS_NAMES = ["down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes",
              "_silence_", "_unknown_"]  # tfds' label order


def test_without_tensorflow_the_error_names_the_extra(monkeypatch):
  # A None entry makes `import tensorflow` fail as if it were not installed.
  monkeypatch.setitem(sys.modules, "tensorflow", None)
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
  with pytest.raises(DataError, match=r"could not download speech_commands \(Failed to resolve.*"
                     r"speech_commands_v0.02.tar.gz.*--config.data.manual_dir=DIR.*"
                     r"--config.data.source=folder"):
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


def test_manual_dir_that_does_not_exist_says_what_to_put_there(tmp_path):
  with pytest.raises(DataError, match=r"data.manual_dir=.*nowhere: no such folder; put "
                     r"speech_commands_v0.02.tar.gz and speech_commands_test_set_v0.02.tar.gz"):
    speech_commands.load(manual_dir=str(tmp_path / "nowhere"))


def test_manual_dir_missing_an_archive_names_it(tmp_path):
  (tmp_path / "speech_commands_v0.02.tar.gz").write_bytes(b"x")
  with pytest.raises(DataError) as info:
    speech_commands.load(manual_dir=str(tmp_path))
  message = str(info.value)
  assert message.startswith(f"data.manual_dir={tmp_path}: speech_commands_test_set_v0.02.tar.gz "
                            "missing; tfds needs both")
  assert "\n" not in message


def test_manual_dir_holding_extracted_clips_points_to_the_folder_source(tmp_path):
  (tmp_path / "yes").mkdir()
  with pytest.raises(DataError, match=r"holds extracted clips.*--config.data.source=folder "
                     rf"--config.data.data_dir={tmp_path}$"):
    speech_commands.load(manual_dir=str(tmp_path))


def test_a_refused_speech_commands_run_writes_nothing(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow", None)  # as if TensorFlow were not installed
  from tiny_training import tiny_config

  from kws_jax.train import loop
  config = tiny_config(tmp_path / "data", tmp_path / "cache")
  config.data.source = "speech_commands"
  config.data.wanted_words = ""
  with pytest.raises(KwsError, match=r"needs tensorflow"):
    loop.train_and_evaluate(config, tmp_path / "work")
  assert not (tmp_path / "work").exists()  # no config.json left behind
