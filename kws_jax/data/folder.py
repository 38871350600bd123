"""Speech Commands-layout folders as a tfds dataset (array_record, no TensorFlow).

A folder holds one sub-folder per word (`yes/`, `no/`, ...), optionally
`_background_noise_/`, `_silence_/` and `_unknown_/` (as in the canonical test
set, whose `_unknown_` clips are named `<word>_<speaker>_nohash_<n>.wav`), and
optionally `validation_list.txt` / `testing_list.txt` and an ELL `bad_list.txt`.

Rules (documented choices):
- Labels follow TF: `_silence_`, `_unknown_`, then the wanted words. Words not
  wanted become `_unknown_`; `wanted_words=None` (ELL's 30-word mode) keeps
  every word folder as its own class.
- Splits: the list files when present, else TF's `which_set` hash rule on the
  SPEAKER id (the part before `_nohash_`, without a leading `<word>_` in
  `_unknown_/`), so one speaker never lands in two splits. For ordinary
  `<speaker>_nohash_<n>.wav` names this is exactly TF's rule.
- Audio: WAV/FLAC through `kws_jax.audio.read_audio`; other sample rates are
  resampled (polyphase) and multi-channel files mixed down to mono, both
  counted in a warning (`resample=False` / `stereo="error"` turn them into bad
  files instead); clips are zero-padded or trimmed to the clip length.
- Bad files (corrupt, empty, truncated, NaN): skipped with a warning that
  counts them and names the first few, or `on_bad_file="error"` stops with a
  DataError naming the file.

The examples are written once by a tfds `GeneratorBasedBuilder` (`folder_builder`) in the
`array_record` format into a cache folder keyed by the folder's file list
(paths, sizes, mtimes), the options and the builder version, and read back with
`builder.as_data_source()`: neither step imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sys
import warnings
from typing import Literal, Sequence

import numpy as np

from kws_jax import audio as audio_io
from kws_jax.data import folder_builder
from kws_jax.data.folder_builder import BUILDER_VERSION, SPLITS
from kws_jax.errors import AudioError, DataError

SILENCE_LABEL = "_silence_"
UNKNOWN_LABEL = "_unknown_"
BACKGROUND_NOISE_DIR = "_background_noise_"
# TF speech_commands: a constant larger than any class size, so the hash gives a
# stable percentage that does not change when files are added.
MAX_NUM_WAVS_PER_CLASS = 2**27 - 1
_NOHASH = re.compile(r"^(?P<prefix>.*?)_nohash_.*$")


@dataclasses.dataclass(frozen=True)
class FolderOptions:
  """How a folder is turned into labelled clips (all part of the cache key)."""
  sample_rate: int = 16000
  clip_samples: int = 16000
  validation_percentage: float = 10.0
  testing_percentage: float = 10.0
  # ELL: a file of `word/file.wav` lines to leave out ("" = <folder>/bad_list.txt if present).
  bad_list: str = ""
  max_files_per_directory: int = 0  # ELL: at most this many TRAINING files per word folder (0: all)
  resample: bool = True
  stereo: Literal["mix", "error"] = "mix"
  on_bad_file: Literal["skip", "error"] = "skip"
  # "" = TF's rule. Any other text is prefixed to the speaker before hashing: a folder
  # whose speakers all hash into one band (sc_v2_test12_dev: all in TF's 10-20 % "test"
  # band) can then be split into train/validation/test by the percentages.
  split_salt: str = ""


@dataclasses.dataclass(frozen=True)
class Entry:
  """One audio file and where it goes."""
  relpath: str  # `word/file.wav`, '/' separated
  word: str  # spoken word (for `_unknown_/<word>_<speaker>_nohash_<n>.wav`: <word>)
  label: str
  speaker: str
  split: str


@dataclasses.dataclass
class SplitArrays:
  """Clips of one split: int16 audio (N, S), int32 labels (N,); speakers, words, paths (N,) str."""
  audio: np.ndarray
  labels: np.ndarray
  speakers: np.ndarray
  words: np.ndarray
  paths: np.ndarray | None = None  # `word/file.wav` relative to the folder

  @classmethod
  def empty(cls, clip_samples: int) -> "SplitArrays":
    return cls(np.zeros((0, clip_samples), np.int16), np.zeros((0,), np.int32),
               np.zeros((0,), dtype=str), np.zeros((0,), dtype=str), np.zeros((0,), dtype=str))

  def __len__(self) -> int:
    return len(self.labels)


@dataclasses.dataclass
class FolderData:
  label_names: list[str]
  splits: dict[str, SplitArrays]
  background: list[np.ndarray]  # float32 noise recordings of `_background_noise_/`
  skipped: list[tuple[str, str]]  # (path, reason) of bad files left out
  converted: dict[str, int]  # {"resampled": n, "mixed_down": n}


def which_set(group: str, validation_percentage: float, testing_percentage: float) -> str:
  """TF speech_commands' stable split of a speaker/group name: 'train', 'validation' or 'test'."""
  digest = hashlib.sha1(group.encode("utf-8")).hexdigest()
  percentage = ((int(digest, 16) % (MAX_NUM_WAVS_PER_CLASS + 1)) *
                (100.0 / MAX_NUM_WAVS_PER_CLASS))
  if percentage < validation_percentage:
    return "validation"
  if percentage < validation_percentage + testing_percentage:
    return "test"
  return "train"


def parse_name(folder_word: str, filename: str) -> tuple[str, str]:
  """(word, speaker) of a file name; a name without `_nohash_` is its own speaker."""
  stem = os.path.splitext(filename)[0]
  match = _NOHASH.match(stem)
  if not match:
    return folder_word, stem
  prefix = match.group("prefix")
  if folder_word in (UNKNOWN_LABEL, SILENCE_LABEL) and "_" in prefix:
    word, speaker = prefix.rsplit("_", 1)
    return word, speaker
  return folder_word, prefix


def word_folders(folder: str) -> list[str]:
  """Sorted word folders (no `_background_noise_`, no `_silence_`/`_unknown_`)."""
  _check_folder(folder)
  return sorted(d for d in os.listdir(folder)
                if os.path.isdir(os.path.join(folder, d)) and not d.startswith("_")
                and not d.startswith("."))


def label_names_for(wanted_words: Sequence[str] | None, folder: str) -> list[str]:
  """TF label order: `_silence_`, `_unknown_`, wanted words (all word folders when None)."""
  words = word_folders(folder) if wanted_words is None else list(wanted_words)
  return [SILENCE_LABEL, UNKNOWN_LABEL, *words]


def scan(folder: str, label_names: Sequence[str], options: FolderOptions,
         assign: Literal["auto", "train", "test"] = "auto") -> list[Entry]:
  """Lists the folder's clips with label, speaker and split (no audio is read)."""
  _check_folder(folder)
  wanted = set(label_names[2:])
  bad = _read_bad_list(folder, options.bad_list)
  lists = {split: _read_list(os.path.join(folder, name))
           for split, name in (("validation", "validation_list.txt"), ("test", "testing_list.txt"))}
  use_lists = assign == "auto" and any(v is not None for v in lists.values())
  entries: list[Entry] = []
  for folder_word in sorted(os.listdir(folder)):
    path = os.path.join(folder, folder_word)
    if (not os.path.isdir(path) or folder_word == BACKGROUND_NOISE_DIR
        or folder_word.startswith(".")):
      continue
    if folder_word.startswith("_") and folder_word not in (SILENCE_LABEL, UNKNOWN_LABEL):
      continue
    names = sorted(n for n in os.listdir(path) if n.lower().endswith(audio_io.AUDIO_EXTENSIONS))
    folder_entries = []
    for name in names:
      relpath = f"{folder_word}/{name}"
      if relpath in bad:
        continue
      word, speaker = parse_name(folder_word, name)
      if folder_word == SILENCE_LABEL:
        label = SILENCE_LABEL
      elif folder_word in wanted:
        label = folder_word
      else:
        label = UNKNOWN_LABEL
      if assign != "auto":
        split = assign
      elif use_lists:
        split = ("validation" if relpath in (lists["validation"] or ()) else
                 "test" if relpath in (lists["test"] or ()) else "train")
      else:
        split = which_set(options.split_salt + speaker, options.validation_percentage,
                          options.testing_percentage)
      folder_entries.append(Entry(relpath, word, label, speaker, split))
    if options.max_files_per_directory > 0:
      folder_entries = _limit_training(folder_entries, options.max_files_per_directory, folder_word)
    entries.extend(folder_entries)
  if not entries:
    raise DataError(f"{folder}: no .wav/.flac files in any word sub-folder; expected the "
                    "Speech Commands layout <folder>/<word>/<clip>.wav")
  return entries


def load_folder(folder: str, label_names: Sequence[str], options: FolderOptions = FolderOptions(),
                *, cache_dir: str, assign: Literal["auto", "train", "test"] = "auto",
                read_background: bool = True) -> FolderData:
  """Builds (once, cached) and reads a folder: int16 clips per split plus its background noise."""
  folder = os.path.abspath(os.path.expanduser(folder))
  entries = scan(folder, label_names, options, assign)
  key = _cache_key(folder, entries, label_names, options, assign)
  data_dir = os.path.join(os.path.expanduser(cache_dir), "folders", key)
  os.makedirs(data_dir, exist_ok=True)
  report_path = os.path.join(data_dir, "report.json")
  builder = folder_builder.make_builder(data_dir, folder, entries, list(label_names), options)
  with folder_builder.file_lock(os.path.join(data_dir, ".lock")):
    if not os.path.exists(report_path):
      print(f"indexing {len(entries):,} clips of {folder} (once; cached in {data_dir})",
            file=sys.stderr, flush=True)
      try:
        folder_builder.prepare(builder)
      except AssertionError as e:
        if "No examples were yielded" not in str(e):
          raise
        # Every file of some split was unusable: build again without the known-bad
        # files, so that split is simply absent (tfds refuses empty splits).
        bad = {os.path.relpath(path, folder).replace(os.sep, "/") for path, _ in builder.skipped}
        skipped, converted = builder.skipped, builder.converted
        builder = folder_builder.make_builder(
            data_dir, folder, [e for e in entries if e.relpath not in bad], list(label_names),
            options)
        folder_builder.prepare(builder)
        builder.skipped, builder.converted = skipped, converted
      with open(report_path, "w") as f:
        json.dump({"folder": folder, "skipped": builder.skipped, "converted": builder.converted}, f)
  with open(report_path) as f:
    report = json.load(f)
  skipped = [tuple(s) for s in report["skipped"]]
  _warn_conversions(folder, skipped, report["converted"])
  splits = {split: _split_arrays(folder_builder.read_split(builder, split), options.clip_samples)
            for split in SPLITS}
  background = read_background_folder(os.path.join(folder, BACKGROUND_NOISE_DIR),
                                      options.sample_rate) if read_background else []
  return FolderData(list(label_names), splits, background, skipped, report["converted"])


def _split_arrays(columns: dict[str, np.ndarray] | None, clip_samples: int) -> SplitArrays:
  return SplitArrays.empty(clip_samples) if columns is None else SplitArrays(**columns)


def read_background_folder(path: str, sample_rate: int = 16000) -> list[np.ndarray]:
  """float32 recordings of a `_background_noise_` folder (none when it is absent)."""
  if not os.path.isdir(path):
    return []
  noises = []
  for name in sorted(os.listdir(path)):
    if name.lower().endswith(audio_io.AUDIO_EXTENSIONS):
      try:
        noises.append(audio_io.read_audio(os.path.join(path, name), sample_rate,
                                          resample=True, stereo="mix"))
      except AudioError as e:
        warnings.warn(f"background noise file left out: {e}", stacklevel=2)
  return noises


# ----------------------------------------------------------------------------- helpers


def _check_folder(folder: str) -> None:
  if not os.path.exists(folder):
    raise DataError(f"{folder}: no such folder")
  if not os.path.isdir(folder):
    raise DataError(f"{folder}: not a folder; expected the Speech Commands layout "
                    "<folder>/<word>/<clip>.wav")


def _read_list(path: str) -> set[str] | None:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return {line.strip().replace("\\", "/") for line in f if line.strip()}


def _read_bad_list(folder: str, bad_list: str) -> set[str]:
  if not bad_list:
    return _read_list(os.path.join(folder, "bad_list.txt")) or set()
  path = bad_list if os.path.isabs(bad_list) else os.path.join(folder, bad_list)
  if not os.path.exists(path) and os.path.exists(bad_list):
    path = bad_list
  entries = _read_list(path)
  if entries is None:
    raise DataError(f"bad_list {bad_list}: no such file (give a path, or a name inside {folder})")
  return entries


def _limit_training(entries: list[Entry], limit: int, folder_word: str) -> list[Entry]:
  """ELL's max_files_per_directory: a random (seeded by the word) subset of training files."""
  train = [e for e in entries if e.split == "train"]
  if len(train) <= limit:
    return entries
  seed = int(hashlib.sha1(folder_word.encode()).hexdigest()[:8], 16)
  keep = set(np.random.default_rng(seed).choice(len(train), limit, replace=False).tolist())
  kept = {train[i].relpath for i in keep}
  return [e for e in entries if e.split != "train" or e.relpath in kept]


def _cache_key(folder, entries, label_names, options, assign) -> str:
  digest = hashlib.sha1()
  digest.update(json.dumps([BUILDER_VERSION, folder, list(label_names),
                            dataclasses.asdict(options), assign]).encode())
  for entry in entries:
    stat = os.stat(os.path.join(folder, entry.relpath))
    digest.update(f"{entry.relpath}|{entry.split}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
  name = re.sub(r"[^A-Za-z0-9]+", "_", os.path.basename(folder.rstrip(os.sep)))[:40]
  return f"{name}-{digest.hexdigest()[:16]}"


def _warn_conversions(folder: str, skipped: list, converted: dict) -> None:
  if skipped:
    first = "; ".join(reason for _, reason in skipped[:3])
    warnings.warn(f"{folder}: left out {len(skipped)} unusable audio file(s) "
                  f"(on_bad_file='error' stops instead): {first}", stacklevel=3)
  if converted.get("resampled"):
    warnings.warn(f"{folder}: resampled {converted['resampled']} file(s) with another "
                  "sample rate", stacklevel=3)
  if converted.get("mixed_down"):
    warnings.warn(f"{folder}: mixed {converted['mixed_down']} multi-channel file(s) down to "
                  "mono", stacklevel=3)
