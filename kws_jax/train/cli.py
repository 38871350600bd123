"""The training command line:

    python -m kws_jax.train experiments/<name>.py --workdir DIR [--config.key=value ...]
"""

from __future__ import annotations

import argparse
import pathlib
from typing import Sequence

from kws_jax.configs import loader as config_loader


def main(argv: Sequence[str]) -> int:
  from kws_jax.train import loop  # lazy: `--help` without importing JAX

  rest, overrides = config_loader.split_overrides(argv)
  parser = argparse.ArgumentParser(
      prog="python -m kws_jax.train",
      description="Train a keyword spotter; rerun the same command to resume.",
      epilog="Override any config value with --config.section.key=value "
             "(e.g. --config.train.epochs=5).")
  parser.add_argument("experiment", help="experiment file, e.g. experiments/quickstart.py")
  parser.add_argument("--workdir", required=True, help="where checkpoints and results go")
  args = parser.parse_args(rest)
  config = config_loader.load_experiment(args.experiment)
  config_loader.apply_overrides(config, overrides)
  results = loop.train_and_evaluate(config, args.workdir)
  accuracy = results["accuracy"]
  print(f"test accuracy {accuracy:.4f} on {results['num_examples']} clips "
        f"({results['num_params']} parameters); results in {pathlib.Path(args.workdir) / 'results.json'}"
        if accuracy is not None else "no test clips; results in results.json")
  return 0
