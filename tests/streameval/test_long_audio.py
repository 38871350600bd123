import json

import numpy as np
import pytest

from kws_jax import audio
from kws_jax.streameval import detection as dm
from kws_jax.streameval import long_audio, runners, scoring

HOP = 160
LABELS = ["_silence_", "_unknown_", "yes", "no"]


class _StatefulStep:
  """A step whose outputs depend on all audio since the last reset (a leaky energy sum)."""

  def run(self, x, state=None):
    energy = np.abs(np.asarray(x, np.float64).reshape(-1, HOP)).mean(axis=1)
    s = 0.0 if state is None else state
    sums = []
    for e in energy:
      s = 0.95 * s + e
      sums.append(s)
    sums = np.array(sums)
    logits = np.stack([1 - sums, 0.1 * sums, sums * np.sin(np.arange(len(sums))),
                       sums * np.cos(np.arange(len(sums)))], axis=1)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return s, {"scores": (p / p.sum(axis=1, keepdims=True)).astype(np.float32)}


def _runner():
  runner = runners.StreamRunner(_StatefulStep(), LABELS, HOP, 16000, window_ms=100.0)
  runner.CHUNK_HOPS = 16
  return runner


@pytest.mark.parametrize("resets", [[], [7, 40, 41, 333]])
def test_chunked_posteriors_equal_whole_file(tmp_path, resets):
  rng = np.random.default_rng(0)
  x = (rng.normal(0, 0.2, 16000 * 3 + 77) * np.sin(np.arange(16000 * 3 + 77) / 900)) \
      .astype(np.float32)
  wav = str(tmp_path / "x.wav")
  audio.write_wav(wav, x)
  whole = _runner().posteriors(audio.read_audio(wav), resets)
  for block_seconds in (0.013, 0.5, 10.0):  # blocks smaller, larger than the step's pieces
    chunked = long_audio.file_posteriors(_runner(), wav, resets, block_seconds=block_seconds)
    assert chunked.scores.shape == whole.scores.shape == (x.size // HOP, 4)
    np.testing.assert_array_equal(chunked.scores, whole.scores)


def test_chunked_smoothing_equals_one_pass():
  rng = np.random.default_rng(1)
  scores = rng.dirichlet(np.ones(4) * 0.3, size=900).astype(np.float32)
  post = runners.Posteriors(scores, LABELS, 10.0, 0.0, window_ms=200.0)
  settings = scoring.SmoothingSettings(average_window_ms=100, suppression_ms=300, minimum_count=2)
  params = scoring.smoothing_params(4, 10.0, settings, 1.0)
  thresholds = [0.3, 0.5, 0.8]
  one = long_audio.smoothed_detections(scores, LABELS, 10.0, 200.0, params, thresholds,
                                       "_silence_", chunk_hops=10**6)
  for chunk in (37, 256):
    assert long_audio.smoothed_detections(scores, LABELS, 10.0, 200.0, params, thresholds,
                                          "_silence_", chunk_hops=chunk) == one
  assert sum(map(len, one)) > 10 and one == scoring.detections(post, settings, thresholds)


def test_run_eval_reports_wake_word_keys_with_a_manifest(tmp_path):
  rng = np.random.default_rng(2)
  wav = str(tmp_path / "x.wav")
  audio.write_wav(wav, rng.normal(0, 0.1, 16000 * 4).astype(np.float32))
  labels = tmp_path / "x_labels.txt"
  dm.write_labels(str(labels), [("yes", 500.0)])
  manifest = {"sample_rate": 16000, "parts": [{"kind": "keywords", "start": 0, "end": 16000},
                                              {"kind": "noise", "start": 16000, "end": 64000}]}
  result = scoring.run_eval(_runner(), wav, str(labels), "never", scoring.SmoothingSettings(),
                           str(tmp_path / "det.png"), manifest=manifest, fa_target=1.0)
  assert set(result["frr_at_fa_per_hour"]) == {"0.1", "0.5", "1"}
  assert result["negative_hours"] == pytest.approx(3 / 3600)
  assert {"matched", "frr_at_0.5fa_per_hour", "real_time_factor"} <= set(result)
  assert result["false_accepts"] == sum(result["false_accepts_by_part"].values())
  json.dumps(result)
  assert (tmp_path / "det.png").stat().st_size > 1000
