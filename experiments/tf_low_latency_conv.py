"""TensorFlow speech_commands' `low_latency_conv` (cnn-one-fstride4) on ../shared/data.

The example's README trains it 20000 + 6000 steps (batch 100, ~370 steps per
epoch on v0.02): about 54 + 16 epochs. It uses SGD at 0.01 then 0.001; with
Adam, as here, the same 10x drop starts from 1e-3.
"""

import ml_collections

from kws_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.data = default.use_shared_speech_data(default.data_config())
  c.features = ml_collections.ConfigDict(dict(preset="tf_speech_commands"))
  c.model = ml_collections.ConfigDict(dict(name="tf_low_latency_conv", dropout_rate=0.5))
  c.train = default.train_config()
  c.train.update(dict(epochs=70, batch_size=100, optimizer="adam", learning_rate=1e-3,
                      schedule="piecewise", piecewise_epochs=(0.0, 54.0),
                      piecewise_rates=(1e-3, 1e-4)))
  return c
