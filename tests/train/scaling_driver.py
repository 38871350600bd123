"""Runs the tiny training experiment in this process and records what each step saw.

    python scaling_driver.py DATA CACHE WORKDIR OUT.json [NUM_DEVICES ...] [--process I/N@PORT]

Trains `tiny_training.tiny_config` once per NUM_DEVICES (default: one run on all
devices) into WORKDIR/<n>, recording every step's global labels and loss (gathered
from all processes); process 0 writes them to OUT.json. With `--process I/N@PORT`
this process is process I of N with the coordinator on 127.0.0.1:PORT.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def main(argv: list[str]) -> None:
  process = None
  if "--process" in argv:
    i = argv.index("--process")
    process = argv[i + 1]
    argv = argv[:i] + argv[i + 2:]
  data, cache, workdir, out, *counts = argv
  from kws_jax.train import distributed
  if process is not None:
    ids, port = process.split("@")
    process_id, num_processes = (int(x) for x in ids.split("/"))
    os.environ["JAX_COORDINATOR_BIND_ADDRESS"] = f"127.0.0.1:{port}"
    distributed.initialize(f"127.0.0.1:{port}", num_processes, process_id)

  import jax
  import numpy as np
  from jax.experimental import multihost_utils
  from tiny_training import tiny_config

  from kws_jax.train import loop, step

  record = {}
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
  runs = {}
  for count in counts or ["0"]:
    record = dict(labels=[], losses=[])
    config = tiny_config(pathlib.Path(data), pathlib.Path(cache), num_devices=int(count))
    results = loop.train_and_evaluate(config, pathlib.Path(workdir) / count)
    runs[count] = dict(record, accuracy=results["accuracy"],
                       devices=len(jax.devices()), processes=jax.process_count())
  if jax.process_index() == 0:
    pathlib.Path(out).write_text(json.dumps(runs))


if __name__ == "__main__":
  main(sys.argv[1:])
