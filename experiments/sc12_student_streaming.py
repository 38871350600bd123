"""sc12_student with streaming convolutions: a distilled student a Cortex-M4 runs every hop.

Same teacher (a trained `sc12_embedding` workdir), distillation weights, data, speaker
split and augmentation as sc12_student.py; the student is sc12_streaming's
`dscnn_streaming` (the same DS-CNN, 64 filters, 4 blocks, 23,756 parameters, with a
'valid' time axis and 12 context frames a side), whose step computes one column of every
layer every second hop instead of rerunning the window. BatchNorm momentum 0.9 and 40
epochs: session 11's best student settings (BENCHMARKS.md section 11: the running averages
lag AdamW's fast-moving weights at 0.99).
    python -m kws_jax.train experiments/sc12_student_streaming.py --workdir runs/sc12_student_s
Measured accuracy: BENCHMARKS.md section 11; instructions and RAM on the emulated
Cortex-M4: BUILD.md section 5.
"""

import ml_collections

from kws_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
  c = default.derived_from(__file__, "sc12_student.py")
  c.model = ml_collections.ConfigDict(dict(name="dscnn_streaming", filters=64, num_blocks=4,
                                            context_frames=12, bn_momentum=0.9))
  c.train.update(dict(epochs=40))
  return c
