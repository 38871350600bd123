"""A microcontroller-sized student: sc12_real's DS-CNN distilled from the embedding model.

- Student: sc12_real's DS-CNN (64 filters, 4 blocks, ~24 k parameters; ~24 KB as int8),
  MLPerf Tiny's 49 x 10 MFCC, same data, speaker split and augmentation.
- Teacher: a trained `sc12_embedding` workdir (Google's speech embedding + head), run
  inside the jitted step on the same augmented audio as the student; the loss mixes its
  temperature-softened posteriors with the labels (kws_jax.train.distill). Train it first:
      python -m kws_jax.train experiments/sc12_embedding.py --workdir runs/sc12_embedding
      python -m kws_jax.train experiments/sc12_student.py --workdir runs/sc12_student
  (--config.distill.teacher=WORKDIR for another teacher; --config.distill.weight=0 trains
  the same student on labels only, for the side-by-side figure.)
- 20 epochs instead of sc12_real's 80: every step also runs the teacher's 42 M-MAC
  embedding over each clip, which dominates a CPU step.
Measured accuracy and training time: BENCHMARKS.md section 11.
"""

import ml_collections

from kws_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
  c = default.derived_from(__file__, "sc12_real.py")
  c.distill = default.distill_config()
  c.distill.update(dict(teacher="runs/sc12_embedding", weight=0.7, temperature=2.0))
  c.train.update(dict(epochs=20, warmup_epochs=1.0))
  return c
