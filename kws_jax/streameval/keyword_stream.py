"""Long keyword test streams for streaming evaluation (TF's generate_streaming_test_wav semantics).

`make_test` writes one WAV and its labels from a Speech Commands-layout folder.

Words are placed one per `clip + word_gap` stride at a random offset inside the gap, mixed in
with 500-sample ramps at full volume over background noise that is laid down in 1.5 s segments
with 250 ms cross-fades at a random volume up to `background_volume`. The ground truth is one
`label, time_ms` line per word (the start of its clip). `unknown_percentage` of the words are
`_unknown_` ones. Deterministic for a seed (NumPy Generator instead of TF's global RNG).
"""

from __future__ import annotations

import math
import os
from typing import Mapping, Sequence

import numpy as np

from kws_jax import audio as audio_lib
from kws_jax.configs import default as config_default
from kws_jax.data import folder as folder_lib
from kws_jax.data import pipeline
from kws_jax.streameval import detection, long_test, negatives
from kws_jax.streameval.detection import UNKNOWN, Event
from kws_jax.streameval.settings import DEFAULT_MINUTES, StreamTestConfig


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


def make_test(data_dir: str, out_wav: str, out_labels: str | None = None, *,
              minutes: float = DEFAULT_MINUTES, split: str = "test", background_dir: str = "",
              background_volume: float = StreamTestConfig.background_volume,
              unknown_percentage: float = StreamTestConfig.unknown_percentage,
              word_gap_ms: int = StreamTestConfig.word_gap_ms,
              wanted_words: str = config_default.DEFAULT_WANTED_WORDS,
              split_salt: str = "", validation_percentage: float = 10.0,
              testing_percentage: float = 10.0, seed: int = StreamTestConfig.seed,
              negative_hours: float = 0.0, positive_snr_db: float | None = None,
              negative_words_dirs: Sequence[str] = (), workers: int = 2,
              progress: bool = False) -> tuple[str, str, int]:
  """Writes the long test WAV and labels; returns (wav, labels, number of words).

  The speaker split options must match the training run's (e.g. sc12_real's
  `split_salt="sc12"`, 15 % test) so that the stream holds only unseen speakers.
  `negative_hours` appends that much keyword-free audio and writes `<out>_manifest.json`
  (kws_jax.streameval.negatives); `positive_snr_db` lays speech and noise under the keywords.
  """
  options = folder_lib.FolderOptions(validation_percentage=validation_percentage,
                                     testing_percentage=testing_percentage, split_salt=split_salt)
  words = [w.strip() for w in wanted_words.split(",") if w.strip()]
  src = long_test.load_sources(data_dir, split, words, options,
                               pipeline.cache_dir(config_default.data_config()), background_dir)
  config = StreamTestConfig(
      duration_s=60.0 * minutes, sample_rate=src.sample_rate,
      clip_duration_ms=int(1000 * src.clip_samples / src.sample_rate), word_gap_ms=word_gap_ms,
      unknown_percentage=unknown_percentage, background_volume=background_volume, seed=seed)
  background = None if positive_snr_db is not None else (src.background or None)
  long_audio, labels = make_stream(src.clips, src.keywords, background, config)
  out_labels = out_labels or default_labels_path(out_wav)
  detection.write_labels(out_labels, labels)
  if negative_hours > 0 or positive_snr_db is not None:
    neg = negatives.NegativeConfig(hours=negative_hours, sample_rate=src.sample_rate,
                                   workers=workers, seed=seed)
    negatives.write_long_test(out_wav, default_manifest_path(out_wav), long_audio, labels,
                              src.keywords, neg, src.background,
                              long_test.real_negative_words(src, negative_words_dirs, options),
                              positive_snr_db=positive_snr_db, progress=progress)
  else:
    audio_lib.write_wav(out_wav, long_audio, src.sample_rate)
  return out_wav, out_labels, len(labels)


def default_manifest_path(wav_path: str) -> str:
  return os.path.splitext(wav_path)[0] + "_manifest.json"


def default_labels_path(wav_path: str) -> str:
  root, _ = os.path.splitext(wav_path)
  return root + "_labels.txt"
