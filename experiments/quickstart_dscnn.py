"""A microcontroller-sized DS-CNN on the offline synthetic espeak keyword set (no download).

The quick start before it moved to the pretrained embedding (quickstart.py): 7.8 k
parameters, small enough for the bare-metal builds.
`python -m kws_jax.train experiments/quickstart_dscnn.py --workdir runs/quickstart_dscnn`
generates the espeak-ng keyword set on first use (~3 k clips, 12 classes, test
speakers in an accent no training speaker has) and trains for a few minutes on
2 CPU cores (~73 % on its synthetic test voices, ~42 % on real speech). MLPerf
Tiny's DS-CNN input: 49 x 10 MFCC (30 ms window, 20 ms hop). Batch 32 gives ~650
steps, enough for the BatchNorm running averages (momentum 0.99) that evaluation uses
to settle.
"""

import ml_collections

from kws_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.data = default.data_config()
  c.data.source = "synthetic"
  c.features = ml_collections.ConfigDict(dict(preset="tf_speech_commands", hop_size=320,
                                              num_mfcc=10))
  c.model = ml_collections.ConfigDict(dict(name="dscnn", filters=32))
  c.train = default.train_config()
  c.train.update(dict(
      epochs=12, batch_size=32, optimizer="adam", learning_rate=3e-3, schedule="cosine",
      warmup_epochs=1.0, final_rate_fraction=0.02, label_smoothing=0.05,
      spec_augment=dict(time_masks=2, time_mask_max=5, freq_masks=1, freq_mask_max=2)))
  return c
