"""VAD: a NumPy transcription of ELL's algorithm, step/batch twins, real-speech acceptance."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kws_jax import audio as kaudio
from kws_jax.errors import ConfigError
from kws_jax.ops import frontend, vad

KEYWORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]


def ell_cmessage_weight(freq: float) -> float:
  """ELL's CMessageWeights.genWeight + generate, transcribed (power weight)."""
  freq_map = [60] + list(range(100, 4001, 100))
  f = 0
  for i, edge in enumerate(freq_map):
    if freq > edge:
      f = i + 1
  table = vad._CMSG_DB
  if f >= len(table):
    db = table[-1]
  elif f > 0:
    x1, x2 = freq_map[f - 1], freq_map[f]
    db = table[f - 1] + (table[f] - table[f - 1]) * (freq - x1) / (x2 - x1)
  else:
    return 0.0
  return (10 ** (db / 20)) ** 2


def ell_tracker(levels: np.ndarray, frame_duration: float, c: dict) -> np.ndarray:
  """ELL's ActivityTracker.classify over a level sequence, in float64."""
  last_level, last_time, signal, out = c["initial_level"], 0.0, 0, []
  for n, level in enumerate(levels):
    time = n * frame_duration
    dt, delta = time - last_time, level - last_level
    if level < last_level:
      last_level = max(last_level + dt / c["tau_down"] * delta, level)
    elif level > c["large_input"] * last_level:
      last_level = min(last_level + c["gain_att"] * dt / c["tau_up"] * delta, level)
    else:
      last_level = min(last_level + dt / c["tau_up"] * delta, level)
    if level > c["threshold_up"] * last_level and level > c["level_threshold"]:
      signal = 1
    if level < c["threshold_down"] * last_level:
      signal = 0
    last_time = time
    out.append(signal)
  return np.array(out)


def test_cmessage_weights_match_ell_table():
  freqs = np.array([0, 30, 60, 61, 80, 150, 999, 1000, 2345.6, 3999, 4000, 4100, 7000])
  np.testing.assert_allclose(vad.cmessage_weights(freqs),
                             [ell_cmessage_weight(f) for f in freqs], rtol=1e-12)


@pytest.mark.parametrize("constants", [vad.TUNED, vad.ELL_DEFAULTS])
def test_matches_ell_tracker_on_random_frames(constants):
  rng = np.random.default_rng(0)
  # Noise floor with bursts, so the detector switches on and off many times.
  gain = np.exp(rng.standard_normal((4, 300, 1)) * 0.3)
  gain[:, 50:80] *= 40
  gain[:, 150:160] *= 15
  gain[:, 220:260] *= 100
  frames = (0.05 * gain * rng.uniform(0.2, 1.0, (4, 300, 16))).astype(np.float32)
  weights = vad.cmessage_weights(np.linspace(0, 8000, 16))
  params = vad.make_params(weights, 0.01, **constants)
  active = np.asarray(jax.jit(vad.detect)(params, jnp.asarray(frames)))
  levels = (frames.astype(np.float64) * weights).sum(-1) / 16
  for b in range(4):
    expected = ell_tracker(levels[b], 0.01, constants)
    assert np.mean(active[b] == expected) >= 0.99, "float32 may flip a rare threshold tie"
    assert 2 <= np.sum(np.abs(np.diff(expected))), "the case must switch"


def test_step_scan_equals_detect_and_reads_featurizer_frames():
  cfg = frontend.get_config("tf_speech_commands")
  params = vad.params_for_frontend(cfg)
  rng = np.random.default_rng(1)
  audio = 0.001 * rng.standard_normal((2, 16000)).astype(np.float32)
  audio[:, 6000:9000] += 0.3 * np.sin(np.arange(3000) * 2 * np.pi * 1000 / 16000)
  feats = frontend.featurize(frontend.make_params(cfg), audio)
  batch = np.asarray(vad.detect(params, feats))
  state = vad.init_state(params, (2,))
  step = jax.jit(lambda s, f: vad.step(params, s, f))
  for t in range(feats.shape[1]):
    state, active = step(state, feats[:, t])
    np.testing.assert_array_equal(np.asarray(active), batch[:, t])
  # On during the tone (frames 35..56 touch it), off in the noise before and after.
  assert batch[:, 36:55].all() and not batch[:, :34].any() and not batch[:, 58:].any()
  # MFCC frames are read back as mel energies: the level equals the mel-input level.
  mel_cfg = frontend.get_config("tf_speech_commands", compression="none", num_mfcc=None)
  mel = frontend.featurize(frontend.make_params(mel_cfg), audio)
  np.testing.assert_allclose(vad.frame_level(params, feats),
                             np.asarray(vad.frame_level(vad.params_for_frontend(mel_cfg), mel)),
                             rtol=1e-3, atol=1e-9)


def test_bad_options_raise_config_error():
  cfg = frontend.get_config("tf_speech_commands")
  with pytest.raises(ConfigError, match="unknown VAD option"):
    vad.params_for_frontend(cfg, tau=1.0)
  with pytest.raises(ConfigError, match="tau_up"):
    vad.params_for_frontend(cfg, tau_up=0.0)


def word_extent(audio: np.ndarray, cfg: frontend.FrontendConfig) -> np.ndarray:
  """(N, T) bool: frames from the first to the last whose energy is within 15 dB of the
  clip's loudest frame (same framing as the featurizer) - the spoken word."""
  frames = np.asarray(frontend.frame_signal(jnp.asarray(audio), cfg.window_size, cfg.hop_size))
  energy_db = 10 * np.log10(np.sum(frames.astype(np.float64) ** 2, -1) + 1e-10)
  loud = energy_db >= energy_db.max(1, keepdims=True) - 15
  first = np.argmax(loud, 1)
  last = loud.shape[1] - 1 - np.argmax(loud[:, ::-1], 1)
  t = np.arange(loud.shape[1])
  return (t >= first[:, None]) & (t <= last[:, None])


def test_real_speech_acceptance(shared_data: pathlib.Path):
  """Fixed subset: clips 20..49 (sorted) of each keyword - not used for tuning - and all
  _silence_ clips. Overlap >= 90 % of keyword clips, silent on >= 80 % of silence clips."""
  root = shared_data / "sc_v2_test12_dev"
  def load(folder, sl):
    paths = sorted((root / folder).glob("*.wav"))[sl]
    return np.stack([kaudio.fit_length(kaudio.read_audio(p), 16000) for p in paths])
  keyword = np.concatenate([load(w, slice(20, 50)) for w in KEYWORDS])
  silence = load("_silence_", slice(None))
  cfg = frontend.get_config(vad.TUNED_FOR_PRESET)
  fparams, vparams = frontend.make_params(cfg), vad.params_for_frontend(cfg)
  run = jax.jit(lambda a: vad.detect(vparams, frontend.featurize(fparams, a)))
  active_kw = np.asarray(run(keyword)).astype(bool)
  active_sil = np.asarray(run(silence)).astype(bool)
  overlap = np.mean((active_kw & word_extent(keyword, cfg)).any(1))
  silent = np.mean(~active_sil.any(1))
  print(f"\nVAD ({cfg.preset}): word overlapped in {overlap:.1%} of {len(keyword)} keyword clips, "
        f"silent on {silent:.1%} of {len(silence)} _silence_ clips; params {vad.TUNED}")
  assert overlap >= 0.90
  assert silent >= 0.80
