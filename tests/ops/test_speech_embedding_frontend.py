"""The speech_embedding preset against openWakeWord's melspectrogram.onnx (onnxruntime).

Tolerance: 5e-4 in feature units (dB / 10, so 5e-3 dB) on synthetic and real clips,
reached on bins 60-80 dB below the peak (1.5e-4 measured); float32 rounding of the
DFT is proportional to the frame energy (see kws_jax.ops.frontend), louder bins agree to ~3e-6.
The graph floors at the peak of its whole input tensor; the preset's default
(top_db_mode="running") floors at the running peak of each clip, "clip" at each clip's
peak, which equals the graph run on one clip at a time.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from onnx_reference import onnx_features, session  # skips without onnxruntime

from kws_jax import audio as kaudio
from kws_jax.models import onnx_import
from kws_jax.ops import frontend

TOL = 5e-4


@pytest.fixture(scope="module")
def mel_session():
  return session(onnx_import.MELSPECTROGRAM_FILE)


def signals() -> np.ndarray:
  """A chirp with a loud burst, a quiet noise clip, and a clip with digital silence (the
  -80 dB floor is active on its zeros)."""
  rng = np.random.default_rng(0)
  t = np.arange(16000) / 16000
  chirp = 0.3 * np.sin(2 * np.pi * (100 * t + 3000 * t ** 2)) + 0.5 * (np.abs(t - 0.6) < 0.1)
  quiet = 1e-3 * rng.standard_normal(16000)
  gapped = 0.2 * np.sin(2 * np.pi * 440 * t) * (t > 0.5)
  return np.stack([chirp, quiet, gapped]).astype(np.float32)


def test_clip_mode_matches_onnx_per_clip(mel_session):
  clips = signals()
  params = frontend.make_params(frontend.get_config("speech_embedding", top_db_mode="clip"))
  ours = np.asarray(jax.jit(frontend.featurize)(params, clips))
  for clip, feats in zip(clips, ours):
    ref = onnx_features(mel_session, clip)
    assert feats.shape == ref.shape == (97, 32)
    np.testing.assert_allclose(feats, ref, atol=TOL, rtol=0)
  # The floor is active on the gapped clip's zeros: it is what is being compared.
  assert np.isclose(ours[2, :20].min(), ours[2].max() - 8.0, atol=1e-3)


def test_running_floor_equals_onnx_after_the_peak_and_scanning_the_step(mel_session):
  clips = signals()
  params = frontend.make_params(frontend.get_config("speech_embedding"))
  batch = np.asarray(jax.jit(frontend.featurize)(params, clips))
  # Every frame at or after a clip's loudest frame has seen the clip's peak.
  for clip, feats in zip(clips, batch):
    ref = onnx_features(mel_session, clip)
    start = int(np.argmax(ref.max(axis=1)))
    np.testing.assert_allclose(feats[start:], ref[start:], atol=TOL, rtol=0)
  # Before the peak: the running floor is lower (the gapped clip's leading zeros stay at
  # the 1e-10 floor, -100 dB -> -8), never higher.
  ref = onnx_features(mel_session, clips[2])
  assert batch[2, 0].max() < ref[0].min() - 1.0
  # The streaming twin: the step keeps the running peak in its state.
  lead = params.cfg.window_size - params.cfg.hop_size
  padded = np.concatenate([np.zeros((3, lead), np.float32), clips], axis=1)
  _, streamed = jax.jit(frontend.stream)(params, clips)
  expected = np.asarray(frontend.featurize(params, padded))
  assert streamed.shape == expected.shape == (3, 100, 32)
  np.testing.assert_allclose(np.asarray(streamed), expected, atol=TOL, rtol=0)


@pytest.mark.slow
def test_batch_mates_do_not_change_a_clip():
  clips = signals()
  params = frontend.make_params(frontend.get_config("speech_embedding"))
  alone = np.asarray(frontend.featurize(params, clips[1:2]))
  together = np.asarray(frontend.featurize(params, clips))[1:2]
  np.testing.assert_array_equal(alone, together)


@pytest.mark.shared_data
def test_real_clips_match_onnx(shared_data, mel_session):
  files = sorted((shared_data / "sc_v2_test12_dev").glob("*/*.wav"))[::400][:12]
  assert len(files) >= 6
  params = frontend.make_params(frontend.get_config("speech_embedding", top_db_mode="clip"))
  featurize = jax.jit(frontend.featurize)
  worst = 0.0
  for path in files:
    clip = kaudio.read_audio(str(path), 16000)
    ref = onnx_features(mel_session, clip)
    worst = max(worst, float(np.abs(np.asarray(featurize(params, clip)) - ref).max()))
  assert worst < TOL, worst
