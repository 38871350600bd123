"""Evaluate a trained model on a folder: `python -m kws_jax.evaluate --workdir DIR --data-dir FOLDER`.

Every clip of a Speech Commands-layout folder (word folders, or the canonical
test layout with `_silence_/` and `_unknown_/`) is classified once by the
workdir's best checkpoint. Words the model does not know count as `_unknown_`
(TF's rule). Prints accuracy and the confusion matrix; `--json` makes the last
stdout line a JSON object (accuracy, num_examples, labels, confusion_matrix,
per_class, ...).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import sys
import warnings
from typing import Sequence

import numpy as np

from kws_jax import errors
from kws_jax.configs import default as config_default
from kws_jax.data import folder as folder_lib
from kws_jax.data import pipeline
from kws_jax.errors import DataError
from kws_jax.evaluation import classification, plots
from kws_jax.models import builder
from kws_jax.runs import checkpoints, trained_model


def load_clips(folder: str | os.PathLike, t: trained_model.Trained, cache_dir: str | None = None):
  """All clips of `folder` as (int16 audio (N, S), int32 labels (N,), skipped files)."""
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    raise DataError(f"{folder}: no such folder; give a Speech Commands-layout folder with "
                    "--data-dir")
  check_layout(folder, t.label_names)
  options = folder_lib.FolderOptions(sample_rate=t.sample_rate, clip_samples=t.clip_samples)
  if cache_dir is None:
    cache_dir = pipeline.cache_dir(config_default.data_config())
  # tfds prints its "Downloading and preparing" lines to stdout: keep stdout for results.
  with contextlib.redirect_stdout(sys.stderr):
    data = folder_lib.load_folder(str(folder), t.label_names, options, cache_dir=cache_dir,
                                  assign="test", read_background=False)
  split = data.splits["test"]
  if len(split.labels) == 0:
    raise DataError(f"{folder}: no readable clips (expected word folders of .wav files)")
  return np.asarray(split.audio), np.asarray(split.labels, np.int32), data.skipped


def check_layout(folder: pathlib.Path, label_names: Sequence[str]) -> None:
  """Refuses a folder without a folder of the model's words or `_silence_`/`_unknown_` (e.g. the
  parent of a dataset): every clip in it would be scored as `_unknown_`."""
  words = [w for w in label_names if not w.startswith("_")]
  subdirs = {d.name for d in folder.iterdir() if d.is_dir()}
  if subdirs & {*words, folder_lib.SILENCE_LABEL, folder_lib.UNKNOWN_LABEL}:
    return
  nested = sorted(d for d in subdirs if any((folder / d / w).is_dir() for w in words))
  hint = (f"; its sub-folder{'s' if len(nested) > 1 else ''} {', '.join(nested)} "
          f"look{'' if len(nested) > 1 else 's'} like one: --data-dir {folder / nested[0]}"
          if nested else "")
  raise DataError(f"{folder}: not a Speech Commands-layout folder for this model: no folder of "
                  f"its words ({', '.join(words)}) nor _silence_/_unknown_{hint}")


def training_clips(folder: str | os.PathLike, t: trained_model.Trained) -> int:
  """How many clips of `folder` the run trained on (its data_dir's training speakers, or all
  of an extra training folder); 0 for any other folder."""
  data = t.config.get("data") or {}
  if data.get("source", "folder") != "folder":
    return 0
  here = pathlib.Path(folder).resolve()
  if any(d and pathlib.Path(d).resolve() == here for d in data.get("extra_dirs", ()) or ()):
    return len(folder_lib.scan(str(here), t.label_names, folder_lib.FolderOptions(), "train"))
  if not data.get("data_dir") or pathlib.Path(data.data_dir).resolve() != here:
    return 0
  options = folder_lib.FolderOptions(
      validation_percentage=float(data.get("validation_percentage", 10.0)),
      testing_percentage=float(data.get("testing_percentage", 10.0)),
      split_salt=str(data.get("split_salt", "")))
  return sum(e.split == "train" for e in folder_lib.scan(str(here), t.label_names, options))


def evaluate_folder(workdir: str | os.PathLike, data_dir: str | os.PathLike, *,
                    which: str = checkpoints.BEST, batch_size: int = 256,
                    cache_dir: str | None = None) -> dict:
  """Accuracy, confusion matrix and per-class precision/recall of a workdir's model on a folder."""
  t = trained_model.load(workdir, which)
  audio, labels, skipped = load_clips(data_dir, t, cache_dir)
  seen = training_clips(data_dir, t)
  if seen:
    warnings.warn(f"{data_dir} holds {seen} clip(s) that {workdir} was trained on: this is not a "
                  f"test accuracy (the run's own test accuracy is in {workdir}/results.json)",
                  stacklevel=2)
  logits_fn = builder.make_logits_fn(t.model, t.frontend)
  matrix, loss = classification.evaluate_arrays(logits_fn, t.variables, audio, labels,
                                                batch_size, len(t.label_names))
  summary = classification.summarize(matrix, t.label_names)
  return dict(summary, loss=loss, workdir=str(workdir), data_dir=str(data_dir), checkpoint=which,
              step=t.step, skipped_files=len(skipped), model=str(t.config.model.name),
              training_clips=seen)


def main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m kws_jax.evaluate",
      description="Evaluate a training workdir's model on a Speech Commands-layout folder.")
  parser.add_argument("--workdir", required=True, help="training workdir")
  parser.add_argument("--data-dir", required=True,
                      help="folder of word folders (or _silence_/_unknown_ canonical layout)")
  parser.add_argument("--which", choices=(checkpoints.BEST, checkpoints.LATEST),
                      default=checkpoints.BEST, help="checkpoint (default: best)")
  parser.add_argument("--batch-size", type=int, default=256,
                      help="clips per model call (default: %(default)s)")
  parser.add_argument("--cache-dir", default=None,
                      help="where the decoded folder is cached (default: $KWS_JAX_CACHE or "
                      "~/.cache/kws_jax)")
  parser.add_argument("--plot", default=None,
                      help="also write the confusion matrix as this PNG (titled with the model, "
                           "workdir and folder)")
  parser.add_argument("--json", action="store_true",
                      help="print the results as one JSON object on the last line")
  errors.add_verbose_flag(parser)
  args = parser.parse_args(argv)
  if args.batch_size < 1:
    parser.error("--batch-size must be at least 1")

  results = evaluate_folder(args.workdir, args.data_dir, which=args.which,
                            batch_size=args.batch_size, cache_dir=args.cache_dir)
  matrix = np.asarray(results["confusion_matrix"])
  print(f"accuracy {results['accuracy']:.4f} on {results['num_examples']} clips of "
        f"{args.data_dir} ({args.which} checkpoint, step {results['step']})")
  if results["skipped_files"]:
    print(f"{results['skipped_files']} unreadable file(s) left out", file=sys.stderr)
  print(classification.format_confusion(matrix, results["labels"]))
  if args.plot:
    plots.confusion_matrix_png(
        matrix, results["labels"], args.plot,
        title=f"{results['model']} ({args.workdir}) on {args.data_dir}: "
              f"accuracy {results['accuracy']:.3f}")
  if args.json:
    print(json.dumps(results))
  return 0


if __name__ == "__main__":
  errors.run_cli(main)
