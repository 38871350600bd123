"""BC-ResNet (Kim et al., "Broadcasted Residual Learning for Efficient Keyword Spotting", 2021),
following the authors' reference code (Qualcomm-AI-research/bcresnet).

`tau` is the width multiplier (BC-ResNet-tau: base channels int(8 * tau));
parameters with 12 classes: tau=1 ~9.2 k, 1.5 ~18 k, 2 ~27 k, 3 ~54 k, 6 ~188 k.
Layout: stem conv 5x5 (frequency stride 2) -> 4 stages of 2, 2, 4, 4 BC-ResBlocks
(channels 2b, b, 1.5b, 2b, 2.5b; frequency stride 2 at the first block of stages
1 and 2; time dilation 2**stage) -> depthwise 5x5 (no frequency padding) ->
1x1 to 4b -> BN -> relu -> mean -> linear.

A BC-ResBlock: f2 = [1x1 conv-BN-relu when channels change] -> depthwise 3x1
frequency conv -> SubSpectral Norm; f1 = mean over frequency -> depthwise 1x3
dilated time conv -> BN -> swish -> 1x1 conv -> channel dropout; output =
relu(f2 + broadcast(f1) [+ input]).

SubSpectral Norm is real here (BatchNorm over (sub-band, channel) groups), with
5 sub-bands as in the paper; where the frequency size is not a multiple of 5
(inputs other than 40 bins) the largest divisor below `subbands` is used, down
to plain BatchNorm. Time convolutions are non-causal ("same" padding), so
streaming reruns the window on the frame ring buffer (WindowModel).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from kws_jax.models.common import Array, WindowModel, check_window, torch_batch_norm, torch_conv, torch_dense

# Axis names in our NHWC layout: (batch, time, frequency, channel).
_TIME, _FREQ = 1, 2


def _largest_divisor_at_most(n: int, limit: int) -> int:
  return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


class SubSpectralNorm(nn.Module):
  """BatchNorm with separate statistics and affine for each (frequency sub-band, channel)."""

  subbands: int = 5

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    batch, time, freq, channels = x.shape
    groups = _largest_divisor_at_most(freq, self.subbands)
    y = x.reshape(batch, time, groups, freq // groups, channels)
    y = torch_batch_norm(train, name="bn", axis=(2, 4))(y)
    return y.reshape(x.shape)


class BcResBlock(nn.Module):
  """One broadcasted-residual block (see module docstring)."""

  in_channels: int
  out_channels: int
  stage: int
  freq_stride: int
  subbands: int = 5
  dropout_rate: float = 0.1

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    transition = self.in_channels != self.out_channels
    channels = self.out_channels
    y = x
    if transition:
      y = torch_conv(channels, (1, 1), self.in_channels, use_bias=False, name="transition")(y)
      y = nn.relu(torch_batch_norm(train, name="transition_bn")(y))
    # f2: depthwise convolution along frequency (kernel 1 in time, 3 in frequency).
    y = torch_conv(channels, (1, 3), channels, groups=channels, use_bias=False,
                   strides=(1, self.freq_stride), padding=((0, 0), (1, 1)), name="freq_dw")(y)
    aux_2d = SubSpectralNorm(self.subbands, name="ssn")(y, train)
    # f1: frequency-pooled, dilated depthwise convolution along time.
    rate = 2 ** self.stage
    y = jnp.mean(aux_2d, axis=_FREQ, keepdims=True)
    y = torch_conv(channels, (3, 1), channels, groups=channels, use_bias=False,
                   kernel_dilation=(rate, 1), padding=((rate, rate), (0, 0)), name="time_dw")(y)
    y = nn.swish(torch_batch_norm(train, name="time_bn")(y))
    y = torch_conv(channels, (1, 1), channels, use_bias=False, name="pointwise")(y)
    # Dropout2d: drop whole channels.
    y = nn.Dropout(self.dropout_rate, broadcast_dims=(_TIME, _FREQ))(y, deterministic=not train)
    y = y + aux_2d
    if not transition:
      y = y + x
    return nn.relu(y)


class BcResNet(WindowModel):
  """BC-ResNet-tau (see module docstring)."""

  tau: float = 2.0
  subbands: int = 5
  dropout_rate: float = 0.1

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    check_window(type(self).__name__, x, self.num_frames, self.num_features)
    base = int(8 * self.tau)
    channels = [base * 2, base, int(base * 1.5), base * 2, int(base * 2.5), base * 4]
    blocks_per_stage = (2, 2, 4, 4)
    strided_stages = (1, 2)

    y = x.astype(jnp.float32)[..., None]
    y = torch_conv(channels[0], (5, 5), 1, use_bias=False, strides=(1, 2),
                   padding=((2, 2), (2, 2)), name="stem")(y)
    y = nn.relu(torch_batch_norm(train, name="stem_bn")(y))
    for stage, num_blocks in enumerate(blocks_per_stage):
      for index in range(num_blocks):
        stride = 2 if stage in strided_stages and index == 0 else 1
        in_channels = channels[stage] if index == 0 else channels[stage + 1]
        y = BcResBlock(in_channels, channels[stage + 1], stage, stride, self.subbands,
                       self.dropout_rate, name=f"stage{stage}_block{index}")(y, train)
    freq_kernel = min(5, y.shape[_FREQ])
    y = torch_conv(channels[-2], (5, freq_kernel), channels[-2], groups=channels[-2],
                   use_bias=False, padding=((2, 2), (0, 0)), name="head_dw")(y)
    y = torch_conv(channels[-1], (1, 1), channels[-2], use_bias=False, name="head_pw")(y)
    y = nn.relu(torch_batch_norm(train, name="head_bn")(y))
    y = jnp.mean(y, axis=(_TIME, _FREQ))
    return torch_dense(self.num_classes, channels[-1], name="classifier")(y)
