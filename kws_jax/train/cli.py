"""The training command line:

    python -m kws_jax.train experiments/<name>.py --workdir DIR [--config.key=value ...]

Data-parallel over every local device by default (`--config.train.num_devices=N`
to use fewer). Several processes (hosts): start the same command in each with
`--distributed.coordinator_address=HOST:PORT --distributed.num_processes=N
--distributed.process_id=I`, or with `--distributed.auto` under SLURM, Open MPI or
a TPU pod (JAX detects the cluster), or with JAX_COORDINATOR_ADDRESS set. These are
command-line flags, not config keys: a run may resume on another number of processes.
"""

from __future__ import annotations

import argparse
import pathlib
from typing import Sequence

from kws_jax.configs import loader as config_loader


def main(argv: Sequence[str]) -> int:
  # lazy: `--help` without importing JAX
  from kws_jax.train import distributed, loop

  rest, overrides = config_loader.split_overrides(argv)
  parser = argparse.ArgumentParser(
      prog="python -m kws_jax.train",
      description="Train a keyword spotter; rerun the same command to resume.",
      epilog="Override any config value with --config.section.key=value "
             "(e.g. --config.train.epochs=5).")
  parser.add_argument("experiment", help="experiment file, e.g. experiments/quickstart.py")
  parser.add_argument("--workdir", required=True, help="where checkpoints and results go")
  group = parser.add_argument_group("several processes (multi-host)")
  group.add_argument("--distributed.coordinator_address", dest="coordinator_address",
                     metavar="HOST:PORT", help="process 0's host and a free port")
  group.add_argument("--distributed.num_processes", dest="num_processes", type=int,
                     metavar="N", help="number of processes in the run")
  group.add_argument("--distributed.process_id", dest="process_id", type=int, metavar="I",
                     help="this process's id, 0..N-1 (0 writes the workdir's files)")
  group.add_argument("--distributed.auto", dest="auto", action="store_true",
                     help="let JAX detect the cluster (SLURM, Open MPI, TPU pod, JAX_* env)")
  args = parser.parse_args(rest)
  flags = (args.coordinator_address, args.num_processes, args.process_id)
  if args.auto or any(x is not None for x in flags) or distributed.wanted_from_environment():
    distributed.initialize(*flags)
  config = config_loader.load_experiment(args.experiment)
  config_loader.apply_overrides(config, overrides)
  results = loop.train_and_evaluate(config, args.workdir)
  if not distributed.is_primary():
    return 0
  accuracy = results["accuracy"]
  print(f"test accuracy {accuracy:.4f} on {results['num_examples']} clips "
        f"({results['num_params']} parameters); results in {pathlib.Path(args.workdir) / 'results.json'}"
        if accuracy is not None else "no test clips; results in results.json")
  return 0
