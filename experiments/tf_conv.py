"""TensorFlow speech_commands' default model (`conv`, cnn-trad-fpool3) on ../shared/data.

The example trains 15000 steps at 1e-3 then 3000 at 1e-4, batch 100, on ~37 k
clips per epoch (v0.02, 10 words + 10 % silence + 10 % unknown): about 40 + 8
epochs, which is the schedule here in epochs. Adam (the example's --optimizer
also offers plain SGD). 40 MFCC, 30 ms window, 10 ms hop; TF's data defaults
(100 ms time shift, background volume 0.1 at frequency 0.8).
"""

import ml_collections

from kws_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.data = default.use_shared_speech_data(default.data_config())
  c.features = ml_collections.ConfigDict(dict(preset="tf_speech_commands"))
  c.model = ml_collections.ConfigDict(dict(name="tf_conv", dropout_rate=0.5))
  c.train = default.train_config()
  c.train.update(dict(epochs=48, batch_size=100, optimizer="adam", learning_rate=1e-3,
                      schedule="piecewise", piecewise_epochs=(0.0, 40.0),
                      piecewise_rates=(1e-3, 1e-4)))
  return c
