"""Trains the tiny experiment and records what every step saw: its global labels and loss.

    python scaling_driver.py DATA CACHE WORKDIR OUT.json --epochs E [--process I/N@PORT]

`train_recording` is also called in the test process itself (one process, one device).
As a script it trains on every device of this process (with `--process I/N@PORT`:
as process I of N, the coordinator on 127.0.0.1:PORT) and process 0 writes the
record to OUT.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

import jax
import numpy as np
from jax.experimental import multihost_utils

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from tiny_training import tiny_config  # noqa: E402

from kws_jax.train import distributed, loop, step  # noqa: E402


def train_recording(data: pathlib.Path, cache: pathlib.Path, workdir: pathlib.Path,
                    **train: object) -> dict:
  """Trains `tiny_config(data, cache, **train)`; returns each step's labels and loss."""
  record = dict(labels=[], losses=[])
  make_train_chunk = step.make_train_chunk

  def recording_make_train_chunk(*args, **kwargs):
    chunk = make_train_chunk(*args, **kwargs)

    def run(carry, audio, labels, steps, valid, nan_step):
      carry, (losses, correct) = chunk(carry, audio, labels, steps, valid, nan_step)
      every = np.asarray(multihost_utils.process_allgather(labels, tiled=True))
      for k in np.flatnonzero(np.asarray(valid)):
        record["labels"].append(every[k].tolist())
        record["losses"].append(float(np.asarray(losses)[k]))
      return carry, (losses, correct)

    return run

  step.make_train_chunk = recording_make_train_chunk
  try:
    results = loop.train_and_evaluate(tiny_config(data, cache, **train), workdir)
  finally:
    step.make_train_chunk = make_train_chunk
  return dict(record, accuracy=results["accuracy"], devices=len(jax.devices()),
              processes=jax.process_count())


def main(argv: list[str]) -> None:
  parser = argparse.ArgumentParser()
  for name in ("data", "cache", "workdir", "out"):
    parser.add_argument(name, type=pathlib.Path)
  parser.add_argument("--epochs", type=int, required=True)
  parser.add_argument("--process", help="I/N@PORT")
  args = parser.parse_args(argv)
  if args.process:
    ids, port = args.process.split("@")
    process_id, num_processes = (int(x) for x in ids.split("/"))
    os.environ["JAX_COORDINATOR_BIND_ADDRESS"] = f"127.0.0.1:{port}"
    distributed.initialize(f"127.0.0.1:{port}", num_processes, process_id)
  record = train_recording(args.data, args.cache, args.workdir, epochs=args.epochs)
  if jax.process_index() == 0:
    args.out.write_text(json.dumps(record))


if __name__ == "__main__":
  main(sys.argv[1:])
