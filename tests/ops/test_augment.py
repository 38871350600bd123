"""kws_jax.ops.augment against NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kws_jax.ops import augment


def _numpy_shift(x: np.ndarray, shift: int) -> np.ndarray:
  """TF time_shift_padding/offset reference: pad `shift` zeros in front (or behind), cut."""
  if shift >= 0:
    return np.concatenate([np.zeros(shift), x])[: len(x)]
  return np.concatenate([x, np.zeros(-shift)])[-shift:]


def test_shift_by_matches_numpy_reference():
  x = np.arange(1, 101, dtype=np.float32)
  for shift in (-100, -37, -1, 0, 1, 5, 99, 100):
    np.testing.assert_array_equal(np.asarray(augment.shift_by(jnp.asarray(x), shift)),
                                  _numpy_shift(x, shift))


def test_time_shift_draws_every_shift_in_range_and_no_other():
  x = jnp.arange(1, 201, dtype=jnp.float32)
  max_shift = 3
  keys = jax.random.split(jax.random.key(0), 400)
  shifted = np.asarray(jax.jit(jax.vmap(augment.time_shift, (0, None, None)))(keys, x, max_shift))
  references = {s: _numpy_shift(np.asarray(x), s) for s in range(-max_shift, max_shift + 1)}
  seen = set()
  for row in shifted:
    matches = [s for s, ref in references.items() if np.array_equal(row, ref)]
    assert len(matches) == 1
    seen.add(matches[0])
  assert seen == set(references)


def test_time_shift_zero_is_identity():
  x = jax.random.normal(jax.random.key(1), (50,))
  np.testing.assert_array_equal(augment.time_shift(jax.random.key(2), x, 0), x)


def _ramp_bank(num: int, length: int) -> np.ndarray:
  # Distinct values everywhere, so the added window can be located exactly.
  return (np.arange(num * length, dtype=np.float64).reshape(num, length) /
          (num * length)).astype(np.float32) * 0.5 + 0.01


def test_mix_background_adds_a_scaled_window_of_one_noise():
  bank = _ramp_bank(3, 64)
  keys = jax.random.split(jax.random.key(0), 20)
  outs = np.asarray(jax.vmap(augment.mix_background, (0, None, None, None, None))(
      keys, jnp.zeros(16, jnp.float32), jnp.asarray(bank), 0.5, 1.0))
  for out in outs:
    # Recover volume from the first sample, then the window is out / volume.
    found = False
    for k in range(3):
      for offset in range(64 - 16 + 1):
        window = bank[k, offset:offset + 16]
        volume = out[0] / window[0]
        if np.allclose(out, volume * window, rtol=1e-5, atol=1e-7):
          assert 0 <= volume < 0.5
          found = True
    assert found


def test_mix_background_frequency_zero_leaves_audio_force_overrides():
  bank = jnp.asarray(_ramp_bank(2, 40))
  audio = jax.random.uniform(jax.random.key(3), (20,), minval=-0.5, maxval=0.5)
  keys = jax.random.split(jax.random.key(0), 10)
  mix = jax.vmap(augment.mix_background, (0, None, None, None, None, None))
  np.testing.assert_array_equal(mix(keys, audio, bank, 0.3, 0.0, False),
                                np.broadcast_to(audio, (10, 20)))
  forced = np.asarray(mix(keys, audio, bank, 0.3, 0.0, True))
  assert all(not np.allclose(row, audio) for row in forced)


def test_mix_background_frequency_is_the_mixing_probability():
  bank = jnp.asarray(_ramp_bank(2, 40))
  audio = jnp.zeros(20)
  keys = jax.random.split(jax.random.key(4), 2000)
  out = jax.vmap(augment.mix_background, (0, None, None, None, None))(keys, audio, bank, 1.0, 0.3)
  mixed = np.mean(np.any(np.asarray(out) != 0, axis=1))
  assert abs(mixed - 0.3) < 0.04


def test_mix_background_clips_to_unit_range():
  bank = jnp.ones((1, 30))
  out = augment.mix_background(jax.random.key(0), jnp.full((10,), 0.9), bank, 1e6, 1.0)
  assert float(jnp.max(out)) == 1.0


def test_mix_background_rejects_short_noise():
  with pytest.raises(ValueError, match="fewer than"):
    augment.mix_background(jax.random.key(0), jnp.zeros(10), jnp.zeros((1, 5)), 0.1, 1.0)


def test_mix_background_at_snr_sets_the_noise_against_the_clip():
  rng = np.random.default_rng(0)
  bank = rng.normal(size=(3, 3000)).astype(np.float32) * np.array([[0.001], [0.003], [0.01]],
                                                                  np.float32)
  words = (0.05 * np.sin(np.arange(2000) / 7.0)).astype(np.float32)
  keys = jax.random.split(jax.random.key(1), 600)
  mix = jax.vmap(augment.mix_background_at_snr, (0, None, None, None, None, None))
  out = np.asarray(mix(keys, jnp.asarray(words), jnp.asarray(bank), -5.0, 15.0, 1.0))
  noise = out - words
  # The added noise is a window of one recording (whichever its loudness): the SNR of
  # clip RMS over noise RMS is uniform in the range, checked in NumPy.
  snr = 20 * np.log10(np.sqrt(np.mean(words ** 2)) / np.sqrt(np.mean(noise ** 2, axis=1)))
  assert snr.min() >= -5 - 1e-3 and snr.max() <= 15 + 1e-3
  assert np.histogram(snr, bins=4, range=(-5, 15))[0].min() > 0.2 * len(snr)
  # frequency 0: nothing mixed; a reference level replaces the (empty) clip's.
  np.testing.assert_array_equal(
      mix(keys[:5], jnp.asarray(words), jnp.asarray(bank), 0.0, 20.0, 0.0),
      np.broadcast_to(words, (5, len(words))))
  silent = np.asarray(jax.vmap(augment.mix_background_at_snr,
                               (0, None, None, None, None, None, None))(
      keys[:50], jnp.zeros(2000), jnp.asarray(bank), 10.0, 10.0, 0.0, 0.05))
  np.testing.assert_allclose(np.sqrt(np.mean(silent ** 2, axis=1)), 0.05 / 10 ** 0.5, rtol=1e-4)


def _numpy_resample_about_centre(x: np.ndarray, rate: float) -> np.ndarray:
  """np.interp reference: sample the zero-padded clip at centre + (i - centre) * rate."""
  n = len(x)
  centre = (n - 1) / 2
  positions = centre + (np.arange(n) - centre) * rate
  return np.interp(positions, np.arange(-1, n + 1), np.concatenate([[0.0], x, [0.0]]),
                   left=0.0, right=0.0)


def test_resample_about_centre_matches_numpy_interp():
  x = np.random.default_rng(0).normal(size=1000).astype(np.float32)
  for rate in (0.8, 0.93, 1.0, 1.07, 1.25):
    # float32 positions near 1000 are exact to ~6e-5 of a sample: white noise moves by ~3
    # per sample, hence the tolerance.
    np.testing.assert_allclose(np.asarray(augment.resample_about_centre(jnp.asarray(x), rate)),
                               _numpy_resample_about_centre(x, rate), atol=5e-4)
  np.testing.assert_array_equal(np.asarray(augment.resample_about_centre(jnp.asarray(x), 1.0)), x)


def test_resample_about_centre_scales_pitch_by_the_rate():
  sample_rate, tone_hz = 16000, 500.0
  t = np.arange(sample_rate) / sample_rate
  tone = np.sin(2 * np.pi * tone_hz * t).astype(np.float32)
  for rate in (0.85, 1.15):
    out = np.asarray(augment.resample_about_centre(jnp.asarray(tone), rate))
    # Zeros enter at both ends when slowing down: look at the middle half only.
    middle = out[sample_rate // 4: 3 * sample_rate // 4]
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle))))
    peak_hz = np.argmax(spectrum) * sample_rate / len(middle)
    assert abs(peak_hz - tone_hz * rate) <= 2.0, (rate, peak_hz)


def test_speed_perturb_rates_are_log_uniform_within_the_limit():
  n, max_change = 2001, 0.2
  ramp = jnp.arange(n, dtype=jnp.float32)
  keys = jax.random.split(jax.random.key(3), 600)
  out = np.asarray(jax.jit(jax.vmap(augment.speed_perturb, (0, None, None)))(keys, ramp,
                                                                             max_change))
  # A ramp resampled about its centre keeps the centre value and has slope = rate.
  centre = (n - 1) // 2
  np.testing.assert_allclose(out[:, centre], centre, atol=1e-2)
  rates = (out[:, centre + 100] - out[:, centre - 100]) / 200
  assert rates.min() >= 1 / (1 + max_change) - 1e-4 and rates.max() <= 1 + max_change + 1e-4
  assert rates.min() < 1 / (1 + max_change) + 0.01 and rates.max() > 1 + max_change - 0.01
  logs = np.log(rates)
  assert abs(np.median(logs)) < 0.02  # as many faster as slower
  # Uniform in log rate: each quarter of [-log(1.2), log(1.2)] holds about a quarter.
  counts = np.histogram(logs, bins=4, range=(-np.log1p(max_change), np.log1p(max_change)))[0]
  assert counts.min() > 0.18 * len(logs)
  unchanged = np.asarray(augment.speed_perturb(jax.random.key(0), ramp, 0.0))
  np.testing.assert_array_equal(unchanged, np.asarray(ramp))


def test_random_gain_is_uniform_in_decibels_and_clips():
  tone = 0.1 * jnp.sin(jnp.arange(800, dtype=jnp.float32) / 5.0)
  keys = jax.random.split(jax.random.key(5), 800)
  out = np.asarray(jax.jit(jax.vmap(augment.random_gain, (0, None, None, None)))(
      keys, tone, -24.0, 6.0))
  # Each output is the tone times one factor: read the factor where nothing clips.
  gains_db = 20 * np.log10(out[:, 8] / np.asarray(tone)[8])
  np.testing.assert_allclose(out, np.clip(10 ** (gains_db[:, None] / 20) * np.asarray(tone), -1, 1),
                             atol=1e-6)
  assert gains_db.min() >= -24 - 1e-3 and gains_db.max() <= 6 + 1e-3
  counts = np.histogram(gains_db, bins=5, range=(-24, 6))[0]
  assert counts.min() > 0.15 * len(gains_db)   # uniform in dB: ~20 % per sixth of 30 dB
  loud = np.asarray(augment.random_gain(jax.random.key(0), jnp.full(4, 0.9), 12.0, 12.0))
  np.testing.assert_array_equal(loud, 1.0)    # +12 dB on 0.9 clips at full scale
  same = np.asarray(augment.random_gain(jax.random.key(0), tone, 0.0, 0.0))
  np.testing.assert_array_equal(same, np.asarray(tone))


def _bands(mask_1d: np.ndarray) -> int:
  return int(np.sum(np.diff(np.concatenate([[0], mask_1d.astype(int), [0]])) == 1))


def _spec_augment_many(features, num, **kwargs):
  keys = jax.random.split(jax.random.key(7), num)
  fn = jax.jit(jax.vmap(lambda k: augment.spec_augment(k, features, **kwargs)))
  return np.asarray(fn(keys))


def test_spec_augment_masks_are_bands_within_limits():
  features = jnp.ones((98, 40))
  outs = _spec_augment_many(features, 30, time_masks=1, time_mask_max=10, freq_masks=1,
                            freq_mask_max=8, mask_value=-1.0)
  for out in outs:
    masked = out == -1.0
    time_rows = masked.all(axis=1)
    freq_cols = masked.all(axis=0)
    # Every masked cell is in a fully masked row or column: masks are bands.
    assert np.array_equal(masked, time_rows[:, None] | freq_cols[None, :])
    assert time_rows.sum() <= 10 and _bands(time_rows) <= 1
    assert freq_cols.sum() <= 8 and _bands(freq_cols) <= 1
    np.testing.assert_array_equal(out[~masked], 1.0)


def test_spec_augment_widths_reach_the_maximum_and_zero_masks_is_identity():
  features = jax.random.normal(jax.random.key(0), (50, 20))
  outs = _spec_augment_many(features, 200, time_masks=1, time_mask_max=3, freq_masks=0,
                            freq_mask_max=0, mask_value=jnp.nan)
  widths = {int(np.isnan(out).all(axis=1).sum()) for out in outs}
  assert widths == {0, 1, 2, 3}
  same = augment.spec_augment(jax.random.key(1), features, time_masks=0, time_mask_max=5,
                              freq_masks=0, freq_mask_max=5)
  np.testing.assert_array_equal(same, features)


def test_spec_augment_two_masks_each_give_independent_masks():
  features = jnp.ones((30, 10))
  outs = _spec_augment_many(features, 50, time_masks=2, time_mask_max=8, freq_masks=2,
                            freq_mask_max=4)
  assert len({out.tobytes() for out in outs}) > 25
  # Two bands of up to 8 frames each: never more than 16 masked frames.
  assert max(int((out == 0).all(axis=1).sum()) for out in outs) <= 16
  assert max(_bands((out == 0).all(axis=1)) for out in outs) == 2
