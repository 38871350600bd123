"""The training step's augmentation of a batch, jitted: TF speech_commands' chain and more.

int16 -> float, speed perturbation (off by default; TF has none), time shift, background
mixing (`_silence_` clips always get noise at a volume up to 1.0, others with probability
`background_frequency` up to `background_volume`; or, with `background_mode="snr"`, at an
SNR uniform in [`background_snr_min_db`, `background_snr_max_db`]), then a random gain in
[`gain_min_db`, `gain_max_db`] on every clip (off by default). The ops are `ops.augment`'s;
this module wires them to a `pipeline.Dataset` and its config.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from kws_jax import audio as audio_io
from kws_jax.data import folder as folder_lib
from kws_jax.data.pipeline import SILENCE_INDEX, Dataset, Split
from kws_jax.errors import DataError
from kws_jax.ops import augment as augment_ops


def make_augment_fn(cfg: ml_collections.ConfigDict, ds: Dataset
                    ) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
  """Jitted `augment(key, audio_int16 (B, S), labels (B,)) -> float32 (B, S)`."""
  if ds.label_names[SILENCE_INDEX] != folder_lib.SILENCE_LABEL:
    raise DataError(f"label 0 is {ds.label_names[0]!r}, expected _silence_")
  max_shift = int(round(cfg.time_shift_ms * ds.sample_rate / 1000))
  bank = None if ds.background is None else jnp.asarray(ds.background, jnp.float32)
  volume = float(cfg.background_volume)
  frequency = float(cfg.background_frequency)
  speed = float(cfg.get("speed_perturb", 0.0))
  gain_db = (float(cfg.get("gain_min_db", 0.0)), float(cfg.get("gain_max_db", 0.0)))
  by_snr = cfg.get("background_mode", "volume") == "snr"
  snr_db = (float(cfg.get("background_snr_min_db", 0.0)),
            float(cfg.get("background_snr_max_db", 20.0)))
  # The level `_silence_` clips' noise is set against: the median RMS of the training words,
  # so silence is as loud as the noise under a word at the same SNR.
  reference_rms = _median_word_rms(ds.train) if by_snr and bank is not None else 0.0

  def augment(key, audio, labels):
    x = jnp.asarray(audio).astype(jnp.float32) / audio_io.INT16_SCALE
    key_shift, key_mix = jax.random.split(key)
    if speed > 0:
      # Its own key (folded, not split) so that speed_perturb=0 draws the same shifts and
      # noise as before the option existed.
      x = jax.vmap(augment_ops.speed_perturb, (0, 0, None))(
          jax.random.split(jax.random.fold_in(key, 7), x.shape[0]), x, speed)
    if max_shift > 0:
      x = jax.vmap(augment_ops.time_shift, (0, 0, None))(
          jax.random.split(key_shift, x.shape[0]), x, max_shift)
    if bank is not None:
      is_silence = jnp.asarray(labels) == SILENCE_INDEX
      keys = jax.random.split(key_mix, x.shape[0])
      if by_snr:
        words = jax.vmap(augment_ops.mix_background_at_snr, (0, 0, None, None, None, None))(
            keys, x, bank, *snr_db, frequency)
        silence = jax.vmap(augment_ops.mix_background_at_snr,
                           (0, 0, None, None, None, None, None))(
            keys, x, bank, *snr_db, 1.0, reference_rms)
        x = jnp.where(is_silence[:, None], silence, words)
      else:
        volume_max = jnp.where(is_silence, 1.0, volume)
        x = jax.vmap(augment_ops.mix_background, (0, 0, None, 0, None, 0))(
            keys, x, bank, volume_max, frequency, is_silence)
    if gain_db != (0.0, 0.0):
      x = jax.vmap(augment_ops.random_gain, (0, 0, None, None))(
          jax.random.split(jax.random.fold_in(key, 11), x.shape[0]), x, *gain_db)
    return x

  return jax.jit(augment)


def _median_word_rms(split: Split) -> float:
  """Median RMS (float scale) of a split's non-silence clips; 0.1 when it has none."""
  rows = np.flatnonzero(split.labels != SILENCE_INDEX)
  if not len(rows):
    return 0.1
  # In blocks: the whole training set as float32 would be gigabytes.
  rms = np.concatenate([
      np.sqrt(np.mean(np.square(split.audio[rows[i:i + 1024]].astype(np.float32)
                                / audio_io.INT16_SCALE), axis=1))
      for i in range(0, len(rows), 1024)])
  return float(np.median(rms))
