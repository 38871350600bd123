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
import json
import pathlib
from typing import Sequence

import ml_collections

from kws_jax import errors
from kws_jax.configs import loader as config_loader
from kws_jax.errors import ConfigError


def config_lines(config: ml_collections.ConfigDict) -> list[str]:
  """`--config.KEY=VALUE` for every value of the experiment (what --config-help prints)."""
  keys = config_loader.all_keys(config)
  lines = []
  for key in keys:
    value = config
    for part in key.split("."):
      value = value[part]
    if not isinstance(value, ml_collections.ConfigDict):
      text = json.dumps(config_loader.to_dict(ml_collections.ConfigDict({"v": value}))["v"])
      lines.append(f"--config.{key}={text.strip(chr(34)) if isinstance(value, str) else text}")
  return lines


def _refuse_bare_overrides(rest: Sequence[str], config: ml_collections.ConfigDict) -> None:
  """`--train.epochs=2` (no `config.`): argparse would only say "unrecognized arguments"."""
  sections = {key for key in config.keys()}
  for arg in rest:
    body = arg[2:].split("=", 1)[0] if arg.startswith("--") else ""
    if body.split(".")[0] in sections and body != "workdir":
      raise ConfigError(f"{arg}: not an option; config overrides start with --config. "
                        f"(write --config.{arg[2:]}; --config-help lists the keys)")


def main(argv: Sequence[str]) -> int:
  rest, overrides = config_loader.split_overrides(argv)
  parser = argparse.ArgumentParser(
      prog="python -m kws_jax.train",
      description="Train a keyword spotter; rerun the same command to resume.",
      epilog="Override any config value with --config.section.key=value "
             "(e.g. --config.train.epochs=5); --config-help lists the experiment's keys.")
  parser.add_argument("experiment", help="experiment file, e.g. experiments/quickstart.py")
  parser.add_argument("--workdir", help="required: where checkpoints and results go")
  parser.add_argument("--config-help", action="store_true",
                      help="print the experiment's config keys and values (with any "
                           "--config.KEY=VALUE applied) as overrides, and exit")
  group = parser.add_argument_group("several processes (multi-host)")
  group.add_argument("--distributed.coordinator_address", dest="coordinator_address",
                     metavar="HOST:PORT", help="process 0's host and a free port")
  group.add_argument("--distributed.num_processes", dest="num_processes", type=int,
                     metavar="N", help="number of processes in the run")
  group.add_argument("--distributed.process_id", dest="process_id", type=int, metavar="I",
                     help="this process's id, 0..N-1 (0 writes the workdir's files)")
  group.add_argument("--distributed.auto", dest="auto", action="store_true",
                     help="let JAX detect the cluster (SLURM, Open MPI, TPU pod, JAX_* env)")
  errors.add_verbose_flag(parser)
  # Parsed in two steps: the config names the sections a bare `--train.epochs` belongs to.
  args, unknown = parser.parse_known_args(rest)
  config = config_loader.load_experiment(args.experiment)
  _refuse_bare_overrides(unknown, config)
  parser.parse_args(rest)
  config_loader.apply_overrides(config, overrides)
  if args.config_help:
    print("\n".join(config_lines(config)))
    return 0
  if not args.workdir:
    parser.error("the following arguments are required: --workdir")
  # lazy: `--help` and `--config-help` without importing JAX
  from kws_jax.train import distributed, loop

  flags = (args.coordinator_address, args.num_processes, args.process_id)
  if args.auto or any(x is not None for x in flags) or distributed.wanted_from_environment():
    distributed.initialize(*flags)
  results = loop.train_and_evaluate(config, args.workdir)
  if not distributed.is_primary():
    return 0
  accuracy = results["accuracy"]
  where = pathlib.Path(args.workdir) / "results.json"
  print(f"test accuracy {accuracy:.4f} on {results['num_examples']} clips "
        f"({results['num_params']} parameters); results in {where}"
        if accuracy is not None else f"{args.workdir}: no test clips; results in {where}")
  return 0
