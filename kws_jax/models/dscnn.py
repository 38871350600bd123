"""MLPerf Tiny's keyword-spotting DS-CNN (mlcommons/tiny, benchmark/training/keyword_spotting).

conv 10x4 x64 stride 2 SAME -> BN -> relu -> dropout 0.2, then 4 depthwise-
separable blocks (depthwise 3x3 SAME -> BN -> relu -> pointwise 1x1 x64 -> BN ->
relu), dropout 0.4, global average pool, linear. About 23.8 k parameters on
49 x 10 MFCC with 12 classes (2.66 M MACs per window). Keras defaults: Glorot
uniform kernels, zero biases, BatchNorm momentum 0.99 and epsilon 1e-3.

`members=M > 1` makes an ensemble of M such networks in one model (one set of
variables, one exported step): with train=True it returns every member's logits
(B, M, C), so the trainer gives each member its own loss (independently trained
members disagree more, which is what makes averaging them pay); at inference it
returns log(mean of the members' softmax), whose softmax is the averaged posterior.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp

from kws_jax.models.common import Array, DepthwiseConv, WindowModel, average_members, check_window


class DsCnn(WindowModel):
  """Depthwise-separable CNN (see module docstring)."""

  filters: int = 64
  num_blocks: int = 4
  first_dropout: float = 0.2
  final_dropout: float = 0.4
  bn_momentum: float = 0.99  # Keras default; 0.9 settles the running statistics in fewer steps
  members: int = 1  # > 1: an ensemble of that many DS-CNNs (see the module docstring)
  # "mean": subtract each feature's mean over the window first (cepstral mean normalisation:
  # removes a speaker's microphone and level, which are constant over a clip).
  input_norm: str = "none"

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    check_window(type(self).__name__, x, self.num_frames, self.num_features)
    if self.members > 1:
      # Every hyperparameter of this model but the member count (and Flax's parent/name).
      fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.init and f.name not in ("parent", "name", "members")}
      logits = jnp.stack([DsCnn(**fields, name=f"member_{index}")(x, train)
                          for index in range(self.members)], axis=1)
      return logits if train else average_members(logits)
    if self.members < 1:
      raise ValueError(f"DsCnn members must be >= 1, got {self.members}")

    def batch_norm(name: str) -> nn.BatchNorm:
      return nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, epsilon=1e-3,
                          name=name)

    kernel_init = nn.initializers.xavier_uniform()
    y = x.astype(jnp.float32)
    if self.input_norm == "mean":
      y = y - jnp.mean(y, axis=1, keepdims=True)
    elif self.input_norm != "none":
      raise ValueError(f"DsCnn input_norm must be 'none' or 'mean', got {self.input_norm!r}")
    y = y[..., None]
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
