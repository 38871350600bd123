"""`python -m kws_jax.train ...`: runs kws_jax.train.cli."""

from kws_jax import errors
from kws_jax.train.cli import main

if __name__ == "__main__":
  errors.run_cli(main)
