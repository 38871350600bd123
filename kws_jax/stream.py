"""`python -m kws_jax.stream`: kept as the documented entry point; the code is kws_jax.streameval."""

from kws_jax import errors
from kws_jax.streameval.cli import main

if __name__ == "__main__":
  errors.run_cli(main)
