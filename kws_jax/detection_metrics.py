"""Scoring keyword detections on a long stream against ground truth.

Two views, as in the field:
- TF speech_commands' `StreamingAccuracyStats` (test_streaming_accuracy): matched / correct /
  wrong / false-positive percentages of the ground-truth words, with a time tolerance.
- Wake-word style: false rejects at a fixed number of false accepts per hour, swept over the
  detection threshold (a DET curve).

Ground truth is a list of (label, time_ms) where time_ms is the start of the spoken clip, as
written by `generate_streaming_test_wav`; a detection is (label, time_ms) at the time it fired.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

import numpy as np

from kws_jax.errors import DataError

SILENCE = "_silence_"
UNKNOWN = "_unknown_"

Event = tuple[str, float]


def read_labels(path: str) -> list[Event]:
  """Reads a `label, time_ms` file (TF's streaming-test ground truth), sorted by time."""
  events = []
  try:
    with open(path) as f:
      for line_number, line in enumerate(f, 1):
        if not line.strip():
          continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 2:
          raise DataError(f"{path}:{line_number}: expected 'label, time_ms', got {line.strip()!r}")
        try:
          events.append((parts[0], float(parts[1])))
        except ValueError:
          raise DataError(f"{path}:{line_number}: time {parts[1]!r} is not a number") from None
  except FileNotFoundError:
    raise DataError(f"{path}: labels file not found (make one with "
                    "`python -m kws_jax.stream make-test`)") from None
  return sorted(events, key=lambda e: e[1])


def write_labels(path: str, events: Iterable[Event]) -> None:
  with open(path, "w") as f:
    for label, time_ms in events:
      f.write(f"{label}, {time_ms:f}\n")


@dataclasses.dataclass
class StreamingAccuracy:
  """TF's StreamingAccuracyStats over a whole file, as percentages of ground-truth words."""
  num_ground_truth: int
  matched: float
  correct: float
  wrong: float
  false_positive: float

  def summary(self) -> str:
    return (f"{self.matched:.1f}% matched, {self.correct:.1f}% correct, {self.wrong:.1f}% wrong, "
            f"{self.false_positive:.1f}% false positive ({self.num_ground_truth} words)")


def streaming_accuracy(detections: Sequence[Event], ground_truth: Sequence[Event],
                       time_tolerance_ms: float = 750.0) -> StreamingAccuracy:
  """TF test_streaming_accuracy scoring of all detections of a file.

  Each detection matches the first ground-truth word within +-tolerance of its time: it is
  correct if the label agrees and that word was not matched before, wrong otherwise; a
  detection with no ground truth in reach is a false positive. `_silence_` detections are
  ignored, as TF's tool does.
  """
  truth = sorted(ground_truth, key=lambda e: e[1])
  truth_times = np.array([t for _, t in truth], dtype=np.float64)
  correct = wrong = false_positive = 0
  matched_times: list[float] = []
  for label, found_time in detections:
    if label == SILENCE:
      continue
    start = np.searchsorted(truth_times, found_time - time_tolerance_ms, side="left")
    if start < len(truth) and truth_times[start] <= found_time + time_tolerance_ms:
      truth_label, truth_time = truth[start]
      if truth_label == label and truth_time not in matched_times:
        correct += 1
      else:
        wrong += 1
      matched_times.append(truth_time)
    else:
      false_positive += 1
  n = len(truth)
  pct = (lambda x: 100.0 * x / n) if n else (lambda x: 0.0)
  return StreamingAccuracy(n, pct(len(set(matched_times))), pct(correct), pct(wrong),
                           pct(false_positive))


@dataclasses.dataclass
class DetectionErrors:
  """False rejects and false accepts of keyword detections at one operating point."""
  threshold: float
  false_reject_rate: float  # fraction of keyword words not detected with their own label
  false_accepts: int        # keyword detections that match no same-label keyword word
  false_accepts_per_hour: float


def detection_errors(detections: Sequence[Event], ground_truth: Sequence[Event],
                     keywords: Sequence[str], duration_s: float, threshold: float = float("nan"),
                     time_tolerance_ms: float = 750.0) -> DetectionErrors:
  """Wake-word scoring: each keyword word is hit at most once by a same-label detection.

  Only detections of `keywords` count (silence/unknown detections are not accepts).
  """
  keywords = set(keywords)
  truth = [(l, t) for l, t in ground_truth if l in keywords]
  hit = np.zeros(len(truth), dtype=bool)
  false_accepts = 0
  for label, found_time in detections:
    if label not in keywords:
      continue
    match = next((i for i, (l, t) in enumerate(truth) if not hit[i] and l == label
                  and abs(t - found_time) <= time_tolerance_ms), None)
    if match is None:
      false_accepts += 1
    else:
      hit[match] = True
  frr = 1.0 - hit.mean() if len(truth) else 0.0
  return DetectionErrors(float(threshold), float(frr), false_accepts,
                         false_accepts / (duration_s / 3600.0))


def frr_at_fa_per_hour(curve: Sequence[DetectionErrors], fa_per_hour: float) -> float:
  """Lowest false-reject rate among operating points with at most `fa_per_hour` false accepts."""
  ok = [p.false_reject_rate for p in curve if p.false_accepts_per_hour <= fa_per_hour]
  return float(min(ok)) if ok else 1.0


def plot_det_curve(curve: Sequence[DetectionErrors], path: str, title: str = "") -> None:
  """DET curve (false rejects vs false accepts per hour) as a PNG."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  points = sorted(curve, key=lambda p: p.false_accepts_per_hour)
  fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=120)
  ax.plot([p.false_accepts_per_hour for p in points],
          [100 * p.false_reject_rate for p in points], marker=".", lw=1.5)
  for target in (0.5, 1.0):
    ax.axvline(target, color="grey", lw=0.8, ls="--")
  ax.set_xscale("symlog", linthresh=1.0)
  ax.set_xlim(left=0)  # counts are never negative; symlog would show a mirrored axis
  ax.set_xlabel("false accepts per hour")
  ax.set_ylabel("false rejects (%)")
  ax.set_ylim(0, 100)
  ax.grid(True, which="both", alpha=0.3)
  ax.set_title(title or "DET curve")
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
