"""Scoring a stream's posteriors: TF RecognizeCommands smoothing, TF's streaming accuracy,
false rejects at a false-accept rate, the DET curve."""

from __future__ import annotations

import sys
from typing import Any, Mapping, Sequence

import numpy as np

from kws_jax import audio as audio_lib
from kws_jax.errors import ConfigError
from kws_jax.ops import smoothing
from kws_jax.streameval import detection as dm
from kws_jax.streameval import false_accepts, long_audio
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
  """Smoothed detections `(label, time_ms)` for each threshold (kws_jax.streameval.long_audio:
  one smoothing pass for all thresholds, in hop chunks)."""
  params = smoothing_params(len(post.label_names), post.hop_ms, settings, 1.0)
  return long_audio.smoothed_detections(post.scores, post.label_names, post.hop_ms,
                                        post.window_ms, params, thresholds, dm.SILENCE)


def evaluate_stream(post: Posteriors, truth: Sequence[dm.Event], settings: SmoothingSettings,
                    duration_s: float, det_png: str | None = None, det_title: str = "",
                    manifest: Mapping[str, Any] | None = None,
                    fa_target: float | None = None) -> dict[str, Any]:
  """TF's streaming accuracy and the wake-word figures of kws_jax.streameval.false_accepts
  (false accepts on the manifest's negative parts only, when a manifest is given)."""
  keywords = [w for w in post.label_names if not w.startswith("_")]
  # Dense near 1: hours of negatives reach 0.1 FA/h only at high thresholds.
  thresholds = np.unique(np.concatenate([np.linspace(0.05, 0.95, 19), np.linspace(0.5, 0.99, 50),
                                         1 - np.logspace(-1, -4, 13),
                                         [settings.detection_threshold]]))
  found = detections(post, settings, thresholds)
  at = int(np.argmin(np.abs(thresholds - settings.detection_threshold)))
  tf_stats = dm.streaming_accuracy(found[at], truth, settings.time_tolerance_ms)
  result = {
      "matched": tf_stats.matched, "correct": tf_stats.correct, "wrong": tf_stats.wrong,
      "false_positive": tf_stats.false_positive, "num_words": tf_stats.num_ground_truth,
      "detections": len(found[at]), "summary": tf_stats.summary(),
      **false_accepts.report(found, thresholds, at, truth, keywords, settings.time_tolerance_ms,
                             duration_s, manifest, fa_target)}
  if det_png:
    curve = [dm.DetectionErrors(**p) for p in result["det_curve"]]
    dm.plot_det_curve(curve, det_png, title=f"DET{': ' + det_title if det_title else ''} "
                      f"({result['negative_hours']:.2f} h of negatives)")
  return result


def run_eval(runner: StreamRunner, wav: str, labels_path: str, reset: str,
             settings: SmoothingSettings, det_png: str | None, det_title: str = "",
             manifest: Mapping[str, Any] | None = None,
             fa_target: float | None = None) -> dict[str, Any]:
  if reset not in RESET_MODES:
    raise ConfigError(f"--reset {reset!r}: choose one of {', '.join(RESET_MODES)}")
  truth = dm.read_labels(labels_path)
  reset_hops = []
  if reset == "clip":
    reset_hops = [int(t / 1000 * runner.sample_rate) // runner.hop_size for _, t in truth]
  if long_audio.readable_in_chunks(wav, runner.sample_rate):  # hours of audio: never whole
    post = long_audio.file_posteriors(runner, wav, reset_hops, progress=sys.stderr.isatty())
    duration_s = long_audio.seconds(wav)
  else:
    audio = audio_lib.read_audio(wav, runner.sample_rate)
    duration_s = audio.shape[0] / runner.sample_rate
    post = runner.posteriors(audio, reset_hops)
  result = evaluate_stream(post, truth, settings, duration_s, det_png, det_title, manifest,
                           fa_target)
  result.update({"reset": reset, "audio_seconds": duration_s, "step_seconds": post.seconds,
                 "real_time_factor": duration_s / max(post.seconds, 1e-9),
                 "hops": int(post.scores.shape[0])})
  if post.vad_active is not None:
    result["vad_active_fraction"] = float(post.vad_active.mean())
  return result
