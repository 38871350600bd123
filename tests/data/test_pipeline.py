"""The training input pipeline: TF rebalancing, deterministic epochs, jitted augmentation."""

from __future__ import annotations

import importlib.util
import math

import jax
import numpy as np
import pytest
from data_helpers import add_bad_files, make_word_folder

from kws_jax.configs import default as config_default
from kws_jax.data import augmentation, pipeline
from kws_jax.errors import ConfigError, DataError, KwsError


def _numpy_shift(x: np.ndarray, shift: int) -> np.ndarray:
  if shift >= 0:
    return np.concatenate([np.zeros(shift, x.dtype), x])[: len(x)]
  return np.concatenate([x, np.zeros(-shift, x.dtype)])[-shift:]


def _cfg(data_dir, tmp_path, **overrides):
  cfg = config_default.data_config()
  cfg.source = "folder"
  cfg.data_dir = str(data_dir)
  cfg.cache_dir = str(tmp_path / "cache")
  cfg.wanted_words = "yes,no"
  cfg.validation_percentage = 25.0
  cfg.testing_percentage = 25.0
  cfg.update(overrides)
  return cfg


@pytest.fixture(scope="module")
def folder_ds(word_folder, tmp_path_factory):
  cfg = _cfg(word_folder, tmp_path_factory.mktemp("pipe"))
  return cfg, pipeline.load_dataset(cfg, seed=0)


def test_load_dataset_labels_background_and_eval_rebalancing(folder_ds):
  cfg, ds = folder_ds
  assert ds.label_names == ["_silence_", "_unknown_", "yes", "no"]
  assert ds.sample_rate == 16000 and ds.clip_samples == 16000
  assert ds.train.audio.dtype == np.int16 and ds.train.labels.dtype == np.int32
  assert not np.any(ds.train.labels == 0)  # silence is added per epoch
  assert ds.background.dtype == np.float32 and ds.background.shape == (1, 48000)
  for split in (ds.validation, ds.test):
    wanted = int(np.sum(split.labels >= 2))
    assert wanted > 0
    silence = split.labels == 0
    assert silence.sum() == math.ceil(wanted * cfg.silence_percentage / 100)
    assert np.sum(split.labels == 1) <= math.ceil(wanted * cfg.unknown_percentage / 100)
    # TF feeds evaluation silence as background noise at a random volume.
    assert np.all(np.abs(split.audio[silence]).max(axis=1) > 0)
  again = pipeline.load_dataset(cfg, seed=0)
  np.testing.assert_array_equal(again.validation.audio, ds.validation.audio)


def test_training_epoch_rebalances_and_is_deterministic(folder_ds):
  cfg, ds = folder_ds
  epoch = pipeline.training_epoch(ds, cfg, epoch_index=0, seed=1)
  wanted = int(np.sum(ds.train.labels >= 2))
  counts = np.bincount(epoch.labels, minlength=4)
  assert counts[0] == math.ceil(wanted * 10 / 100)
  assert counts[1] == min(np.sum(ds.train.labels == 1), math.ceil(wanted * 10 / 100))
  assert counts[2:].sum() == wanted
  assert not epoch.audio[epoch.labels == 0].any()  # silence clips are all zero
  train_rows = {row.tobytes() for row in ds.train.audio}
  assert all(row.tobytes() in train_rows for row in epoch.audio[epoch.labels > 0])
  same = pipeline.training_epoch(ds, cfg, epoch_index=0, seed=1)
  np.testing.assert_array_equal(same.audio, epoch.audio)
  np.testing.assert_array_equal(same.labels, epoch.labels)
  other = pipeline.training_epoch(ds, cfg, epoch_index=1, seed=1)
  assert not np.array_equal(other.labels, epoch.labels)
  cfg_all = cfg.copy_and_resolve_references()
  cfg_all.unknown_percentage = 100.0
  everything = pipeline.training_epoch(ds, cfg_all, 0, 1)
  assert np.sum(everything.labels == 1) == np.sum(ds.train.labels == 1)


def test_augment_shifts_and_mixes_as_tf(folder_ds):
  cfg, ds = folder_ds
  epoch = pipeline.training_epoch(ds, cfg, 0, 0)
  audio, labels = next(pipeline.batches(epoch, 24, drop_remainder=True))
  assert np.any(labels == 0)
  quiet = cfg.copy_and_resolve_references()
  quiet.background_frequency = 0.0
  out = np.asarray(augmentation.make_augment_fn(quiet, ds)(jax.random.key(0), audio, labels))
  assert out.shape == audio.shape and out.dtype == np.float32
  assert np.all(np.abs(out) <= 1.0)
  max_shift = int(cfg.time_shift_ms * 16)
  x = audio.astype(np.float32) / 32768
  for i in np.flatnonzero(labels > 0):
    # No noise on words at frequency 0: the output is the clip, shifted within range.
    shifts = [s for s in range(-max_shift, max_shift + 1)
              if np.array_equal(out[i], _numpy_shift(x[i], s))]
    assert shifts
  assert np.all(np.abs(out[labels == 0]).max(axis=1) > 0)  # silence always gets noise
  no_shift = quiet.copy_and_resolve_references()
  no_shift.time_shift_ms = 0.0
  plain = np.asarray(augmentation.make_augment_fn(no_shift, ds)(jax.random.key(1), audio, labels))
  np.testing.assert_array_equal(plain[labels > 0], x[labels > 0])
  # Speed perturbation alone resamples each clip about its centre: on a ramp the rate is
  # the slope, and the rest of the clip follows the np.interp reference at that rate.
  faster = no_shift.copy_and_resolve_references()
  faster.speed_perturb = 0.2
  n = audio.shape[1]
  ramp = np.tile(np.linspace(-16000, 16000, n).astype(np.int16), (len(labels), 1))
  words = np.full(len(labels), 2, np.int32)
  out = np.asarray(augmentation.make_augment_fn(faster, ds)(jax.random.key(1), ramp, words))
  centre = (n - 1) // 2
  rates = (out[:, centre + 1000] - out[:, centre - 1000]) / (
      (ramp[0, centre + 1000] - ramp[0, centre - 1000]) / 32768)
  assert np.all((rates > 1 / 1.2 - 1e-3) & (rates < 1.2 + 1e-3)) and np.ptp(rates) > 0.05
  for clip, rate in zip(out, rates):
    positions = (n - 1) / 2 + (np.arange(n) - (n - 1) / 2) * rate
    reference = np.interp(positions, np.arange(n), ramp[0] / 32768, left=0.0, right=0.0)
    inside = (positions >= 0) & (positions <= n - 1)
    np.testing.assert_allclose(clip[inside], reference[inside], atol=2e-3)
    assert np.all(clip[positions < -1] == 0) and np.all(clip[positions > n] == 0)
  # A gain range scales each clip (noise included) by one factor in it; off by default.
  louder = no_shift.copy_and_resolve_references()
  louder.gain_min_db, louder.gain_max_db = -20.0, -6.0
  out = np.asarray(augmentation.make_augment_fn(louder, ds)(jax.random.key(1), audio, labels))
  ratio = np.abs(out[labels > 0]).max(axis=1) / np.abs(x[labels > 0]).max(axis=1)
  assert np.all((ratio > 10 ** (-20 / 20) - 1e-4) & (ratio < 10 ** (-6 / 20) + 1e-4))
  assert np.ptp(ratio) > 0.05
  np.testing.assert_allclose(out[labels > 0], x[labels > 0] * ratio[:, None], atol=1e-6)
  # background_mode="snr": each word's noise at a 5 dB SNR of its own RMS (the test's
  # words all get noise at frequency 1), silence at 5 dB under the words' median RMS.
  by_snr = no_shift.copy_and_resolve_references()
  by_snr.update(dict(background_mode="snr", background_snr_min_db=5.0,
                     background_snr_max_db=5.0, background_frequency=1.0))
  out = np.asarray(augmentation.make_augment_fn(by_snr, ds)(jax.random.key(1), audio, labels))
  clean = audio.astype(np.float32) / 32768
  rms = np.sqrt(np.mean(clean ** 2, axis=1))
  noise_rms = np.sqrt(np.mean((out - clean) ** 2, axis=1))
  words = labels > 0
  np.testing.assert_allclose(noise_rms[words], rms[words] / 10 ** 0.25, rtol=1e-3)
  train = ds.train.audio[ds.train.labels > 0].astype(np.float32) / 32768
  median = np.median(np.sqrt(np.mean(train ** 2, axis=1)))
  np.testing.assert_allclose(noise_rms[~words], median / 10 ** 0.25, rtol=1e-3)


def test_batches(folder_ds):
  _, ds = folder_ds
  n = len(ds.train)
  sizes = [len(b[1]) for b in pipeline.batches(ds.train, 7, drop_remainder=False)]
  assert sum(sizes) == n and all(s == 7 for s in sizes[:-1])
  sizes = [len(b[1]) for b in pipeline.batches(ds.train, 7, drop_remainder=True)]
  assert sizes == [7] * (n // 7)
  first_audio, first_labels = next(pipeline.batches(ds.train, 7))
  np.testing.assert_array_equal(first_audio, ds.train.audio[:7])


def test_extra_dirs_and_test_dir(word_folder, tmp_path):
  extra = make_word_folder(tmp_path / "extra", speakers=2, background=False)
  base = pipeline.load_dataset(_cfg(word_folder, tmp_path, rebalance_eval=False), 0)
  merged = pipeline.load_dataset(_cfg(word_folder, tmp_path, extra_dirs=[str(extra)],
                                      test_dir=str(extra), rebalance_eval=False), 0)
  extra_clips = 2 * (2 + 2 + 1 + 1)
  assert len(merged.train) == len(base.train) + extra_clips
  assert len(merged.test) == extra_clips
  assert len(merged.validation) == len(base.validation)


def test_config_errors(word_folder, tmp_path):
  with pytest.raises(ConfigError, match="source"):
    pipeline.load_dataset(_cfg(word_folder, tmp_path, source="nope"), 0)
  with pytest.raises(ConfigError, match="data_dir"):
    pipeline.load_dataset(_cfg("", tmp_path), 0)
  with pytest.raises(ConfigError, match="_silence_"):
    pipeline.load_dataset(_cfg(word_folder, tmp_path, wanted_words="yes,_silence_"), 0)
  with pytest.raises(ConfigError, match="gain_min_db"):
    pipeline.load_dataset(_cfg(word_folder, tmp_path, gain_min_db=3.0, gain_max_db=-3.0), 0)
  with pytest.raises(ConfigError, match="background_mode"):
    pipeline.load_dataset(_cfg(word_folder, tmp_path, background_mode="loud"), 0)
  with pytest.raises(ConfigError, match="background_snr_min_db"):
    pipeline.load_dataset(_cfg(word_folder, tmp_path, background_snr_min_db=30.0), 0)
  with pytest.raises(ConfigError, match="speed_perturb"):
    pipeline.load_dataset(_cfg(word_folder, tmp_path, speed_perturb=1.5), 0)
  with pytest.raises(ConfigError, match="background_frequency"):
    pipeline.load_dataset(_cfg(word_folder, tmp_path, background_frequency=2.0), 0)
  with pytest.raises(DataError, match="up"):
    pipeline.load_dataset(_cfg(word_folder, tmp_path, wanted_words="yes,up"), 0)


def test_bad_files_flow_through_to_training_or_stop_the_load(tmp_path):
  """Empty, corrupt, truncated, stereo, 8 kHz and 44.1 kHz files: no crash later on."""
  root = make_word_folder(tmp_path / "w", speakers=4)
  kinds = add_bad_files(root)
  cfg = _cfg(root, tmp_path)
  with pytest.warns(UserWarning, match="left out 3 unusable"):
    ds = pipeline.load_dataset(cfg, 0)
  assert ds.info["skipped_files"] == 3
  epoch = pipeline.training_epoch(ds, cfg, 0, 0)
  augment = augmentation.make_augment_fn(cfg, ds)
  for audio, labels in pipeline.batches(epoch, 8, drop_remainder=False):
    out = np.asarray(augment(jax.random.key(0), audio, labels))
    assert out.shape == audio.shape and np.all(np.isfinite(out))
  cfg.on_bad_file = "error"
  broken = [k for k, v in kinds.items() if v in ("empty", "corrupt", "truncated")]
  with pytest.raises(DataError, match="|".join(b.split("/")[1] for b in broken)):
    pipeline.load_dataset(cfg, 0)


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None,
                    reason="TensorFlow is installed")
def test_speech_commands_without_tensorflow_names_the_extra(tmp_path):
  cfg = config_default.data_config()
  cfg.source = "speech_commands"
  with pytest.raises(KwsError, match=r"pip install 'kws_jax\[tfds\]'"):
    pipeline.load_dataset(cfg, 0)


@pytest.mark.shared_data
def test_real_folders_with_extra_and_test_dir(shared_data, shared_cache):
  cfg = config_default.data_config()
  cfg.update(source="folder", data_dir=str(shared_data / "sc_v1_extra"),
             test_dir=str(shared_data / "sc_v2_test12_dev"),
             background_dir=str(shared_data / "background_noise"),
             cache_dir=str(shared_cache / "cache"))
  with pytest.warns(UserWarning, match="left out 1 unusable"):
    ds = pipeline.load_dataset(cfg, 0)
  assert np.bincount(ds.test.labels).tolist() == [296, 275, 297, 287, 302, 299, 289, 286, 277,
                                                  286, 284, 282]  # folder counts, TF order
  # Six recordings of 60-95 s cut into 10 s rows.
  assert ds.background.shape[1] == 160000 and 30 <= ds.background.shape[0] <= 40
  epoch = pipeline.training_epoch(ds, cfg, 0, 0)
  assert np.sum(epoch.labels == 0) == math.ceil(np.sum(ds.train.labels >= 2) * 0.1)
