"""Training-time augmentation: speed, time shift, background mixing (by volume or SNR), gain,
SpecAugment.

Pure JAX on ONE example with an explicit PRNG key; `jax.vmap` them for batches.
Semantics follow TensorFlow's speech_commands `input_data.py`: the shift pads
with zeros, the noise is a random window of a random background recording at a
random volume, and the mix is clipped to [-1, 1].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def time_shift(key: Array, audio: Array, max_shift: int | Array) -> Array:
  """Shifts `audio` (S,) by a uniform whole number of samples in [-max_shift, max_shift].

  A positive shift delays the sound (zeros enter at the start), a negative one
  advances it (zeros enter at the end), as TF's time_shift_padding does.
  """
  shift = jax.random.randint(key, (), -max_shift, max_shift + 1)
  return shift_by(audio, shift)


def shift_by(audio: Array, shift: int | Array) -> Array:
  """Shifts `audio` (S,) by exactly `shift` samples with zero fill (see time_shift)."""
  return _take_or_zero(audio, jnp.arange(audio.shape[-1]) - shift).astype(audio.dtype)


def _take_or_zero(audio: Array, index: Array) -> Array:
  """audio[index] (S,), zero where index falls outside the clip."""
  num_samples = audio.shape[-1]
  inside = (index >= 0) & (index < num_samples)
  return jnp.where(inside, audio[jnp.clip(index, 0, num_samples - 1)], 0)


def speed_perturb(key: Array, audio: Array, max_change: float | Array) -> Array:
  """Plays `audio` (S,) faster or slower by a random factor, keeping the clip length.

  The factor is log-uniform in [1 / (1 + max_change), 1 + max_change]; it scales
  tempo and pitch together, like resampling (Ko et al., 2015, "Audio augmentation
  for speech recognition"), which stands in for speakers with other voices and
  speaking rates. The clip is resampled about its centre by linear interpolation
  (zeros outside it), so a word in the middle of the clip stays there.
  """
  log_max = jnp.log1p(jnp.asarray(max_change, jnp.float32))
  rate = jnp.exp(jax.random.uniform(key, (), minval=-log_max, maxval=log_max))
  return resample_about_centre(audio, rate)


def resample_about_centre(audio: Array, rate: float | Array) -> Array:
  """`audio` (S,) played `rate` times as fast about its centre sample (see speed_perturb)."""
  num_samples = audio.shape[-1]
  centre = (num_samples - 1) / 2.0
  source = centre + (jnp.arange(num_samples, dtype=jnp.float32) - centre) * rate
  below = jnp.floor(source)
  fraction = source - below
  below = below.astype(jnp.int32)
  out = (1.0 - fraction) * _take_or_zero(audio, below) + fraction * _take_or_zero(audio, below + 1)
  return out.astype(audio.dtype)


def noise_window(key: Array, noise_bank: Array, num_samples: int) -> Array:
  """A random (num_samples,) window of a random row of `noise_bank` (K, L), L >= num_samples."""
  num_noises, noise_length = noise_bank.shape
  if noise_length < num_samples:
    raise ValueError(f"noise_bank rows hold {noise_length} samples, fewer than the "
                     f"{num_samples} of a clip")
  k_index, k_offset = key
  index = jax.random.randint(k_index, (), 0, num_noises)
  offset = jax.random.randint(k_offset, (), 0, noise_length - num_samples + 1)
  return jax.lax.dynamic_slice(noise_bank[index], (offset,), (num_samples,))


def _mix_keys(key: Array) -> tuple[Array, Array, Array]:
  """(window keys (2,), level key, apply key): the split mix_background always drew."""
  k_index, k_offset, k_level, k_apply = jax.random.split(key, 4)
  return jnp.stack([k_index, k_offset]), k_level, k_apply


def mix_background(key: Array, audio: Array, noise_bank: Array, volume_max: float | Array,
                   frequency: float | Array, force: bool | Array = False) -> Array:
  """Adds a random noise window at a random volume to `audio` (S,) float32.

  Args:
    key: PRNG key.
    audio: (S,) float32 in [-1, 1].
    noise_bank: (K, L) float32 noise recordings, L >= S.
    volume_max: the volume is uniform in [0, volume_max).
    frequency: probability of mixing any noise at all.
    force: always mix (TF does so for `_silence_` clips, with volume_max 1).

  Returns:
    (S,) float32, `clip(audio + volume * noise_window, -1, 1)`.
  """
  k_window, k_volume, k_apply = _mix_keys(key)
  window = noise_window(k_window, noise_bank, audio.shape[-1])
  volume = jax.random.uniform(k_volume, (), minval=0.0, maxval=1.0) * volume_max
  apply = jnp.logical_or(force, jax.random.uniform(k_apply, ()) < frequency)
  volume = jnp.where(apply, volume, 0.0)
  return jnp.clip(audio + volume * window, -1.0, 1.0).astype(jnp.float32)


def mix_background_at_snr(key: Array, audio: Array, noise_bank: Array, snr_min_db: float | Array,
                          snr_max_db: float | Array, frequency: float | Array,
                          reference_rms: float | Array | None = None) -> Array:
  """Adds a random noise window at a signal-to-noise ratio uniform in [snr_min_db, snr_max_db].

  `mix_background` sets the noise's absolute volume; Speech Commands' background recordings
  are quiet (RMS 0.002-0.006), so at TF's volumes the noise sits ~35 dB under a typical
  clip (RMS ~0.06) and the model never hears a word in audible noise. Here the noise is
  scaled against the clip's own RMS (or `reference_rms`, for `_silence_` clips, whose
  audio is empty: a speech level that puts the noise as loud as the words' noise).

  Args:
    key: PRNG key.
    audio: (S,) float32 in [-1, 1].
    noise_bank: (K, L) float32 noise recordings, L >= S.
    snr_min_db, snr_max_db: the SNR range in dB, clip RMS over noise-window RMS.
    frequency: probability of mixing any noise at all.
    reference_rms: the "signal" RMS to use instead of the clip's (always mixes).

  Returns:
    (S,) float32, `clip(audio + volume * noise_window, -1, 1)`.
  """
  k_window, k_snr, k_apply = _mix_keys(key)
  window = noise_window(k_window, noise_bank, audio.shape[-1])
  snr_db = jax.random.uniform(k_snr, (), minval=snr_min_db, maxval=snr_max_db)
  if reference_rms is None:
    signal_rms = jnp.sqrt(jnp.mean(jnp.square(audio)))
    apply = jax.random.uniform(k_apply, ()) < frequency
  else:
    signal_rms = jnp.asarray(reference_rms, jnp.float32)
    apply = True
  noise_rms = jnp.sqrt(jnp.mean(jnp.square(window)))
  volume = signal_rms / jnp.maximum(noise_rms, 1e-9) * 10.0 ** (-snr_db / 20.0)
  volume = jnp.where(apply, volume, 0.0)
  return jnp.clip(audio + volume * window, -1.0, 1.0).astype(jnp.float32)


def random_gain(key: Array, audio: Array, min_db: float | Array, max_db: float | Array) -> Array:
  """Scales `audio` (S,) by a gain uniform in [min_db, max_db] decibels, clipped to [-1, 1].

  Applied after background mixing it stands in for another microphone level (speech and
  noise together, the SNR unchanged): a quiet speaker's words otherwise look like the
  `_silence_` class, whose noise clips come at every volume.
  """
  gain_db = jax.random.uniform(key, (), minval=min_db, maxval=max_db)
  return jnp.clip(audio * 10.0 ** (gain_db / 20.0), -1.0, 1.0).astype(audio.dtype)


def spec_augment(key: Array, features: Array, *, time_masks: int, time_mask_max: int,
                 freq_masks: int, freq_mask_max: int, mask_value: float = 0.0) -> Array:
  """SpecAugment (Park et al., 2019) time and frequency masks on `features` (T, F).

  Each of the `time_masks` masks covers a uniform width in [0, time_mask_max]
  consecutive frames at a uniform start; likewise for frequency. Masked cells
  are set to `mask_value`.
  """
  num_frames, num_features = features.shape
  keep = jnp.ones(features.shape, dtype=bool)
  keys = jax.random.split(key, max(1, time_masks + freq_masks))
  for i in range(time_masks):
    keep &= ~_band_mask(keys[i], num_frames, time_mask_max)[:, None]
  for i in range(freq_masks):
    keep &= ~_band_mask(keys[time_masks + i], num_features, freq_mask_max)[None, :]
  return jnp.where(keep, features, jnp.asarray(mask_value, features.dtype))


def _band_mask(key: Array, size: int, max_width: int) -> Array:
  """Boolean (size,) with one random band of width in [0, min(max_width, size)] set."""
  max_width = min(int(max_width), size)
  k_width, k_start = jax.random.split(key)
  width = jax.random.randint(k_width, (), 0, max_width + 1)
  start = jax.random.randint(k_start, (), 0, size - width + 1)
  positions = jnp.arange(size)
  return (positions >= start) & (positions < start + width)
