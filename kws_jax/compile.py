"""`python -m kws_jax.compile`, the documented entry point: kws_jax.deploy.iree_compile."""

from kws_jax import errors
from kws_jax.deploy.iree_compile import main

if __name__ == "__main__":
  errors.run_cli(main)
