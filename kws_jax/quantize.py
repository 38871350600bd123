"""`python -m kws_jax.quantize`, the documented entry point: kws_jax.deploy.int8_report."""

from kws_jax import errors
from kws_jax.deploy.int8_report import main

if __name__ == "__main__":
  errors.run_cli(main)
