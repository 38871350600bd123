"""Clips for long test streams, read straight from Speech Commands-layout folders.

`make-test` needs only the clips of one split, never a training split: a folder that holds only
test speakers (`--split all`) or a canonical test-set folder whose speakers all hash into TF's
test band (README's command without a split salt) works.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np

from kws_jax import audio as audio_lib
from kws_jax.data import folder as folder_lib
from kws_jax.errors import AudioError, ConfigError, DataError
from kws_jax.streameval.detection import SILENCE, UNKNOWN

SPLITS = ("test", "validation", "all")


@dataclasses.dataclass
class StreamSources:
  clips: dict[str, list[np.ndarray]]  # float32 clips per label (keywords and `_unknown_`)
  keywords: list[str]
  background: list[np.ndarray]  # noise recordings
  speakers: set[str]  # speakers of the chosen split
  sample_rate: int
  clip_samples: int


def load_sources(data_dir: str, split: str, wanted_words: Sequence[str],
                 options: folder_lib.FolderOptions, cache_dir: str,
                 background_dir: str = "") -> StreamSources:
  """Clips of the folder's `split` speakers ('all': every clip) and the noise recordings."""
  if split not in SPLITS:
    raise ConfigError(f"--split {split!r}: choose 'test' (the folder's test speakers), "
                      "'validation' (its validation speakers: tune on these) or 'all'")
  label_names = folder_lib.label_names_for(list(wanted_words), data_dir)
  data = folder_lib.load_folder(data_dir, label_names, options, cache_dir=cache_dir,
                                assign="test" if split == "all" else "auto")
  part = data.splits["test" if split == "all" else split]
  clips: dict[str, list[np.ndarray]] = {}
  for audio, label in zip(part.audio, part.labels):
    name = label_names[int(label)]
    if name != SILENCE:
      clips.setdefault(name, []).append(audio_lib.from_int16(audio))
  keywords = list(label_names[2:])
  if not any(clips.get(k) for k in keywords):
    raise DataError(f"{data_dir}: its {split} split holds no keyword clips (check --split, "
                    "--split-salt and the percentages against the training run)")
  if background_dir:
    background = folder_lib.read_background_folder(background_dir, options.sample_rate)
    if not background:
      raise DataError(f"--background-dir {background_dir}: no readable .wav/.flac files")
  else:
    background = list(data.background)
  background = [b for b in background if b.shape[0] >= options.clip_samples]
  return StreamSources(clips, keywords, background, set(part.speakers.astype(str).tolist()),
                       options.sample_rate, options.clip_samples)


def real_negative_words(sources: StreamSources, extra_dirs: Sequence[str],
                        options: folder_lib.FolderOptions) -> list[np.ndarray]:
  """Non-keyword words: the split's `_unknown_` clips, plus other words of `extra_dirs`.

  Extra folders (e.g. sc_v1_extra) add only clips of the chosen split's speakers: the training
  run keeps every other speaker of those folders for training.
  """
  words = list(sources.clips.get(UNKNOWN, []))
  label_names = [SILENCE, UNKNOWN, *sources.keywords]
  for extra in extra_dirs:
    if not os.path.isdir(extra):
      raise DataError(f"--negative-words-dir {extra}: not a folder")
    for entry in folder_lib.scan(extra, label_names, options, assign="train"):
      if entry.label != UNKNOWN or entry.speaker not in sources.speakers:
        continue
      try:
        words.append(audio_lib.read_audio(os.path.join(extra, entry.relpath),
                                          options.sample_rate))
      except AudioError:  # A broken clip is one word less, not a failed build.
        continue
  return [w for w in words if w.size and np.abs(w).max() > 0]
