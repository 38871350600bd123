"""Training input pipeline with TensorFlow speech_commands `input_data` semantics.

`load_dataset` decodes every clip once (through the tfds folder builder, the
tfds `speech_commands` builder or the offline synthetic set) into int16 arrays.
`training_epoch` applies TF's rebalancing for one epoch: all wanted-word clips,
`unknown_percentage` % as many `_unknown_` clips (a fresh random subset each
epoch; TF draws one subset for the whole run) and `silence_percentage` % as
many all-zero `_silence_` clips, shuffled deterministically from (seed, epoch).
`augmentation.make_augment_fn` does the rest inside jitted code: int16 -> float, speed
perturbation (off by default; TF has none), time shift, background mixing
(silence clips always get noise at a volume up to 1.0, others with probability
`background_frequency` up to `background_volume`; or, with `background_mode="snr"`,
every clip's noise at an SNR uniform in [`background_snr_min_db`,
`background_snr_max_db`]), then a random gain in
[`gain_min_db`, `gain_max_db`] on every clip (off by default).

Validation and test splits from a plain word folder get the same rebalancing
once at load time (TF does this for them too), their silence clips holding a
random background window at a random volume up to 1.0, as TF feeds them. A
split that already has `_silence_` clips (the canonical test-set layout) is
used as it is.

Synthetic and real data together: `source="synthetic"` with `test_dir` set to a
real folder (e.g. ../shared/data/sc_v2_test12_dev) trains and validates on
synthetic speech and tests on real clips; a real source with `synthetic_mix=f`
(0-1) merges that fraction of the synthetic set's clips (every synthetic
speaker, drawn with the load seed) into training only; `extra_dirs` merges any
other folders into training.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from typing import Iterator, Sequence

import ml_collections
import numpy as np

from kws_jax import audio as audio_io
from kws_jax.data import folder as folder_lib
from kws_jax.errors import ConfigError, DataError

SILENCE_INDEX = 0
UNKNOWN_INDEX = 1
SOURCES = ("synthetic", "folder", "speech_commands")
# Background recordings are cut into rows of this length for the (K, L) noise bank.
_BACKGROUND_ROW_SECONDS = 10.0


@dataclasses.dataclass
class Split:
  """Clips of one split: int16 audio (N, S), int32 labels (N,), speaker ids (N,) str."""
  audio: np.ndarray
  labels: np.ndarray
  speakers: np.ndarray

  def __len__(self) -> int:
    return int(self.labels.shape[0])


@dataclasses.dataclass
class Dataset:
  label_names: list[str]
  train: Split
  validation: Split
  test: Split
  background: np.ndarray | None  # float32 (K, L) noise bank
  sample_rate: int
  clip_samples: int
  info: dict = dataclasses.field(default_factory=dict)  # where the data came from, counts




def cache_dir(cfg: ml_collections.ConfigDict) -> str:
  if cfg.get("cache_dir"):
    return os.path.expanduser(cfg.cache_dir)
  return os.path.expanduser(os.environ.get("KWS_JAX_CACHE", "~/.cache/kws_jax"))


def wanted_words(cfg: ml_collections.ConfigDict) -> list[str] | None:
  """The wanted words as a list; None for "all" (every word folder is a class)."""
  words = cfg.wanted_words
  if isinstance(words, str):
    if words.strip().lower() == "all":
      return None
    words = [w.strip() for w in words.split(",") if w.strip()]
  words = list(words)
  if not words:
    raise ConfigError("data.wanted_words is empty; give comma-separated words or 'all'")
  if len(set(words)) != len(words):
    raise ConfigError(f"data.wanted_words repeats a word: {','.join(words)}")
  bad = [w for w in words if w.startswith("_")]
  if bad:
    raise ConfigError(f"data.wanted_words may not contain {bad[0]}: _silence_ and _unknown_ "
                      "are always classes 0 and 1")
  return words


def load_dataset(cfg: ml_collections.ConfigDict, seed: int = 0) -> Dataset:
  """Decodes the configured data once into int16 arrays (see the module docstring)."""
  _check_config(cfg)
  options = _folder_options(cfg)
  cache = cache_dir(cfg)
  if cfg.source == "speech_commands":
    from kws_jax.data import speech_commands
    label_names = speech_commands.LABEL_NAMES
    if wanted_words(cfg) not in (None, label_names[2:]):
      raise ConfigError("source='speech_commands' has the fixed 12 classes; leave "
                        "data.wanted_words at its default")
    main = speech_commands.load(cfg.data_dir or None, options.clip_samples,
                                manual_dir=cfg.get("manual_dir") or None)
    main_dir = None
  else:
    main_dir = _main_folder(cfg)
    label_names = folder_lib.label_names_for(wanted_words(cfg), main_dir)
    main = folder_lib.load_folder(main_dir, label_names, options, cache_dir=cache)
  splits = {name: _to_split(arrays) for name, arrays in main.splits.items()}
  _check_wanted_present(label_names, splits["train"], main_dir or "speech_commands")
  skipped = len(main.skipped)

  for extra in _as_list(cfg.extra_dirs):
    data = folder_lib.load_folder(extra, label_names, options, cache_dir=cache, assign="train",
                                  read_background=False)
    skipped += len(data.skipped)
    splits["train"] = _concat(splits["train"], _to_split(data.splits["train"]))
  synthetic_clips = 0
  if cfg.get("synthetic_mix", 0.0) > 0:
    # max_files_per_directory caps the recordings (few-shot), not the synthetic speech.
    data = folder_lib.load_folder(_synthetic_folder(cfg), label_names,
                                  dataclasses.replace(options, max_files_per_directory=0),
                                  cache_dir=cache, assign="train", read_background=False)
    mix = _to_split(data.splits["train"])
    count = int(round(len(mix) * cfg.synthetic_mix))
    keep = np.sort(np.random.default_rng([seed, 104729]).choice(len(mix), count, replace=False))
    synthetic_clips = len(keep)
    splits["train"] = _concat(splits["train"],
                              Split(mix.audio[keep], mix.labels[keep], mix.speakers[keep]))
  if cfg.test_dir:
    data = folder_lib.load_folder(cfg.test_dir, label_names, options, cache_dir=cache,
                                  assign="test", read_background=False)
    skipped += len(data.skipped)
    splits["test"] = _to_split(data.splits["test"])

  if cfg.background_dir:
    noises = folder_lib.read_background_folder(cfg.background_dir, options.sample_rate)
    if not noises:
      raise DataError(f"data.background_dir {cfg.background_dir}: no readable .wav/.flac files")
  else:
    noises = main.background
  background = make_noise_bank(noises, options.clip_samples, options.sample_rate)
  if background is None and np.any(splits["train"].labels == SILENCE_INDEX):
    # No noise recordings, but recorded `_silence_` clips (tfds speech_commands, the
    # canonical test-set layout): they are background noise, one clip per row.
    silence = splits["train"].audio[splits["train"].labels == SILENCE_INDEX]
    background = audio_io.from_int16(silence)
  if background is None and cfg.silence_percentage > 0:
    warnings.warn("no background noise (no _background_noise_ folder, no data.background_dir): "
                  "_silence_ clips are pure zeros and no noise is mixed in", stacklevel=2)

  rng = np.random.default_rng([seed, 7919])
  if cfg.rebalance_eval:
    for name in ("validation", "test"):
      splits[name] = _rebalance_eval(splits[name], background, cfg, rng)
  info = {
      "source": cfg.source, "data_dir": main_dir or cfg.data_dir,
      "extra_dirs": _as_list(cfg.extra_dirs), "test_dir": cfg.test_dir,
      "synthetic_clips_mixed": synthetic_clips,
      "skipped_files": skipped,
      "counts": {name: np.bincount(s.labels, minlength=len(label_names)).tolist()
                 for name, s in splits.items()},
  }
  return Dataset(list(label_names), splits["train"], splits["validation"], splits["test"],
                 background, options.sample_rate, options.clip_samples, info)


def training_epoch(ds: Dataset, cfg: ml_collections.ConfigDict, epoch_index: int,
                   seed: int = 0) -> Split:
  """One epoch of training clips with TF's silence/unknown rebalancing, shuffled."""
  rng = np.random.default_rng([seed, epoch_index])
  labels = ds.train.labels
  wanted = np.flatnonzero(labels >= 2)
  unknown = np.flatnonzero(labels == UNKNOWN_INDEX)
  silence = np.flatnonzero(labels == SILENCE_INDEX)
  num_unknown = min(len(unknown), math.ceil(len(wanted) * cfg.unknown_percentage / 100))
  num_silence = max(0, math.ceil(len(wanted) * cfg.silence_percentage / 100) - len(silence))
  chosen = np.concatenate([wanted, rng.choice(unknown, num_unknown, replace=False), silence])
  chosen = chosen.astype(np.int64)
  total = len(chosen) + num_silence
  order = rng.permutation(total)
  # Positions >= len(chosen) in `order` are the generated (all-zero) silence clips.
  real = order < len(chosen)
  audio = np.zeros((total, ds.clip_samples), np.int16)
  audio[real] = ds.train.audio[chosen[order[real]]]
  out_labels = np.full(total, SILENCE_INDEX, np.int32)
  out_labels[real] = labels[chosen[order[real]]]
  speakers = np.full(total, "", dtype=ds.train.speakers.dtype if len(ds.train) else str)
  speakers[real] = ds.train.speakers[chosen[order[real]]]
  return Split(audio, out_labels, speakers)


def batches(split: Split, batch_size: int, drop_remainder: bool = True
            ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """(audio int16 (B, S), labels int32 (B,)) in the split's order."""
  if batch_size <= 0:
    raise ConfigError(f"batch_size must be positive, got {batch_size}")
  n = len(split)
  stop = n - n % batch_size if drop_remainder else n
  for start in range(0, stop, batch_size):
    yield split.audio[start:start + batch_size], split.labels[start:start + batch_size]


def make_noise_bank(noises: Sequence[np.ndarray], clip_samples: int, sample_rate: int
                    ) -> np.ndarray | None:
  """Cuts noise recordings into equal rows (K, L), L >= clip_samples; None when there are none."""
  usable = [np.asarray(n, np.float32) for n in noises if len(n) > clip_samples]
  if len(usable) < len(noises):
    warnings.warn(f"{len(noises) - len(usable)} background recording(s) shorter than a clip "
                  "left out", stacklevel=2)
  if not usable:
    return None
  row = min(int(_BACKGROUND_ROW_SECONDS * sample_rate), min(len(n) for n in usable))
  rows = [n[i * row:(i + 1) * row] for n in usable for i in range(len(n) // row)]
  return np.stack(rows).astype(np.float32)


# ----------------------------------------------------------------------------- helpers


def _check_config(cfg) -> None:
  if cfg.source not in SOURCES:
    raise ConfigError(f"data.source {cfg.source!r} is not one of {', '.join(SOURCES)}")
  if cfg.source == "folder" and not cfg.data_dir:
    raise ConfigError("data.source='folder' needs data.data_dir, a Speech Commands-layout folder "
                      "(one subfolder per word): add --config.data.data_dir=PATH")
  for name in ("silence_percentage", "unknown_percentage", "validation_percentage",
               "testing_percentage"):
    if not 0 <= cfg[name] <= 100:
      raise ConfigError(f"data.{name} must be in [0, 100], got {cfg[name]}")
  mix = cfg.get("synthetic_mix", 0.0)
  if not 0 <= mix <= 1:
    raise ConfigError(f"data.synthetic_mix must be in [0, 1] (fraction of the synthetic set "
                      f"merged into training), got {mix}")
  if mix > 0 and cfg.source == "synthetic":
    raise ConfigError("data.synthetic_mix mixes synthetic clips into REAL training data; with "
                      "source='synthetic' leave it at 0")
  if cfg.validation_percentage + cfg.testing_percentage > 100:
    raise ConfigError("data.validation_percentage + data.testing_percentage exceed 100")
  if not 0 <= cfg.background_frequency <= 1:
    raise ConfigError("data.background_frequency must be in [0, 1], got "
                      f"{cfg.background_frequency}")
  if not 0 <= cfg.get("speed_perturb", 0.0) < 1:
    raise ConfigError(f"data.speed_perturb must be in [0, 1) (largest fractional speed change), "
                      f"got {cfg.speed_perturb}")
  if cfg.get("gain_min_db", 0.0) > cfg.get("gain_max_db", 0.0):
    raise ConfigError(f"data.gain_min_db ({cfg.gain_min_db}) is above data.gain_max_db "
                      f"({cfg.gain_max_db}); give the range low, high in dB")
  if cfg.get("background_mode", "volume") not in ("volume", "snr"):
    raise ConfigError(f"data.background_mode must be 'volume' (TF's absolute noise volume) or "
                      f"'snr' (noise scaled to a random SNR), got {cfg.background_mode!r}")
  if cfg.get("background_snr_min_db", 0.0) > cfg.get("background_snr_max_db", 20.0):
    raise ConfigError(f"data.background_snr_min_db ({cfg.background_snr_min_db}) is above "
                      f"data.background_snr_max_db ({cfg.background_snr_max_db}); give the "
                      "range low, high in dB")
  if cfg.background_volume < 0 or cfg.time_shift_ms < 0:
    raise ConfigError("data.background_volume and data.time_shift_ms must be >= 0")
  if cfg.on_bad_file not in ("skip", "error"):
    raise ConfigError(f"data.on_bad_file must be 'skip' or 'error', got {cfg.on_bad_file!r}")
  if cfg.stereo not in ("mix", "error"):
    raise ConfigError(f"data.stereo must be 'mix' or 'error', got {cfg.stereo!r}")
  wanted_words(cfg)


def _folder_options(cfg) -> folder_lib.FolderOptions:
  return folder_lib.FolderOptions(
      sample_rate=int(cfg.sample_rate),
      clip_samples=int(round(cfg.sample_rate * cfg.clip_duration_ms / 1000)),
      validation_percentage=float(cfg.validation_percentage),
      testing_percentage=float(cfg.testing_percentage),
      bad_list=cfg.bad_list, max_files_per_directory=int(cfg.max_files_per_directory),
      resample=bool(cfg.resample), stereo=cfg.stereo, on_bad_file=cfg.on_bad_file,
      split_salt=str(cfg.get("split_salt", "")))


def _main_folder(cfg) -> str:
  if cfg.source == "folder":
    return os.path.abspath(os.path.expanduser(cfg.data_dir))
  return _synthetic_folder(cfg)


def _synthetic_folder(cfg) -> str:
  """The synthetic set's folder, generated on first use (source="synthetic" or synthetic_mix)."""
  from kws_jax.data import synth
  options = cfg.synthetic.to_dict()
  options["engines"] = tuple(_as_list(options.get("engines", ("espeak",))))
  name = f"synthetic-{synth.VERSION}-{'+'.join(options['engines'])}"
  words = wanted_words(cfg)
  if words is not None and not set(words) <= set(synth.KEYWORDS):
    # Custom keywords: the engines say them, and every other word is `_unknown_`.
    options["keywords"] = tuple(words)
    options["unknown_words"] = tuple(w for w in synth.UNKNOWN_WORDS + synth.KEYWORDS
                                     if w not in words)
    name += "-" + "+".join(words)[:60]
  if options.get("hard_negatives_per_speaker"):
    name += f"-hard{int(options['hard_negatives_per_speaker'])}"
  if options.get("running_speech_per_speaker"):
    if words is None:
      raise ConfigError("data.synthetic.running_speech_per_speaker needs named wanted_words: with "
                        "wanted_words=all its running_speech/ folder would become a class")
    name += f"-run{int(options['running_speech_per_speaker'])}"
  params = synth.SynthParams(**options)
  # One cache folder per engine and word list, so recipes do not evict each other's sets.
  directory = cfg.synthetic_dir or os.path.join(cache_dir(cfg), name)
  return synth.ensure_generated(os.path.expanduser(directory), params)


def _as_list(value) -> list[str]:
  if not value:
    return []
  if isinstance(value, str):
    return [v.strip() for v in value.split(",") if v.strip()]
  return list(value)


def _to_split(arrays: folder_lib.SplitArrays) -> Split:
  return Split(arrays.audio, arrays.labels, arrays.speakers)


def _concat(a: Split, b: Split) -> Split:
  return Split(np.concatenate([a.audio, b.audio]), np.concatenate([a.labels, b.labels]),
               np.concatenate([a.speakers.astype(str), b.speakers.astype(str)]))


def _check_wanted_present(label_names, train: Split, where: str) -> None:
  counts = np.bincount(train.labels, minlength=len(label_names))
  missing = [name for name, c in zip(label_names[2:], counts[2:]) if c == 0]
  if missing:
    raise DataError(f"{where}: no training clips for wanted word(s) {', '.join(missing)}; "
                    "check data.wanted_words against the word folders")


def _rebalance_eval(split: Split, background, cfg, rng: np.random.Generator) -> Split:
  """TF's silence/unknown proportions for a validation/test split (once, deterministic)."""
  labels = split.labels
  if len(split) == 0 or np.any(labels == SILENCE_INDEX):
    return split
  wanted = np.flatnonzero(labels >= 2)
  unknown = np.flatnonzero(labels == UNKNOWN_INDEX)
  num_unknown = min(len(unknown), math.ceil(len(wanted) * cfg.unknown_percentage / 100))
  num_silence = math.ceil(len(wanted) * cfg.silence_percentage / 100)
  keep = np.sort(np.concatenate([wanted, rng.choice(unknown, num_unknown, replace=False)]))
  clip_samples = split.audio.shape[1]
  silence = np.zeros((num_silence, clip_samples), np.float32)
  if background is not None:
    for i in range(num_silence):
      row = background[rng.integers(len(background))]
      offset = rng.integers(0, len(row) - clip_samples + 1)
      silence[i] = row[offset:offset + clip_samples] * rng.uniform(0, 1)
  return Split(np.concatenate([split.audio[keep], audio_io.to_int16(silence)]),
               np.concatenate([labels[keep], np.zeros(num_silence, np.int32)]).astype(np.int32),
               np.concatenate([split.speakers[keep].astype(str), np.full(num_silence, "")]))
