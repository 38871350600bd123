"""The tfds builder behind `kws_jax.data.folder`: one Speech Commands-layout folder's clips
written once as array_record (raw int16 bytes, label, word, speaker, path) and read back
with `as_data_source()`, neither step importing TensorFlow; plus the file lock that keeps two
processes from preparing one cache folder at once."""

from __future__ import annotations

import contextlib
import functools
import io
import os
from typing import TYPE_CHECKING, Iterator

import numpy as np
import soundfile as sf

from kws_jax import audio as audio_io
from kws_jax.errors import AudioError, DataError

if TYPE_CHECKING:
  from kws_jax.data.folder import Entry, FolderOptions

SPLITS = ("train", "validation", "test")
BUILDER_VERSION = "1.0.0"


def prepare(builder) -> None:
  """Writes the array_record files; tfds' own "Downloading and preparing dataset" line and
  progress bars (about a download that never happens, naming its internal folders) are
  swallowed: load_folder prints its own line."""
  import tensorflow_datasets as tfds
  quiet = io.StringIO()
  with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS))


def make_builder(data_dir, folder, entries, label_names, options):
  return _builder_class()(data_dir=data_dir, file_format="array_record", folder=folder,
                          entries=entries, label_names=label_names, options=options)


@functools.cache
def _builder_class():
  """The tfds builder class, defined on first use so importing this module stays light."""
  import tensorflow_datasets as tfds

  class SpeechCommandsFolder(tfds.core.GeneratorBasedBuilder):
    """One Speech Commands-layout folder; examples keyed by their relative path."""
    VERSION = tfds.core.Version(BUILDER_VERSION)
    RELEASE_NOTES = {BUILDER_VERSION: "Clips as raw int16 bytes, label, word, speaker, path."}
    # Nothing is downloaded, so no checksums file; tfds would otherwise locate one
    # through `importlib_resources`, a package it does not install.
    code_path = None

    def __init__(self, *, folder: str, entries: list[Entry], label_names: list[str],
                 options: FolderOptions, **kwargs):
      self.folder, self.entries, self.label_names, self.options = (
          folder, entries, label_names, options)
      self.skipped: list[tuple[str, str]] = []
      self.converted = {"resampled": 0, "mixed_down": 0}
      super().__init__(**kwargs)

    def _info(self):
      return tfds.core.DatasetInfo(
          builder=self,
          description=f"Speech Commands-layout folder {self.folder}",
          features=tfds.features.FeaturesDict({
              # Raw bytes: tf.Example int64 lists make writing ~20x slower.
              "audio": tfds.features.Tensor(shape=(self.options.clip_samples,), dtype=np.int16,
                                            encoding="bytes"),
              "label": tfds.features.ClassLabel(names=self.label_names),
              "word": tfds.features.Text(),
              "speaker": tfds.features.Text(),
              "path": tfds.features.Text(),
          }),
          supervised_keys=("audio", "label"),
      )

    def _split_generators(self, dl_manager):
      # tfds refuses empty splits: a split without files is left out (read back as empty).
      return {split: self._generate_examples([e for e in self.entries if e.split == split])
              for split in SPLITS if any(e.split == split for e in self.entries)}

    def _generate_examples(self, split_entries):
      for entry in split_entries:
        clip = _read_clip(os.path.join(self.folder, entry.relpath), self.options, self.skipped,
                          self.converted)
        if clip is None:
          continue
        yield entry.relpath, {"audio": clip, "label": entry.label, "word": entry.word,
                              "speaker": entry.speaker, "path": entry.relpath}

  return SpeechCommandsFolder


def _read_clip(path: str, options: FolderOptions, skipped: list,
               converted: dict) -> np.ndarray | None:
  try:
    samples = audio_io.read_audio(path, options.sample_rate, resample=options.resample,
                                  stereo=options.stereo)
  except AudioError as e:
    if options.on_bad_file == "error":
      raise DataError(f"{e} (on_bad_file='skip' leaves such files out)") from None
    skipped.append((path, str(e)))
    return None
  info = sf.info(path)
  converted["resampled"] += int(info.samplerate != options.sample_rate)
  converted["mixed_down"] += int(info.channels > 1)
  return audio_io.to_int16(audio_io.fit_length(samples, options.clip_samples))


def read_split(builder, split: str) -> dict[str, np.ndarray] | None:
  """The columns of `split` (SplitArrays' fields), sorted by path; None when it is empty."""
  if split not in builder.info.splits:
    return None
  source = builder.as_data_source(split=split)
  if len(source) == 0:
    return None
  examples = source.__getitems__(list(range(len(source))))
  # array_record order is a hash of the keys; sort by path for a readable, stable order.
  examples.sort(key=lambda ex: ex["path"])
  return dict(
      audio=np.stack([ex["audio"] for ex in examples]).astype(np.int16),
      labels=np.asarray([ex["label"] for ex in examples], np.int32),
      speakers=np.asarray([_text(ex["speaker"]) for ex in examples]),
      words=np.asarray([_text(ex["word"]) for ex in examples]),
      paths=np.asarray([_text(ex["path"]) for ex in examples]),
  )


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


@contextlib.contextmanager
def file_lock(path: str) -> Iterator[None]:
  """Serialises preparing one cache folder between processes (e.g. pytest -n 2)."""
  with open(path, "w") as handle:
    try:
      import fcntl
      fcntl.flock(handle, fcntl.LOCK_EX)
    except ImportError:  # Windows: no lock; concurrent first builds are unlikely.
      pass
    yield
