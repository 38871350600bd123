"""ELL's audio tutorial recipe: 2 x GRU128 on 80 log-mel bands, on ../shared/data's real speech.

microsoft/ELL train_classifier.py defaults: RMSprop lr 1e-3, weight decay 1e-5,
batch 128, 30 epochs, ELL featurizer (512-sample window and hop, 80 mel bands,
log). Data: see `config.use_shared_speech_data` (split by speaker).
"""

import ml_collections

from kws_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.data = default.use_shared_speech_data(default.data_config())
  c.features = ml_collections.ConfigDict(dict(preset="ell"))
  c.model = ml_collections.ConfigDict(dict(name="gru", hidden_size=128, num_layers=2))
  c.train = default.train_config()
  c.train.update(dict(epochs=30, batch_size=128, optimizer="rmsprop", learning_rate=1e-3,
                      momentum=0.0, weight_decay=1e-5))
  return c
