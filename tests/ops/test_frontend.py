"""Featurizer parity against librosa/scipy (float64 references) and step-vs-batch.

Tolerances: JAX runs in float32, references in float64. Linear quantities (mel
spectrogram, MFCC) are compared relative to the reference's largest magnitude
(max |a - b| / max |b| <= 1e-4), because a per-element relative error is
meaningless for near-zero bins; dB values are compared absolutely (1e-3 dB).
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest
import scipy.fft

from kws_jax import audio as kaudio
from kws_jax.errors import ConfigError
from kws_jax.ops import frontend

SR = 16000


def rel_err(actual, expected) -> float:
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  assert actual.shape == expected.shape, (actual.shape, expected.shape)
  return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def synthetic_signal(seed: int = 0, seconds: float = 1.0) -> np.ndarray:
  """A chirp, a tone burst and noise: energy across the band, with loud and quiet parts."""
  rng = np.random.default_rng(seed)
  t = np.arange(int(SR * seconds)) / SR
  chirp = 0.5 * np.sin(2 * np.pi * (100 * t + 3000 * t ** 2))
  burst = 0.3 * np.sin(2 * np.pi * 440 * t) * (np.abs(t - 0.5) < 0.2)
  return (chirp + burst + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)


def librosa_reference(cfg: frontend.FrontendConfig, y: np.ndarray, stage: str) -> np.ndarray:
  """Independent float64 librosa pipeline for `cfg`, (T, F); stage: mel | compressed | final."""
  y = np.asarray(y, np.float64)
  if cfg.center:
    # Pad the whole signal with NumPy: librosa >= 0.10 reflect-pads a short tail slice
    # separately, which bounces once and changes one sample of the last frame.
    y = np.pad(y, cfg.window_size // 2, mode=cfg.pad_mode)
  else:
    # librosa centres a short window inside n_fft; padding (n_fft - window)/2 zeros on
    # each side makes its frame t start at sample t*hop like ours.
    side = (cfg.n_fft - cfg.window_size) // 2
    y = np.pad(y, (side, side))
  spec = np.abs(librosa.stft(y, n_fft=cfg.n_fft, hop_length=cfg.hop_size,
                             win_length=cfg.window_size, window=cfg.window,
                             center=False)) ** cfg.power
  fb = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.num_mels,
                           fmin=cfg.fmin, fmax=cfg.fmax, htk=cfg.mel_scale == "htk",
                           norm=cfg.mel_norm, dtype=np.float64)
  mel = fb @ spec
  if stage == "mel":
    return mel.T
  if cfg.compression == "log":
    comp = np.log(np.maximum(mel, cfg.log_floor) + cfg.log_offset)
  elif cfg.compression == "db":
    comp = librosa.power_to_db(mel, ref=cfg.db_ref, amin=cfg.db_amin, top_db=cfg.top_db)
  else:
    comp = mel
  if stage == "compressed" or not cfg.num_mfcc:
    return comp.T
  return librosa.feature.mfcc(S=comp, n_mfcc=cfg.num_mfcc, dct_type=2, norm="ortho").T


def run(cfg, y):
  return np.asarray(jax.jit(frontend.featurize)(frontend.make_params(cfg), y))


# ----------------------------------------------------------------- building blocks

@pytest.mark.parametrize("scale,norm,fmin,fmax,n_fft,mels", [
    ("htk", None, 0.0, 8000.0, 512, 80),
    ("htk", None, 20.0, 4000.0, 512, 40),
    ("htk", "slaney", 0.0, None, 320, 64),
    ("slaney", None, 0.0, None, 400, 40),
    ("slaney", "slaney", 50.0, 7000.0, 512, 80),
])
def test_mel_filterbank_matches_librosa(scale, norm, fmin, fmax, n_fft, mels):
  cfg = frontend.get_config("ell", spectrum="dft", mel_scale=scale, mel_norm=norm, fmin=fmin,
                            fmax=fmax, n_fft=n_fft, window_size=min(n_fft, 512), num_mels=mels)
  ref = librosa.filters.mel(sr=SR, n_fft=n_fft, n_mels=mels, fmin=fmin, fmax=fmax,
                            htk=scale == "htk", norm=norm, dtype=np.float64).T
  assert rel_err(frontend.mel_filterbank(cfg), ref) < 1e-10
  params = frontend.make_params(cfg)
  used = params.mel.shape[0]
  assert not ref[used:].any(), "bins beyond used_bins must carry no weight"
  assert rel_err(params.mel, ref[:used]) < 1e-6


def test_dct_matrix_is_scipy_orthonormal_dct2():
  x = np.random.default_rng(1).standard_normal((5, 40))
  ref = scipy.fft.dct(x, type=2, norm="ortho", axis=-1)[:, :13]
  np.testing.assert_allclose(x @ frontend.dct_matrix(40, 13), ref, atol=1e-12)


@pytest.mark.parametrize("name", ["ell", "tf_speech_commands"])
def test_window_matches_scipy_periodic(name):
  cfg = frontend.get_config(name)
  ref = librosa.filters.get_window(cfg.window, cfg.window_size, fftbins=True)
  np.testing.assert_allclose(frontend.window_fn(cfg.window, cfg.window_size), ref, atol=1e-12)


@pytest.mark.parametrize("length,n,bins", [(480, 512, 129), (16, 16, 9), (7, 8, 5)])
def test_half_length_rfft_matches_numpy(length, n, bins):
  x = np.random.default_rng(length).standard_normal((3, length)).astype(np.float32)
  re, im = jax.jit(frontend.half_length_rfft, static_argnums=(1, 2))(jnp.asarray(x), n, bins)
  ref = np.fft.rfft(x.astype(np.float64), n)[:, :bins]   # bins = n/2 + 1 includes Nyquist
  scale = np.abs(ref).max()
  np.testing.assert_allclose(np.asarray(re), ref.real, atol=2e-6 * scale)
  np.testing.assert_allclose(np.asarray(im), ref.imag, atol=2e-6 * scale)


@pytest.mark.parametrize("name", ["ell", "tf_speech_commands", "torchaudio"])
def test_banded_mel_equals_the_filterbank_product(name):
  params = frontend.make_params(frontend.get_config(name))
  spec = np.random.default_rng(0).random((5, params.mel.shape[0]))
  dense = spec @ np.asarray(params.mel, np.float64)
  banded = (spec[:, np.asarray(params.mel_index)] * np.asarray(params.mel_weights)).sum(-1)
  np.testing.assert_allclose(banded, dense, rtol=1e-6)
  # Every nonzero weight of the filterbank is in the band (none dropped).
  assert np.count_nonzero(params.mel_weights) == np.count_nonzero(params.mel)


@pytest.mark.parametrize("name,power", [("tf_speech_commands", 1.0), ("ell", 2.0)])
def test_dft_and_rfft_spectra_agree(name, power):
  y = synthetic_signal(2)
  spectra = {}
  for method in ("dft", "rfft"):
    cfg = frontend.get_config(name, spectrum=method, power=power)
    params = frontend.make_params(cfg)
    frames = frontend.frame_signal(jnp.asarray(y), cfg.window_size, cfg.hop_size)
    spectra[method] = np.asarray(jax.jit(frontend.linear_spectrum)(params, frames))
  assert rel_err(spectra["dft"], spectra["rfft"]) < 1e-5
  # And both against NumPy's float64 FFT.
  cfg = frontend.get_config(name)
  frames = np.asarray(frontend.frame_signal(jnp.asarray(y), cfg.window_size, cfg.hop_size))
  win = frontend.window_fn(cfg.window, cfg.window_size)
  ref = np.abs(np.fft.rfft(frames.astype(np.float64) * win, n=cfg.n_fft)) ** power
  assert rel_err(spectra["dft"], ref[..., :spectra["dft"].shape[-1]]) < 1e-5


def test_rfft_with_non_power_of_two_fft_asks_for_dft():
  with pytest.raises(ConfigError, match="spectrum='dft'"):
    frontend.get_config("torchaudio", spectrum="rfft")


def test_config_errors_name_the_fix():
  with pytest.raises(ConfigError, match="choose one of"):
    frontend.get_config("nope")
  with pytest.raises(ConfigError, match="unknown featurizer option"):
    frontend.get_config("ell", n_mel=3)
  with pytest.raises(ConfigError, match="n_fft"):
    frontend.get_config("ell", n_fft=256)
  with pytest.raises(ConfigError, match="integer"):
    frontend.get_config("ell", hop_size=1.5)
  assert frontend.get_config(preset="ell", num_mels=40).num_features == 40


def test_frame_signal_gather_and_reshape_paths_agree():
  x = jnp.arange(1000, dtype=jnp.float32)
  for window, hop in [(480, 160), (400, 160), (512, 512), (300, 128)]:
    frames = np.asarray(frontend.frame_signal(x, window, hop))
    count = 1 + (1000 - window) // hop
    assert frames.shape == (count, window)
    np.testing.assert_array_equal(frames[:, 0], np.arange(count) * hop)
    np.testing.assert_array_equal(frames[-1], np.arange(window) + (count - 1) * hop)


# ------------------------------------------------------------- presets vs librosa

PARITY_CONFIGS = {
    "ell": frontend.get_config("ell"),
    "tf_speech_commands": frontend.get_config("tf_speech_commands"),
    "tf_speech_commands_dft": frontend.get_config("tf_speech_commands", spectrum="dft"),
    "torchaudio": frontend.get_config("torchaudio"),
    "slaney_db_mfcc": frontend.get_config("ell", mel_scale="slaney", mel_norm="slaney",
                                          compression="db", power=2.0, num_mfcc=20,
                                          hop_size=160, window_size=400),
}


def check_parity(cfg: frontend.FrontendConfig, y: np.ndarray,
                 db_strict_within: float | None = None) -> None:
  """librosa parity; dB to 1e-3 everywhere, or only within `db_strict_within` dB of the peak."""
  mel_cfg = frontend.get_config(cfg.preset, **{**_overrides(cfg), "compression": "none",
                                               "num_mfcc": None})
  assert rel_err(run(mel_cfg, y), librosa_reference(cfg, y, "mel")) < 1e-4
  comp_cfg = frontend.get_config(cfg.preset, **{**_overrides(cfg), "num_mfcc": None})
  comp, comp_ref = run(comp_cfg, y), librosa_reference(cfg, y, "compressed")
  if cfg.compression == "db":
    err = np.abs(comp - comp_ref)
    if db_strict_within is None:
      assert err.max() < 1e-3
    else:
      # float32 DFT error scales with the frame energy (see frontend's docstring):
      # quiet bins far below the peak get a few 1e-3 dB.
      near_peak = comp_ref >= comp_ref.max() - db_strict_within
      assert err[near_peak].max() < 1e-3
      assert err.max() < 1e-2
  else:
    assert rel_err(comp, comp_ref) < 1e-4
  if cfg.num_mfcc:
    assert rel_err(run(cfg, y), librosa_reference(cfg, y, "final")) < 1e-4


def _overrides(cfg):
  return {k: getattr(cfg, k) for k in frontend._FIELDS if k != "preset"}


@pytest.mark.parametrize("key", sorted(PARITY_CONFIGS))
def test_parity_with_librosa_on_synthetic_signal(key):
  check_parity(PARITY_CONFIGS[key], synthetic_signal(3))


def test_torchaudio_preset_is_librosa_power_to_db_formula():
  y = synthetic_signal(4)
  ref = librosa.power_to_db(librosa.feature.melspectrogram(
      y=y.astype(np.float64), sr=16000, n_fft=320, hop_length=160, n_mels=64, htk=True,
      norm=None, center=True, pad_mode="reflect", power=2), ref=1.0, top_db=80).T
  cfg = frontend.get_config("torchaudio")
  feats = run(cfg, y)
  assert feats.shape == ref.shape == (frontend.num_frames(cfg, 16000), 64)
  # All frames but the last: the exact formula. The last frame differs by librosa's
  # tail padding (see librosa_reference), so it is checked against whole-signal reflect.
  np.testing.assert_allclose(feats[:-1], ref[:-1], atol=1e-3, rtol=0)
  np.testing.assert_allclose(feats, librosa_reference(cfg, y, "compressed"), atol=1e-3, rtol=0)


def test_top_db_is_per_example_in_a_batch():
  loud, quiet = synthetic_signal(5), 0.05 * synthetic_signal(6)
  cfg = frontend.get_config("torchaudio")
  batch = run(cfg, np.stack([loud, quiet]))
  np.testing.assert_allclose(batch[0], run(cfg, loud), atol=1e-4)
  np.testing.assert_allclose(batch[1], run(cfg, quiet), atol=1e-4)
  for example in batch:   # each clamped to its own peak - 80 dB (floors above amin's -100 dB)
    assert example.min() == pytest.approx(example.max() - 80.0, abs=1e-3)
  assert batch[0].max() - batch[1].max() > 20


def test_int16_input_is_scaled_by_1_over_32768():
  y16 = kaudio.to_int16(synthetic_signal(7))
  params = frontend.make_params(frontend.get_config("tf_speech_commands"))
  a = np.asarray(frontend.featurize(params, jnp.asarray(y16)))
  b = np.asarray(frontend.featurize(params, y16.astype(np.float32) / 32768.0))
  np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", sorted(frontend.PRESETS))
def test_shapes_match_num_frames(name):
  cfg = frontend.get_config(name)
  for samples in (16000, 12345):
    feats = run(cfg, np.zeros((2, samples), np.float32))
    assert feats.shape == (2, frontend.num_frames(cfg, samples), cfg.num_features)
    assert feats.dtype == np.float32 and np.all(np.isfinite(feats))


# ---------------------------------------------------------------- streaming twin

@pytest.mark.parametrize("name,overrides", [
    ("tf_speech_commands", {}),
    ("ell", {}),
    ("torchaudio", {"center": False, "top_db": None}),
    ("tf_speech_commands", {"window_size": 400, "spectrum": "dft"}),
])
def test_step_scan_equals_batch_on_zero_prefixed_signal(name, overrides):
  cfg = frontend.get_config(name, **overrides)
  params = frontend.make_params(cfg)
  y = np.stack([synthetic_signal(8, 0.5), synthetic_signal(9, 0.5)])
  _, streamed = jax.jit(frontend.stream)(params, y)
  hops = y.shape[-1] // cfg.hop_size
  assert streamed.shape == (2, hops, cfg.num_features)
  # Documented alignment: step k == featurize(concat(zeros(window - hop), x))[k].
  prefixed = np.concatenate([np.zeros((2, cfg.window_size - cfg.hop_size), np.float32), y], -1)
  batch = np.asarray(jax.jit(frontend.featurize)(params, prefixed))[:, :hops]
  # dB is compared as power relative to the max (quiet bins differ by float32 rounding).
  as_linear = (lambda x: 10.0 ** (x / 10.0)) if cfg.compression == "db" else (lambda x: x)
  assert rel_err(as_linear(np.asarray(streamed)), as_linear(batch)) < 1e-5
  if cfg.window_size % cfg.hop_size == 0:
    lag = cfg.window_size // cfg.hop_size - 1
    plain = np.asarray(jax.jit(frontend.featurize)(params, y))
    assert rel_err(as_linear(np.asarray(streamed)[:, lag:lag + plain.shape[1]]),
                   as_linear(plain)) < 1e-5


def test_step_rejects_wrong_chunk_size():
  params = frontend.make_params(frontend.get_config("tf_speech_commands"))
  with pytest.raises(ConfigError, match="hop_size=160"):
    frontend.step(params, frontend.init_state(params), jnp.zeros((100,)))


# ------------------------------------------------------------------- real clips

REAL_CLIPS = ["yes", "stop", "_silence_", "_unknown_"]   # first file (sorted) of each


@pytest.mark.parametrize("key", ["ell", "tf_speech_commands", "torchaudio", "slaney_db_mfcc"])
def test_parity_with_librosa_on_real_clips(shared_data: pathlib.Path, key):
  for folder in REAL_CLIPS:
    path = sorted((shared_data / "sc_v2_test12_dev" / folder).glob("*.wav"))[0]
    y = kaudio.read_audio(path)
    if not np.any(y):
      continue   # an all-zero silence clip has nothing to compare
    check_parity(PARITY_CONFIGS[key], y, db_strict_within=60.0)
