"""Scoring a stream's posteriors: TF RecognizeCommands smoothing, TF's streaming accuracy,
false rejects at a false-accept rate, the DET curve."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax.numpy as jnp
import numpy as np

from kws_jax import audio as audio_lib
from kws_jax.errors import ConfigError
from kws_jax.ops import smoothing
from kws_jax.streameval import detection as dm
from kws_jax.streameval.runners import Posteriors, StreamRunner
from kws_jax.streameval.settings import RESET_MODES, SmoothingSettings


def smoothing_params(num_labels: int, hop_ms: float, settings: SmoothingSettings,
                      threshold: float):
  return smoothing.make_params(num_labels, hop_ms, average_window_ms=settings.average_window_ms,
                               detection_threshold=threshold,
                               suppression_ms=settings.suppression_ms,
                               minimum_count=settings.minimum_count)


def detections(post: Posteriors, settings: SmoothingSettings,
               thresholds: Sequence[float]) -> list[list[dm.Event]]:
  """Smoothed detections `(label, time_ms)` for each threshold, in one batched smoothing pass.

  The smoothing threshold is a static parameter, so the sweep runs RecognizeCommands with
  threshold 1 on posteriors divided by each threshold: the window means scale the same way, the
  top label is unchanged and `mean / t > 1` is exactly `mean > t`.
  """

  thresholds = np.asarray(thresholds, np.float32)
  params = smoothing_params(len(post.label_names), post.hop_ms, settings, 1.0)
  scaled = jnp.asarray(post.scores, jnp.float32)[None] / jnp.asarray(thresholds)[:, None, None]
  _, outputs = smoothing.smooth(params, scaled)
  labels = np.asarray(outputs.label)
  is_new = np.asarray(outputs.is_new_command)
  result = []
  for k in range(len(thresholds)):
    hops = np.flatnonzero(is_new[k])
    # TF's test_streaming_accuracy dates a decision by the start of the window it looked at.
    result.append([(post.label_names[int(labels[k, h])],
                    max(0.0, (h + 1) * post.hop_ms - post.window_ms)) for h in hops
                   if post.label_names[int(labels[k, h])] != dm.SILENCE])
  return result


def evaluate_stream(post: Posteriors, truth: Sequence[dm.Event], settings: SmoothingSettings,
                    duration_s: float, det_png: str | None = None,
                    det_title: str = "") -> dict[str, Any]:
  keywords = [w for w in post.label_names if not w.startswith("_")]
  thresholds = np.unique(np.concatenate([np.linspace(0.05, 0.95, 19),
                                         1 - np.logspace(-1, -4, 13),
                                         [settings.detection_threshold]]))
  found = detections(post, settings, thresholds)
  at = int(np.argmin(np.abs(thresholds - settings.detection_threshold)))
  tf_stats = dm.streaming_accuracy(found[at], truth, settings.time_tolerance_ms)
  curve = [dm.detection_errors(f, truth, keywords, duration_s, float(t),
                               settings.time_tolerance_ms) for f, t in zip(found, thresholds)]
  if det_png:
    dm.plot_det_curve(curve, det_png, title=f"DET{': ' + det_title if det_title else ''} "
                      f"({duration_s / 60:.1f} min stream)")
  return {
      "matched": tf_stats.matched, "correct": tf_stats.correct, "wrong": tf_stats.wrong,
      "false_positive": tf_stats.false_positive, "num_words": tf_stats.num_ground_truth,
      "detections": len(found[at]),
      "frr_at_0.5fa_per_hour": dm.frr_at_fa_per_hour(curve, 0.5),
      "frr_at_1fa_per_hour": dm.frr_at_fa_per_hour(curve, 1.0),
      "det_curve": [dataclasses.asdict(p) for p in curve],
      "summary": tf_stats.summary(),
  }


def run_eval(runner: StreamRunner, wav: str, labels_path: str, reset: str,
             settings: SmoothingSettings, det_png: str | None,
             det_title: str = "") -> dict[str, Any]:
  if reset not in RESET_MODES:
    raise ConfigError(f"--reset {reset!r}: choose one of {', '.join(RESET_MODES)}")
  audio = audio_lib.read_audio(wav, runner.sample_rate)
  truth = dm.read_labels(labels_path)
  duration_s = audio.shape[0] / runner.sample_rate
  reset_hops = []
  if reset == "clip":
    reset_hops = [int(t / 1000 * runner.sample_rate) // runner.hop_size for _, t in truth]
  post = runner.posteriors(audio, reset_hops)
  result = evaluate_stream(post, truth, settings, duration_s, det_png, det_title)
  result.update({"reset": reset, "audio_seconds": duration_s, "step_seconds": post.seconds,
                 "real_time_factor": duration_s / max(post.seconds, 1e-9),
                 "hops": int(post.scores.shape[0])})
  if post.vad_active is not None:
    result["vad_active_fraction"] = float(post.vad_active.mean())
  return result


