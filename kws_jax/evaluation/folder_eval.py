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


def evaluate_folder(workdir: str | os.PathLike, data_dir: str | os.PathLike, *,
                    which: str = checkpoints.BEST, batch_size: int = 256,
                    cache_dir: str | None = None) -> dict:
  """Accuracy, confusion matrix and per-class precision/recall of a workdir's model on a folder."""
  t = trained_model.load(workdir, which)
  audio, labels, skipped = load_clips(data_dir, t, cache_dir)
  logits_fn = builder.make_logits_fn(t.model, t.frontend)
  matrix, loss = classification.evaluate_arrays(logits_fn, t.variables, audio, labels,
                                                batch_size, len(t.label_names))
  summary = classification.summarize(matrix, t.label_names)
  return dict(summary, loss=loss, workdir=str(workdir), data_dir=str(data_dir), checkpoint=which,
              step=t.step, skipped_files=len(skipped))


def main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m kws_jax.evaluate",
      description="Evaluate a training workdir's model on a Speech Commands-layout folder.")
  parser.add_argument("--workdir", required=True, help="training workdir")
  parser.add_argument("--data-dir", required=True,
                      help="folder of word folders (or _silence_/_unknown_ canonical layout)")
  parser.add_argument("--which", choices=(checkpoints.BEST, checkpoints.LATEST),
                      default=checkpoints.BEST, help="checkpoint (default: best)")
  parser.add_argument("--batch-size", type=int, default=256)
  parser.add_argument("--cache-dir", default=None,
                      help="where the decoded folder is cached (default: $KWS_JAX_CACHE or "
                      "~/.cache/kws_jax)")
  parser.add_argument("--plot", default=None, help="also write the confusion matrix as this PNG")
  parser.add_argument("--json", action="store_true",
                      help="print the results as one JSON object on the last line")
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
    plots.confusion_matrix_png(matrix, results["labels"], args.plot,
                               title=f"accuracy {results['accuracy']:.3f}")
  if args.json:
    print(json.dumps(results))
  return 0


if __name__ == "__main__":
  errors.run_cli(main)
