"""The quick start's synthetic espeak keyword set on the pretrained speech embedding + head.

Same data as quickstart.py (offline espeak-ng speech only, no download); the model and
features are sc12_embedding's (frozen embedding, 250 ms of context a side, pool head).
Does a network pretrained on real speech carry synthetic-only training over to real
voices? `python -m kws_jax.evaluate --workdir WORKDIR --data-dir
../shared/data/sc_v2_test12_dev` measures it on real clips (BENCHMARKS.md section 10).
"""

import ml_collections

from kws_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
  c = default.derived_from(__file__, "quickstart.py")
  embedding = default.derived_from(__file__, "sc12_embedding.py")
  c.features = embedding.features
  c.model = embedding.model
  c.train.update(dict(epochs=8, optimizer="adamw", learning_rate=3e-3, weight_decay=1e-2,
                      warmup_epochs=0.5, final_rate_fraction=0.01, label_smoothing=0.1,
                      spec_augment=dict(time_masks=0, time_mask_max=0, freq_masks=0,
                                        freq_mask_max=0)))
  return c
