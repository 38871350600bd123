"""sc12_real with streaming convolutions: the DS-CNN a microcontroller can run every hop.

Same data, split, features (49 x 10 MFCC, 20 ms hop), augmentation and schedule as
sc12_real.py; the model is `dscnn_streaming`: the same DS-CNN (64 filters, 4 blocks,
23,756 parameters) with a 'valid' time axis, so its streaming step computes one new
column of each layer every 2 hops (~54 k MACs per 20 ms hop) instead of rerunning the
2.66 M-MAC window, and equals the window network (tests/models/test_dscnn_streaming.py).
Measured accuracy: BENCHMARKS.md section 6; instructions and RAM on the emulated
Cortex-M4: BUILD.md section 5.
"""

import ml_collections

from kws_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
  c = default.derived_from(__file__, "sc12_real.py")
  c.model = ml_collections.ConfigDict(dict(name="dscnn_streaming", filters=64, num_blocks=4,
                                            context_frames=12))
  return c
