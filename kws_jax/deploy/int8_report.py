"""`python -m kws_jax.quantize`: accuracy of the float vs the int8 streaming step.

Both steps run over the same clips (by default the test split of the workdir's own
training data, speakers it never saw); the report says how many predictions
changed and what the int8 weights save.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
from typing import Sequence

import jax
import numpy as np
from tqdm import tqdm

from kws_jax import audio, errors
from kws_jax.data import pipeline
from kws_jax.deploy import int8, protocol, streaming_step
from kws_jax.deploy.streaming_step import StreamingStep
from kws_jax.errors import KwsError
from kws_jax.runs import trained_model
from kws_jax.runs.trained_model import Trained


def _random_subset(count: int, limit: int | None) -> np.ndarray:
  """Sorted indices of a seeded random subset of `limit` out of `count` (all when no limit)."""
  if not limit:
    return np.arange(count)
  return np.sort(np.random.default_rng(0).choice(count, min(limit, count), replace=False))


def load_labelled_clips(folder: str | os.PathLike, label_names: Sequence[str], clip_samples: int,
                        limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Clips of a Speech Commands-layout folder whose subfolder is a label: (N, S) float32, (N,)."""
  root = pathlib.Path(folder)
  if not root.is_dir():
    raise KwsError(f"{folder}: no such dataset folder")
  clips, labels = [], []
  files = [(label_names.index(d.name), f) for d in sorted(root.iterdir())
           if d.is_dir() and d.name in label_names for f in sorted(d.glob("*.wav"))]
  if not files:
    raise KwsError(f"{folder}: no WAV files in subfolders named after the labels "
                   f"{list(label_names)}")
  files = [files[i] for i in _random_subset(len(files), limit)]
  for label, path in files:
    clips.append(audio.fit_length(audio.read_audio(path), clip_samples))
    labels.append(label)
  return np.stack(clips).astype(np.float32), np.asarray(labels, np.int32)


def streaming_logits(step: StreamingStep, clips: np.ndarray, batch_size: int = 64) -> np.ndarray:
  """Final logits of the streaming step over each clip (padded to whole hops)."""
  hops = -(-clips.shape[1] // step.hop_size)
  padded = np.zeros((clips.shape[0], hops * step.hop_size), np.float32)
  padded[:, :clips.shape[1]] = clips

  @jax.jit
  def run(params, batch):
    def one(clip):
      _, outs = protocol.scan_hops(step.apply, params, step.initial_state(),
                                   clip.reshape(hops, step.hop_size))
      return outs["logits"][-1]
    return jax.vmap(one)(batch)

  out = []
  for start in tqdm(range(0, len(padded), batch_size), desc="clips", unit="batch", leave=False):
    batch = padded[start:start + batch_size]
    if len(batch) < batch_size:  # One compiled shape: pad the last batch.
      batch = np.concatenate([batch, np.zeros((batch_size - len(batch), batch.shape[1]),
                                              np.float32)])
    out.append(np.asarray(run(step.params, batch)))
  return np.concatenate(out)[:len(clips)]


def _training_test_split(trained: Trained, limit: int | None) -> tuple[np.ndarray, np.ndarray, str]:
  """The test split the training run reported (same clips as its results.json)."""
  seed = int(trained.config.get("seed", 0))
  ds = pipeline.load_dataset(trained.config.data, seed)
  if list(ds.label_names) != list(trained.label_names):
    raise KwsError("the workdir's data config now gives other labels than it was trained on; "
                   "pass --data FOLDER")
  clips = audio.from_int16(ds.test.audio)
  labels = np.asarray(ds.test.labels, np.int32)
  keep = _random_subset(len(labels), limit)
  clips, labels = clips[keep], labels[keep]
  return clips, labels, f"test split of {trained.config.data.get('data_dir', 'the training data')}"


def main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(prog="python -m kws_jax.quantize",
                                   description="Accuracy of the float vs the int8 streaming step.")
  parser.add_argument("--workdir", required=True, help="training workdir")
  parser.add_argument("--which", default="best", choices=["best", "latest"],
                      help="checkpoint (default: %(default)s)")
  parser.add_argument("--data", default=None,
                      help="Speech Commands-layout folder (default: the test split of the "
                           "workdir's training data, speakers it never saw)")
  parser.add_argument("--limit", type=int, default=None, help="evaluate a random subset of N clips")
  parser.add_argument("--out", default=None, help="JSON file for the figures "
                      "(default WORKDIR/quantization.json)")
  errors.add_verbose_flag(parser)
  args = parser.parse_args(argv)
  trained = trained_model.load(args.workdir, which=args.which)
  if args.data:
    data = args.data
    clips, labels = load_labelled_clips(data, trained.label_names, trained.clip_samples,
                                        args.limit)
  else:
    clips, labels, data = _training_test_split(trained, args.limit)
  step = streaming_step.make_step(trained, vad=False, smoothing=False)
  qstep, report = int8.quantize_step(step)
  float_pred = streaming_logits(step, clips).argmax(-1)
  int8_pred = streaming_logits(qstep, clips).argmax(-1)
  result = {
      "workdir": str(args.workdir), "data": data, "clips": int(len(labels)),
      "accuracy_float": float(np.mean(float_pred == labels)),
      "accuracy_int8": float(np.mean(int8_pred == labels)),
      "agreement": float(np.mean(float_pred == int8_pred)),
      "quantization": report,
  }
  result["accuracy_change_points"] = 100.0 * (result["accuracy_int8"] - result["accuracy_float"])
  out = pathlib.Path(args.out) if args.out else pathlib.Path(args.workdir) / "quantization.json"
  out.write_text(json.dumps(result, indent=1) + "\n")
  print(f"{len(labels)} clips of {data}: float {100 * result['accuracy_float']:.2f}%, int8 "
        f"{100 * result['accuracy_int8']:.2f}% ({result['accuracy_change_points']:+.2f} points), "
        f"same prediction on {100 * result['agreement']:.1f}%; weights "
        f"{report['weight_bytes_float32'] / 1024:.0f} KiB -> "
        f"{report['weight_bytes_quantized'] / 1024:.0f} KiB; written to {out}")
  return 0


if __name__ == "__main__":
  errors.run_cli(main)
