"""`python -m kws_jax.evaluate`: kept as the documented entry point; the code is kws_jax.evaluation."""

from kws_jax import errors
from kws_jax.evaluation.folder_eval import main

if __name__ == "__main__":
  errors.run_cli(main)
