"""ELL's LSTM variant of the tutorial recipe (2 x LSTM128), otherwise as ell_gru128.py."""

import ml_collections

from kws_jax import config as config_lib
from kws_jax import train
from kws_jax.data import pipeline


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.data = config_lib.use_shared_speech_data(pipeline.default_config())
  c.features = ml_collections.ConfigDict(dict(preset="ell"))
  c.model = ml_collections.ConfigDict(dict(name="lstm", hidden_size=128, num_layers=2))
  c.train = train.default_config()
  c.train.update(dict(epochs=30, batch_size=128, optimizer="rmsprop", learning_rate=1e-3,
                      momentum=0.0, weight_decay=1e-5))
  return c
