"""Google's Speech Commands v0.02 (12 classes) through tfds' `speech_commands` builder.

tfds' builder for this dataset needs TensorFlow (its Audio feature) and pydub:
`pip install 'kws_jax[tfds]'`. Its train split already holds `_silence_` clips
cut from `_background_noise_` and every other word as `_unknown_`; the
pipeline's rebalancing applies on top. tfds keeps no speaker ids, so `speakers`
are empty strings. The folder builder (`kws_jax.data.folder`) reads the same
data from an extracted archive without TensorFlow.
"""

from __future__ import annotations

import os

import numpy as np

from kws_jax import audio as audio_io
from kws_jax.configs.default import KEYWORDS
from kws_jax.data import folder as folder_lib
from kws_jax.errors import DataError, KwsError

LABEL_NAMES = [folder_lib.SILENCE_LABEL, folder_lib.UNKNOWN_LABEL, *KEYWORDS]
ARCHIVES = ("speech_commands_v0.02.tar.gz", "speech_commands_test_set_v0.02.tar.gz")
_TFDS_SPLITS = {"train": "train", "validation": "validation", "test": "test"}


def require_tensorflow() -> None:
  """A one-line error naming the extra when TensorFlow or pydub is missing."""
  missing = []
  for module in ("tensorflow", "pydub"):
    try:
      __import__(module)
    except ImportError:
      missing.append(module)
  if missing:
    raise KwsError(f"source='speech_commands' uses tfds' speech_commands builder, which needs "
                   f"{' and '.join(missing)}: pip install 'kws_jax[tfds]' (or use "
                   "source='folder' on the extracted archive, which needs no TensorFlow)")


def load(data_dir: str | None = None, clip_samples: int = 16000, *,
         manual_dir: str | None = None) -> folder_lib.FolderData:
  """Prepares (downloads once) and reads speech_commands into int16 arrays in TF label order."""
  require_tensorflow()
  import tensorflow_datasets as tfds
  builder = tfds.builder("speech_commands", data_dir=data_dir)
  try:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir))
  except KwsError:
    raise
  except Exception as e:  # tfds raises assorted network/IO errors here.
    first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
    raise DataError(
        f"could not download speech_commands ({first}); without internet, copy "
        f"{' and '.join(ARCHIVES)} into a folder and set data.manual_dir to it, or extract "
        "the archive and use source='folder'") from None
  names = builder.info.features["label"].names
  to_ours = np.asarray([LABEL_NAMES.index(n) for n in names], np.int32)
  splits = {}
  for ours, theirs in _TFDS_SPLITS.items():
    audio, labels = [], []
    for example in tfds.as_numpy(builder.as_dataset(split=theirs)):
      audio.append(audio_io.fit_length(np.asarray(example["audio"], np.int16), clip_samples))
      labels.append(to_ours[int(example["label"])])
    count = len(labels)
    splits[ours] = folder_lib.SplitArrays(
        audio=np.stack(audio) if audio else np.zeros((0, clip_samples), np.int16),
        labels=np.asarray(labels, np.int32), speakers=np.full(count, ""),
        words=np.asarray(LABEL_NAMES, dtype=object)[np.asarray(labels, int)].astype(str)
        if count else np.zeros(0, str))
  background = _background_from_manual_dir(manual_dir)
  return folder_lib.FolderData(list(LABEL_NAMES), splits, background, [], {})


def _background_from_manual_dir(manual_dir: str | None) -> list[np.ndarray]:
  """tfds turns `_background_noise_` into silence clips; an extracted copy, if any, is reused."""
  if not manual_dir:
    return []
  return folder_lib.read_background_folder(
      os.path.join(manual_dir, folder_lib.BACKGROUND_NOISE_DIR))
