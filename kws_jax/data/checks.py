"""Checks of a loaded data config and dataset before training starts."""

from __future__ import annotations

import pathlib
import sys

import ml_collections
import numpy as np

from kws_jax.data import speech_commands
from kws_jax.errors import DataError


def check_data_paths(data: ml_collections.ConfigDict) -> None:
  """A clear error for a missing real-data folder (naming the override) or a missing extra,
  raised before the trainer writes anything into its workdir."""
  if data.get("source", "folder") == "synthetic":
    return
  if data.get("source") == "speech_commands":
    speech_commands.require_tensorflow()
  # speech_commands' data_dir is tfds' output folder, which tfds creates on first use.
  keys = ("background_dir",) if data.get("source") == "speech_commands" else (
      "data_dir", "background_dir")
  for key in keys:
    value = data.get(key)
    if value and not pathlib.Path(value).exists():
      raise DataError(f"data.{key}={value}: no such folder; real Speech Commands data is "
                      "expected beside the checkout in ../shared/data, or point to it with "
                      f"--config.data.{key}=PATH")
  for value in data.get("extra_dirs", ()) or ():
    if value and not pathlib.Path(value).exists():
      raise DataError(f"data.extra_dirs: {value}: no such folder; fix it with "
                      "--config.data.extra_dirs=PATH,PATH or drop it with --config.data.extra_dirs=()")


def drop_evaluation_speakers(ds) -> None:
  """Removes training clips of validation/test speakers (in place).

  The hash split keeps each speaker of one folder in one split, but extra training
  folders (data.extra_dirs, e.g. Speech Commands v0.01 clips) can hold the same
  speakers; training on them would inflate the held-out accuracy.
  """
  held_out = set(map(str, ds.validation.speakers)) | set(map(str, ds.test.speakers))
  held_out.discard("")  # generated silence clips have no speaker
  if not held_out or not len(ds.train):
    return
  keep = ~np.isin(ds.train.speakers.astype(str), list(held_out))
  dropped = int((~keep).sum())
  if dropped:
    print(f"dropped {dropped} training clips of validation/test speakers", file=sys.stderr)
    ds.train = type(ds.train)(ds.train.audio[keep], ds.train.labels[keep],
                              ds.train.speakers[keep])
