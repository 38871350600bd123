"""Google's Speech Commands v0.02 (12 classes) through tfds' `speech_commands` builder.

tfds' builder for this dataset needs TensorFlow (its Audio feature) and pydub:
`pip install 'kws_jax[tfds]'`. Its train split already holds `_silence_` clips
cut from `_background_noise_` and every other word as `_unknown_`; the
pipeline's rebalancing applies on top. tfds keeps no speaker ids, so `speakers`
are empty strings. The folder builder (`kws_jax.data.folder`) reads the same
data from an extracted archive without TensorFlow.

Offline, `manual_dir` holds the two pre-downloaded archives. tfds 4.9.10 takes
a file there only if its size and sha256 are the ones it registers for
Google's official archive; any other file (a partial download, an archive
repacked or cut down) fails its check, so this module turns that into one line
that points at the extracted-folder route instead.
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
DOWNLOAD_URL = "http://download.tensorflow.org/data/"
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
  if manual_dir:
    check_manual_dir(manual_dir)
  require_tensorflow()
  import tensorflow_datasets as tfds
  builder = tfds.builder("speech_commands", data_dir=data_dir)
  _prepare(builder, manual_dir)
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


def check_manual_dir(manual_dir: str) -> None:
  """One-line errors for a manual_dir tfds cannot use, before TensorFlow is even imported."""
  if not os.path.isdir(manual_dir):
    raise DataError(f"data.manual_dir={manual_dir}: no such folder; put {' and '.join(ARCHIVES)} "
                    f"(from {DOWNLOAD_URL}) in it")
  missing = [name for name in ARCHIVES if not os.path.isfile(os.path.join(manual_dir, name))]
  if not missing:
    return
  if looks_extracted(manual_dir):
    raise DataError(f"data.manual_dir={manual_dir} holds extracted clips, not the .tar.gz "
                    "archives tfds reads: train on them with --config.data.source=folder "
                    f"--config.data.data_dir={manual_dir}")
  raise DataError(f"data.manual_dir={manual_dir}: {' and '.join(missing)} missing; tfds needs "
                  f"both {' and '.join(ARCHIVES)} there (from {DOWNLOAD_URL})")


def looks_extracted(folder: str) -> bool:
  """Whether a folder holds an unpacked Speech Commands archive (word folders or split lists)."""
  return any(os.path.exists(os.path.join(folder, name))
             for name in (*KEYWORDS, folder_lib.BACKGROUND_NOISE_DIR, "validation_list.txt"))


def _prepare(builder, manual_dir: str | None) -> None:
  """Downloads (or takes from manual_dir) and prepares the tfds dataset, errors as one line."""
  import tensorflow_datasets as tfds
  from tensorflow_datasets.core.download import download_manager
  try:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir))
  except KwsError:
    raise
  except download_manager.NonMatchingChecksumError as e:
    name = next((n for n in ARCHIVES if n in str(e)), " and ".join(ARCHIVES))
    raise DataError(
        f"data.manual_dir={manual_dir}: {name} is not Google's official archive (tfds checks its "
        "size and sha256; a partial download or a repacked archive fails); download it again, "
        "or extract the archives and train with --config.data.source=folder (README: Google's "
        "Speech Commands)") from None
  except Exception as e:  # tfds raises assorted network/IO errors here.
    first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
    raise DataError(
        f"could not download speech_commands ({first}); without internet, copy "
        f"{' and '.join(ARCHIVES)} into a folder DIR and add --config.data.manual_dir=DIR, or "
        "extract them and use --config.data.source=folder (README: Google's Speech Commands)"
    ) from None


def _background_from_manual_dir(manual_dir: str | None) -> list[np.ndarray]:
  """tfds turns `_background_noise_` into silence clips; an extracted copy, if any, is reused."""
  if not manual_dir:
    return []
  return folder_lib.read_background_folder(
      os.path.join(manual_dir, folder_lib.BACKGROUND_NOISE_DIR))
