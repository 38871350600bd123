"""DS-CNN with streaming convolutions: each hop computes only the columns it adds.

`dscnn` (MLPerf Tiny's DS-CNN) pads its time axis 'SAME', so every column of every
layer depends on where the window ends and a streaming step has to rerun the whole
window: 2.66 M MACs per 20 ms hop for 49 x 10 MFCC, ~780 M instructions per second of
audio on a Cortex-M4 (BUILD.md). This variant (registered `dscnn_streaming`) is the same
network with a 'valid' time axis (frequency stays 'SAME'), kws_streaming's recipe for
streamable convolutions: then a column depends only on the frames under it, and the step
keeps, per layer, the input columns the next output column needs (kws_streaming's
external state):
  conv 10x4 stride 2   the last 8 frames (+ the 2 new ones -> one column every 2 hops);
  depthwise 3x3        the last 2 columns of its input, per block;
  average pool + fc    the last P columns' logits (P = what the window holds; fc is
                       affine, so the mean of per-column logits is the window's).
So the step costs one column of each layer every 2 hops (~54 k MACs per hop for
64 filters instead of 2.66 M) and, once the window has streamed in, returns exactly the
window network's logits (tests/models/test_dscnn_streaming.py).

Layers and initialisation as in `dscnn` (BatchNorm momentum, Glorot kernels, dropouts).
The pooled window is shorter: (T - 10) // 2 + 1 - 2 x blocks columns (12 for 49 frames
instead of 25), which the accuracy figures in BENCHMARKS.md measure.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from kws_jax.models.common import (
  Array,
  DepthwiseConv,
  check_frame,
  check_window,
  push_frame,
  same_padding,
  update_when_due,
)

FIRST_KERNEL = (10, 4)
FIRST_STRIDE = 2     # in time and frequency, as in MLPerf Tiny's DS-CNN
DEPTHWISE_TIME = 3


class FirstConv(nn.Module):
  """`nn.Conv(features, FIRST_KERNEL, stride FIRST_STRIDE)` on one input channel (same
  parameters); a streaming column (`column=True`: exactly FIRST_KERNEL[0] frames in) is one
  matrix product over its patches.

  Why: IREE compiles the convolution of a 5 x 64 column for the Cortex-M4 into ~13.6
  instructions per MAC (86.9 k per hop), the product over the column's 5 patches of 10 x 4
  (gathered with 4 strided slices) into ~4.6 (29.3 k; BUILD.md section 5).
  """

  features: int
  freq_padding: tuple[int, int]
  kernel_init: Any = nn.initializers.xavier_uniform()

  @nn.compact
  def __call__(self, x: Array, column: bool = False) -> Array:
    kernel = self.param("kernel", self.kernel_init, (*FIRST_KERNEL, 1, self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    x = x.astype(jnp.float32)
    if not column:
      y = jax.lax.conv_general_dilated(x, kernel, (FIRST_STRIDE, FIRST_STRIDE),
                                       ((0, 0), self.freq_padding),
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
      return y + bias
    if x.shape[1] != FIRST_KERNEL[0]:
      raise ValueError(f"FirstConv: a column takes {FIRST_KERNEL[0]} frames, got {x.shape[1]}")
    padded = jnp.pad(x[..., 0], ((0, 0), (0, 0), self.freq_padding))   # (B, time, F + pad)
    out = (padded.shape[2] - FIRST_KERNEL[1]) // FIRST_STRIDE + 1
    taps = jnp.stack([padded[:, :, j:j + (out - 1) * FIRST_STRIDE + 1:FIRST_STRIDE]
                      for j in range(FIRST_KERNEL[1])], axis=-1)        # (B, time, out, 4)
    patches = jnp.transpose(taps, (0, 2, 1, 3)).reshape(x.shape[0], out, -1)
    return (patches @ kernel.reshape(-1, self.features) + bias)[:, None]


class StreamingDsCnn(nn.Module):
  """DS-CNN with a 'valid' time axis and a streaming step (see module docstring)."""

  num_classes: int
  num_frames: int
  num_features: int
  filters: int = 64
  num_blocks: int = 4
  first_dropout: float = 0.2
  final_dropout: float = 0.4
  bn_momentum: float = 0.99
  # Frames a side added to each clip (copies of its first and last frame, i.e. its
  # background): 'valid' layers then also see the clip's edges in mid-window. A streaming
  # step needs none: its window is just this much longer and the stream supplies the frames.
  context_frames: int = 0

  @property
  def window_frames(self) -> int:
    """Frames the network looks at: the clip's and the context on both sides."""
    return self.num_frames + 2 * self.context_frames

  @property
  def first_columns(self) -> int:
    """Columns of the first convolution over the window."""
    return (self.window_frames - FIRST_KERNEL[0]) // FIRST_STRIDE + 1

  @property
  def pooled_columns(self) -> int:
    """Columns left for the average pool after the blocks' 'valid' depthwise convolutions."""
    return self.first_columns - (DEPTHWISE_TIME - 1) * self.num_blocks

  @property
  def last_column_frame(self) -> int:
    """Index of the window's last frame that any column sees (later ones are unused)."""
    return FIRST_KERNEL[0] - 1 + FIRST_STRIDE * (self.first_columns - 1)

  def _check(self) -> None:
    if self.context_frames < 0:
      raise ValueError(f"dscnn_streaming: context_frames={self.context_frames} must be >= 0")
    if self.pooled_columns < 1:
      raise ValueError(f"dscnn_streaming: {self.window_frames} frames leave {self.pooled_columns} "
                       f"columns after the first convolution (10 frames, stride 2) and "
                       f"{self.num_blocks} 'valid' 3x3 blocks; use more frames or fewer blocks")

  @nn.compact
  def __call__(self, x: Array, train: bool = False, cache: tuple | None = None):
    """Window (B, T, F) -> logits; with `cache` (streaming, inference only): x holds the
    2 new frames and the result is (logits of the window ending there, new cache)."""
    self._check()
    if cache is None:
      check_window(type(self).__name__, x, self.num_frames, self.num_features)
      if self.context_frames:
        x = jnp.pad(x, ((0, 0), (self.context_frames,) * 2, (0, 0)), mode="edge")
    kernel_init = nn.initializers.xavier_uniform()

    def batch_norm(name: str) -> nn.BatchNorm:
      return nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, epsilon=1e-3,
                          name=name)

    def with_cache(y: Array, index: int, keep: int) -> Array:
      if cache is None:
        return y
      y = jnp.concatenate([cache[index], y], axis=1)
      new_cache.append(y[:, y.shape[1] - keep:])
      return y

    new_cache: list[Array] = []
    y = x.astype(jnp.float32)[..., None]
    y = with_cache(y, 0, FIRST_KERNEL[0] - FIRST_STRIDE)
    y = FirstConv(self.filters, same_padding(self.num_features, FIRST_KERNEL[1], FIRST_STRIDE),
                  kernel_init=kernel_init, name="conv")(y, column=cache is not None)
    y = nn.relu(batch_norm("conv_bn")(y))
    y = nn.Dropout(self.first_dropout)(y, deterministic=not train)
    for index in range(self.num_blocks):
      y = with_cache(y, 1 + index, DEPTHWISE_TIME - 1)
      y = DepthwiseConv(self.filters, (DEPTHWISE_TIME, 3), padding=((0, 0), (1, 1)),
                        kernel_init=kernel_init, name=f"depthwise_{index}")(y)
      y = nn.relu(batch_norm(f"depthwise_bn_{index}")(y))
      y = nn.Conv(self.filters, (1, 1), kernel_init=kernel_init, name=f"pointwise_{index}")(y)
      y = nn.relu(batch_norm(f"pointwise_bn_{index}")(y))
    y = nn.Dropout(self.final_dropout)(y, deterministic=not train)
    fc = nn.Dense(self.num_classes, kernel_init=kernel_init, name="fc")
    if cache is None:
      return fc(jnp.mean(y, axis=(1, 2)))
    # fc(mean of the columns) = mean of fc(each column) (fc is affine), so the pool's cache
    # is the last pooled_columns columns' logits: 12 x 12 floats instead of 12 x 5 x 64.
    column_logits = fc(jnp.mean(y, axis=2))                              # (B, 1, classes)
    ring = jnp.concatenate([cache[1 + self.num_blocks], column_logits], axis=1)[:, 1:]
    new_cache.append(ring)
    return jnp.mean(ring, axis=1), tuple(new_cache)

  def initial_cache(self, batch_size: int) -> tuple[Array, ...]:
    self._check()
    width = -(-self.num_features // FIRST_STRIDE)
    zeros = lambda *shape: jnp.zeros((batch_size, *shape), jnp.float32)  # noqa: E731
    return (zeros(FIRST_KERNEL[0] - FIRST_STRIDE, self.num_features, 1),
            *[zeros(DEPTHWISE_TIME - 1, width, self.filters) for _ in range(self.num_blocks)],
            zeros(self.pooled_columns, self.num_classes))

  def average_step_macs(self, variables) -> int:
    """MACs of a step on average: one column of every layer every FIRST_STRIDE steps."""
    from kws_jax.models.macs import count_macs
    frames = jax.ShapeDtypeStruct((1, FIRST_STRIDE, self.num_features), jnp.float32)
    cache = jax.eval_shape(lambda: self.initial_cache(1))
    column = count_macs(lambda v, x, c: self.apply(v, x, False, c), variables, frames, cache)
    return column // FIRST_STRIDE

  def initial_state(self, batch_size: int) -> dict[str, Array]:
    # One flat array holds the caches and the logits: each state array costs the call
    # buffer bookkeeping on a microcontroller (BUILD.md section 5).
    return {"frames": jnp.zeros((batch_size, FIRST_STRIDE, self.num_features), jnp.float32),
            "held": _pack((jnp.zeros((batch_size, self.num_classes), jnp.float32),
                           *self.initial_cache(batch_size))),
            "phase": jnp.zeros((), jnp.int32)}

  def step(self, state: dict[str, Array], frame: Array) -> tuple[dict[str, Array], Array]:
    check_frame(type(self).__name__, frame, self.num_features)
    frames = push_frame(state["frames"], frame.astype(jnp.float32))
    phase = (state["phase"] + 1) % FIRST_STRIDE
    # A new column ends every 2 frames, in phase with the window's last column.
    due = phase == (self.last_column_frame + 1) % FIRST_STRIDE
    batch = frame.shape[0]
    shapes = [(batch, self.num_classes)] + [c.shape for c in self.initial_cache(batch)]

    def column(module, held):
      logits, cache = module(frames, train=False, cache=tuple(_unpack(held, shapes)[1:]))
      return _pack((logits.astype(jnp.float32), *cache))

    held = update_when_due(due, column, self, state["held"])
    logits = _unpack(held, shapes)[0]
    return {"frames": frames, "held": held, "phase": phase}, logits


def _pack(arrays) -> Array:
  """(B, ...) arrays -> one (B, N) array."""
  return jnp.concatenate([a.reshape(a.shape[0], -1) for a in arrays], axis=1)


def _unpack(flat: Array, shapes) -> list[Array]:
  sizes = [int(np.prod(shape[1:])) for shape in shapes]
  offsets = np.cumsum([0] + sizes)
  return [flat[:, a:b].reshape(shape) for a, b, shape in zip(offsets[:-1], offsets[1:], shapes)]

