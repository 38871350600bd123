"""ELL's LSTM variant of the tutorial recipe (2 x LSTM128), otherwise as ell_gru128.py."""

import pathlib

import ml_collections

from kws_jax import config as config_lib


def get_config() -> ml_collections.ConfigDict:
  c = config_lib.load_experiment(pathlib.Path(__file__).with_name("ell_gru128.py"))
  c.model.name = "lstm"
  return c
