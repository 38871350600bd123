"""MLPerf Tiny's keyword-spotting DS-CNN (mlcommons/tiny, benchmark/training/keyword_spotting).

conv 10x4 x64 stride 2 SAME -> BN -> relu -> dropout 0.2, then 4 depthwise-
separable blocks (depthwise 3x3 SAME -> BN -> relu -> pointwise 1x1 x64 -> BN ->
relu), dropout 0.4, global average pool, linear. About 23.8 k parameters on
49 x 10 MFCC with 12 classes (2.66 M MACs per window). Keras defaults: Glorot
uniform kernels, zero biases, BatchNorm momentum 0.99 and epsilon 1e-3.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from kws_jax.models.common import Array, DepthwiseConv, WindowModel, check_window


class DsCnn(WindowModel):
  """Depthwise-separable CNN (see module docstring)."""

  filters: int = 64
  num_blocks: int = 4
  first_dropout: float = 0.2
  final_dropout: float = 0.4
  bn_momentum: float = 0.99  # Keras default; 0.9 settles the running statistics in fewer steps

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    check_window(type(self).__name__, x, self.num_frames, self.num_features)

    def batch_norm(name: str) -> nn.BatchNorm:
      return nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, epsilon=1e-3,
                          name=name)

    kernel_init = nn.initializers.xavier_uniform()
    y = x.astype(jnp.float32)[..., None]
    y = nn.Conv(self.filters, (10, 4), strides=(2, 2), padding="SAME", kernel_init=kernel_init,
                name="conv")(y)
    y = nn.relu(batch_norm("conv_bn")(y))
    y = nn.Dropout(self.first_dropout)(y, deterministic=not train)
    for index in range(self.num_blocks):
      y = DepthwiseConv(self.filters, (3, 3), kernel_init=kernel_init,
                        name=f"depthwise_{index}")(y)
      y = nn.relu(batch_norm(f"depthwise_bn_{index}")(y))
      y = nn.Conv(self.filters, (1, 1), kernel_init=kernel_init, name=f"pointwise_{index}")(y)
      y = nn.relu(batch_norm(f"pointwise_bn_{index}")(y))
    y = nn.Dropout(self.final_dropout)(y, deterministic=not train)
    y = jnp.mean(y, axis=(1, 2))
    return nn.Dense(self.num_classes, kernel_init=kernel_init, name="fc")(y)
