"""The training command line:

    python -m kws_jax.train experiments/<name>.py --workdir DIR [--config.key=value ...]
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
  from kws_jax.train import loop  # lazy: `--help` and `--config-help` without importing JAX

  results = loop.train_and_evaluate(config, args.workdir)
  accuracy = results["accuracy"]
  where = pathlib.Path(args.workdir) / "results.json"
  print(f"test accuracy {accuracy:.4f} on {results['num_examples']} clips "
        f"({results['num_params']} parameters); results in {where}"
        if accuracy is not None else f"{args.workdir}: no test clips; results in {where}")
  return 0
