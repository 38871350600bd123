"""`python -m kws_jax.export`, the documented entry point: kws_jax.deploy.stablehlo_export."""

from kws_jax import errors
from kws_jax.deploy.stablehlo_export import main

if __name__ == "__main__":
  errors.run_cli(main)
