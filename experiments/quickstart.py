"""Quick start: synthetic speech only (no download) on the pretrained speech embedding + a head.

`python -m kws_jax.train experiments/quickstart.py --workdir runs/quickstart` generates
the offline synthetic keyword set on first use (12 classes; ~7 k clips from espeak-ng,
Debian's flite and the neural Piper voice, `kws_jax.data.synth`; validation and test
speakers are espeak voices in accents no training speaker has) and trains a small head
on Google's frozen speech embedding (sc12_embedding.py's model and features: 250 ms of
context a side, pool head) for 8 epochs. The embedding, trained on real speech, carries
synthetic-only training over to real voices: `python -m kws_jax.evaluate --workdir
runs/quickstart --data-dir ../shared/data/sc_v2_test12_dev` measures it on real clips
(BENCHMARKS.md section 10). Without flite: --config.data.synthetic.engines=espeak,piper.
quickstart_dscnn.py is the microcontroller-sized DS-CNN on the espeak set alone.
"""

import ml_collections

from kws_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
  c = default.derived_from(__file__, "quickstart_dscnn.py")  # synthetic data, seed, schedule
  c.data.synthetic.update(dict(engines=("espeak", "flite", "piper"), speakers_per_engine=144))
  embedding = default.derived_from(__file__, "sc12_embedding.py")
  c.features = embedding.features
  c.model = embedding.model
  c.train.update(dict(epochs=8, optimizer="adamw", learning_rate=3e-3, weight_decay=1e-2,
                      warmup_epochs=0.5, final_rate_fraction=0.01, label_smoothing=0.1,
                      spec_augment=dict(time_masks=0, time_mask_max=0, freq_masks=0,
                                        freq_mask_max=0)))
  c.model.finetune = False  # measured frozen (BENCHMARKS.md section 10)
  return c
