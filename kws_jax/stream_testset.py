"""Long test recordings for streaming evaluation (TF's generate_streaming_test_wav semantics).

Words are placed one per `clip + word_gap` stride at a random offset inside the gap, mixed in
with 500-sample ramps at full volume over background noise that is laid down in 1.5 s segments
with 250 ms cross-fades at a random volume up to `background_volume`. The ground truth is one
`label, time_ms` line per word (the start of its clip). `unknown_percentage` of the words are
`_unknown_` ones. Deterministic for a seed (NumPy Generator instead of TF's global RNG).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np

from kws_jax.detection_metrics import UNKNOWN, Event


@dataclasses.dataclass
class StreamTestConfig:
  duration_s: float = 600.0
  sample_rate: int = 16000
  clip_duration_ms: int = 1000
  word_gap_ms: int = 2000
  unknown_percentage: float = 30.0
  background_volume: float = 0.1
  seed: int = 0


def mix_in(track: np.ndarray, track_offset: int, sample: np.ndarray, sample_offset: int,
           clip_duration: int, volume: float, ramp_in: int, ramp_out: int) -> None:
  """Adds `sample[sample_offset:...]` to `track` at `track_offset` with linear ramps (in place).

  Vectorised form of TF's mix_in_audio_sample, same envelope.
  """
  end = min(track_offset + clip_duration, track.shape[0],
            track_offset + (sample.shape[0] - sample_offset))
  n = end - track_offset
  if n <= 0:
    return
  i = np.arange(n, dtype=np.float64)
  envelope = np.ones(n)
  if ramp_in > 0:
    envelope = np.where(i < ramp_in, i / ramp_in, envelope)
  if ramp_out > 0:
    envelope = np.where(i > clip_duration - ramp_out, (clip_duration - i) / ramp_out, envelope)
  track[track_offset:end] += sample[sample_offset:sample_offset + n] * envelope * volume


def make_stream(clips: Mapping[str, Sequence[np.ndarray]], keywords: Sequence[str],
                background: Sequence[np.ndarray] | None,
                config: StreamTestConfig) -> tuple[np.ndarray, list[Event]]:
  """Builds the long float32 recording and its ground truth.

  Args:
    clips: float audio clips per label (keywords and, optionally, `_unknown_`).
    keywords: the wanted words to draw from (those with clips).
    background: noise recordings (each at least one clip long) or None for silence.
    config: lengths, levels and seed.
  """
  rng = np.random.default_rng(config.seed)
  rate = config.sample_rate
  total = int(rate * config.duration_s)
  track = np.zeros(total, dtype=np.float64)
  clip_samples = int(config.clip_duration_ms * rate / 1000)

  if background:
    crossover_ms = 500
    segment = int((config.clip_duration_ms + crossover_ms) * rate / 1000)
    stride = clip_samples
    ramp = int(crossover_ms / 2 * rate / 1000)
    for i in range(int(math.ceil(total / stride))):
      noise = background[rng.integers(len(background))]
      offset = int(rng.integers(0, max(1, len(noise) - clip_samples)))
      volume = rng.uniform(0, config.background_volume)
      mix_in(track, i * stride, noise, offset, segment, volume, ramp, ramp)

  keywords = [k for k in keywords if len(clips.get(k, ())) > 0]
  if not keywords:
    raise ValueError("no keyword clips to build a stream from")
  has_unknown = len(clips.get(UNKNOWN, ())) > 0
  word_stride = int((config.clip_duration_ms + config.word_gap_ms) * rate / 1000)
  gap = int(config.word_gap_ms * rate / 1000)
  labels: list[Event] = []
  for i in range(total // word_stride):
    offset = i * word_stride + int(rng.integers(gap))
    if has_unknown and rng.integers(100) < config.unknown_percentage:
      label = UNKNOWN
    else:
      label = keywords[rng.integers(len(keywords))]
    pool = clips[label]
    mix_in(track, offset, np.asarray(pool[rng.integers(len(pool))], np.float64), 0, clip_samples,
           1.0, 500, 500)
    labels.append((label, offset * 1000.0 / rate))
  return np.clip(track, -1.0, 1.0).astype(np.float32), labels
