"""False accepts per hour over hours of negative audio, as wake-word systems are judged.

With a manifest (`make-test --negative-hours`), false rejects are counted on the keyword stream's
keyword words and false accepts on the negative parts only, per hour of negative audio; each
false accept is attributed to the negative part it fell in (real words, noise, synthetic speech,
confusables). Without one, every keyword detection that matches no keyword word is a false
accept and the whole file is the hour base (`detection.detection_errors`' rule).

Matching follows `detection.detection_errors`: each keyword word is hit at most once, by
the first same-label detection within the time tolerance.
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np

from kws_jax.streameval.detection import DetectionErrors, Event, frr_at_fa_per_hour
from kws_jax.streameval.negatives import KEYWORD_PART

FA_PER_HOUR_TARGETS = (0.1, 0.5, 1.0)
# How long after an utterance ends a detection is still blamed on it: TF's smoothing averages
# 500 ms of posteriors, so its detections trail the word.
UTTERANCE_GRACE_MS = 1000.0


@dataclasses.dataclass
class Matching:
  hit: np.ndarray               # (keyword words,) bool
  truth: list[Event]            # the keyword words
  false_accepts: list[Event]    # keyword detections that hit no keyword word


def match(found: Sequence[Event], truth: Sequence[Event], keywords: Sequence[str],
          tolerance_ms: float) -> Matching:
  keywords = set(keywords)
  words = sorted([(l, t) for l, t in truth if l in keywords], key=lambda e: e[1])
  times = [t for _, t in words]
  hit = np.zeros(len(words), bool)
  false_accepts = []
  for label, t in found:
    if label not in keywords:
      continue
    i = bisect.bisect_left(times, t - tolerance_ms)
    while i < len(words) and times[i] <= t + tolerance_ms and (hit[i] or words[i][0] != label):
      i += 1
    if i < len(words) and times[i] <= t + tolerance_ms:
      hit[i] = True
    else:
      false_accepts.append((label, t))
  return Matching(hit, words, false_accepts)


class PartIndex:
  """Which manifest part a time falls in."""

  def __init__(self, manifest: Mapping[str, Any]):
    rate = self.rate = float(manifest["sample_rate"])
    self.parts = sorted(manifest["parts"], key=lambda p: p["start"])
    self.starts_ms = [1000.0 * p["start"] / rate for p in self.parts]
    self.negative_seconds = sum(p["end"] - p["start"] for p in self.parts
                                if p["kind"] != KEYWORD_PART) / rate

  def at(self, time_ms: float) -> int:
    return max(0, bisect.bisect_right(self.starts_ms, time_ms) - 1)

  def kind(self, time_ms: float) -> str:
    return self.parts[self.at(time_ms)]["kind"]

  def text(self, time_ms: float, after_ms: float = UTTERANCE_GRACE_MS) -> str | None:
    """What was being said: the last utterance of the part that began before `time_ms` and
    ended at most `after_ms` earlier (a detector fires during or just after a word); None in
    parts without utterances (noise, real words, manifests older than them) or in pauses."""
    said = self.parts[self.at(time_ms)].get("utterances") or []
    sample = time_ms * self.rate / 1000.0
    i = bisect.bisect_right([u[0] for u in said], sample) - 1
    if i < 0 or sample > said[i][1] + after_ms * self.rate / 1000.0:
      return None
    return said[i][2]


def _negative_false_accepts(m: Matching, parts: PartIndex | None) -> list[Event]:
  if parts is None:
    return m.false_accepts
  return [e for e in m.false_accepts if parts.kind(e[1]) != KEYWORD_PART]


def operating_points(found: Sequence[Sequence[Event]], thresholds: Sequence[float],
                     truth: Sequence[Event], keywords: Sequence[str], tolerance_ms: float,
                     duration_s: float, parts: PartIndex | None) -> list[DetectionErrors]:
  """The DET curve: false rejects and false accepts per negative hour at each threshold."""
  hours = (parts.negative_seconds if parts is not None else duration_s) / 3600.0
  curve = []
  for f, t in zip(found, thresholds):
    m = match(f, truth, keywords, tolerance_ms)
    fa = len(_negative_false_accepts(m, parts))
    frr = 1.0 - float(m.hit.mean()) if m.hit.size else 0.0
    curve.append(DetectionErrors(float(t), frr, fa, fa / hours if hours > 0 else 0.0))
  return curve


def per_keyword_operating_points(found: Sequence[Sequence[Event]], thresholds: Sequence[float],
                                 truth: Sequence[Event], keywords: Sequence[str],
                                 tolerance_ms: float, duration_s: float, parts: PartIndex | None
                                 ) -> dict[str, dict[str, float]]:
  """Each keyword judged alone, as a wake-word system is (one word per model): FRR on its own
  words at its own false accepts per hour, with its own threshold, at FA_PER_HOUR_TARGETS.
  The all-keyword curve sums every keyword's false accepts into one budget."""
  out = {}
  for k in keywords:
    if not any(label == k for label, _ in truth):
      continue
    curve = operating_points(found, thresholds, truth, [k], tolerance_ms, duration_s, parts)
    out[k] = {f"{t:g}": frr_at_fa_per_hour(curve, t) for t in FA_PER_HOUR_TARGETS}
  return out


def threshold_for(curve: Sequence[DetectionErrors], fa_per_hour: float) -> DetectionErrors | None:
  """The operating point to ship: fewest false rejects at <= `fa_per_hour` (higher threshold on
  ties, for margin); None when no threshold of the sweep is that quiet."""
  ok = [p for p in curve if p.false_accepts_per_hour <= fa_per_hour]
  return min(ok, key=lambda p: (p.false_reject_rate, -p.threshold)) if ok else None


def report(found: Sequence[Sequence[Event]], thresholds: Sequence[float], at: int,
           truth: Sequence[Event], keywords: Sequence[str], tolerance_ms: float,
           duration_s: float, manifest: Mapping[str, Any] | None,
           fa_target: float | None = None) -> dict[str, Any]:
  """JSON-able figures: FRR at target FA/h, fixed-threshold FA/h, per-keyword FRR, where each
  false accept fell; `at` indexes the fixed threshold in `thresholds`."""
  parts = PartIndex(manifest) if manifest is not None else None
  curve = operating_points(found, thresholds, truth, keywords, tolerance_ms, duration_s, parts)
  m = match(found[at], truth, keywords, tolerance_ms)
  per_keyword = {}
  for k in keywords:
    mine = np.array([l == k for l, _ in m.truth], bool)
    if mine.any():
      per_keyword[k] = round(1.0 - float(m.hit[mine].mean()), 4)
  result: dict[str, Any] = {
      "frr_at_fa_per_hour": {f"{t:g}": frr_at_fa_per_hour(curve, t) for t in FA_PER_HOUR_TARGETS},
      "frr_at_0.5fa_per_hour": frr_at_fa_per_hour(curve, 0.5),
      "frr_at_1fa_per_hour": frr_at_fa_per_hour(curve, 1.0),
      "threshold": float(thresholds[at]), "frr": curve[at].false_reject_rate,
      "fa_per_hour": curve[at].false_accepts_per_hour, "false_accepts": curve[at].false_accepts,
      "negative_hours": (parts.negative_seconds if parts else duration_s) / 3600.0,
      "frr_per_keyword": per_keyword,
      "frr_at_fa_per_hour_per_keyword": per_keyword_operating_points(
          found, thresholds, truth, keywords, tolerance_ms, duration_s, parts),
      "det_curve": [dataclasses.asdict(p) for p in curve],
  }
  if parts is not None:
    negatives = _negative_false_accepts(m, parts)
    by_kind: dict[str, int] = {}
    for _, t in negatives:
      by_kind[parts.kind(t)] = by_kind.get(parts.kind(t), 0) + 1
    result["false_accepts_by_part"] = by_kind
    result["false_accepts_in_keyword_stream"] = len(m.false_accepts) - len(negatives)
    result["false_accept_list"] = [
        {"label": l, "time_s": round(t / 1000, 3), "part": parts.at(t), "kind": parts.kind(t),
         "text": parts.text(t)} for l, t in negatives]
    words: dict[str, int] = {}
    for e in result["false_accept_list"]:
      if e["kind"] == "confusables" and e["text"] is not None:
        key = f"{e['text']} -> {e['label']}"
        words[key] = words.get(key, 0) + 1
    result["false_accepts_by_confusable"] = dict(sorted(words.items(), key=lambda kv: -kv[1]))
  if fa_target is not None:
    point = threshold_for(curve, fa_target)
    result["threshold_for_fa_per_hour"] = {
        "target": fa_target, "threshold": point.threshold if point else None,
        "frr": point.false_reject_rate if point else None,
        "fa_per_hour": point.false_accepts_per_hour if point else None}
  return result


def summary(result: Mapping[str, Any]) -> str:
  """Human lines of a `report`."""
  frr = ", ".join(f"{100 * v:.1f}% at {k} FA/h" for k, v in result["frr_at_fa_per_hour"].items())
  lines = [f"false rejects {frr} ({result['negative_hours']:.2f} h of negatives)",
           f"at threshold {result['threshold']:g}: {100 * result['frr']:.1f}% false rejects, "
           f"{result['false_accepts']} false accepts = {result['fa_per_hour']:.2f} FA/h"]
  alone = result.get("frr_at_fa_per_hour_per_keyword")
  if alone:
    lines.append("each keyword alone, FRR at 0.5 FA/h of its own: " + ", ".join(
        f"{k} {100 * v['0.5']:.0f}%" for k, v in alone.items()))
  if "false_accepts_by_part" in result:
    parts = ", ".join(f"{k} {v}" for k, v in sorted(result["false_accepts_by_part"].items()))
    lines.append(f"false accepts by negative part: {parts or 'none'}")
  top = list(result.get("false_accepts_by_confusable", {}).items())[:8]
  if top:
    lines.append("confusable words heard as keywords most often: " + ", ".join(
        f"{k} ({v})" for k, v in top))
  point = result.get("threshold_for_fa_per_hour")
  if point:
    lines.append(f"threshold to ship for <= {point['target']:g} FA/h: " + (
        f"{point['threshold']:.4f} ({100 * point['frr']:.1f}% false rejects, "
        f"{point['fa_per_hour']:.2f} FA/h)" if point["threshold"] is not None
        else "none of the sweep is that quiet"))
  return "\n".join(lines)
