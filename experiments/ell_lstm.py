"""ELL's LSTM variant of the tutorial recipe (2 x LSTM128), otherwise as ell_gru128.py."""

import ml_collections

from kws_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
  c = default.derived_from(__file__, "ell_gru128.py")
  c.model.name = "lstm"
  return c
