"""Pieces shared by the model families: input checks, ring buffers, initializers.

Layout convention: every model takes features `(B, T, F)` (time major after
batch, like the frontend's output); 2-D convolutions see them as NHWC images
`(B, T, F, 1)` with height = time and width = frequency.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from kws_jax.errors import ConfigError

Array = jax.Array
PyTree = Any


def check_window(model_name: str, x: Array, num_frames: int, num_features: int) -> None:
  """Raises a one-line error when `x` is not a `(B, num_frames, num_features)` window."""
  if x.ndim != 3 or tuple(x.shape[1:]) != (num_frames, num_features):
    raise ConfigError(
        f"{model_name} was built for windows of {num_frames} frames x {num_features} features "
        f"(input shape (batch, {num_frames}, {num_features})) but got shape {tuple(x.shape)}; "
        "create the model with the frontend's num_frames/num_features")


def check_frame(model_name: str, frame: Array, num_features: int) -> None:
  """Raises a one-line error when `frame` is not a `(B, num_features)` feature frame."""
  if frame.ndim != 2 or frame.shape[1] != num_features:
    raise ConfigError(
        f"{model_name}.step takes one feature frame of shape (batch, {num_features}) "
        f"but got shape {tuple(frame.shape)}")


def average_members(member_logits: Array) -> Array:
  """An ensemble's members' logits (B, M, C) -> log of their mean posterior (B, C)."""
  log_probs = jax.nn.log_softmax(member_logits.astype(jnp.float32), axis=-1)
  return jax.nn.logsumexp(log_probs, axis=1) - jnp.log(float(member_logits.shape[1]))


def push_frame(buffer: Array, item: Array) -> Array:
  """Drops the oldest entry of `buffer` (B, N, ...) along axis 1 and appends `item` (B, ...).

  A shift (not a circular write index) keeps the window in time order, so a
  window model can run on the buffer as is; it is plain array ops (no scan),
  which the export needs.
  """
  return jnp.concatenate([buffer[:, 1:], item[:, None]], axis=1)


def update_when_due(due: Array, update, module: nn.Module, held: PyTree) -> PyTree:
  """`update(module, held)` when `due`, else `held`: a branch skips the work on other steps.

  The holding branch returns `held + 0.0` (a computed copy, which nothing folds away: only
  `x + -0.0` is an identity in IEEE arithmetic), not `held` itself, because IREE 3.13
  miscompiles a `lax.cond` whose branch returns its operands: the scanned host chunk of
  the embedding model failed ("ref is null ... hal.buffer_view.create"; with `held`
  itself tests/deploy/test_speech_embedding_export.py still fails) and so did an early,
  unpacked version of the streaming DS-CNN's Cortex-M4 step ("ref type mismatch ...
  copy_buffer"). (The first workaround, zeros and a select, cost the Cortex-M4 a memset and
  a select over the held values every hop.)
  """
  return nn.cond(due, update, lambda _, carry: jax.tree.map(lambda a: a + 0.0, carry),
                 module, held)


class WindowModel(nn.Module):
  """Base for models whose decision needs the whole window (convolutions, SVDF-free CNNs).

  Streaming follows kws_streaming's external-state mode in its simplest form:
  the state is a ring buffer of the last `num_frames` feature frames, and each
  `step` runs the full-window network (inference mode) on it. After `num_frames`
  steps from `initial_state`, `step` returns exactly the full-window logits.
  Subclasses implement `__call__(x, train)`.
  """

  num_classes: int
  num_frames: int
  num_features: int

  def initial_state(self, batch_size: int) -> dict[str, Array]:
    return {"frames": jnp.zeros((batch_size, self.num_frames, self.num_features), jnp.float32)}

  def step(self, state: dict[str, Array], frame: Array) -> tuple[dict[str, Array], Array]:
    check_frame(type(self).__name__, frame, self.num_features)
    frames = push_frame(state["frames"], frame.astype(jnp.float32))
    return {"frames": frames}, self(frames, train=False)


# Initializers matching other frameworks, so that recipes ported from them start
# from the same weight distribution (it matters for reproducing their accuracy).

def torch_uniform(fan_in: int):
  """PyTorch's default Linear/Conv/RNN init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (weights and biases)."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key: Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> Array:
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def torch_dense(features: int, fan_in: int, name: str | None = None) -> nn.Dense:
  """nn.Dense initialized like torch.nn.Linear(fan_in, features)."""
  return nn.Dense(features, kernel_init=torch_uniform(fan_in), bias_init=torch_uniform(fan_in),
                  name=name)


def torch_conv(features: int, kernel_size: tuple[int, int], in_features: int,
               groups: int = 1, use_bias: bool = True, name: str | None = None,
               **kwargs: Any) -> nn.Conv:
  """nn.Conv initialized like torch.nn.Conv2d (fan_in = in/groups * kernel area)."""
  fan_in = in_features // groups * kernel_size[0] * kernel_size[1]
  if groups > 1 and groups == in_features == features:
    return DepthwiseConv(features, tuple(kernel_size), use_bias=use_bias,
                         kernel_init=torch_uniform(fan_in), bias_init=torch_uniform(fan_in),
                         name=name, **kwargs)
  return nn.Conv(features, kernel_size, feature_group_count=groups, use_bias=use_bias,
                 kernel_init=torch_uniform(fan_in), bias_init=torch_uniform(fan_in),
                 name=name, **kwargs)


def tf_truncated_normal(stddev: float):
  """tf.compat.v1.truncated_normal_initializer(stddev): normal cut at 2 stddev."""
  def init(key: Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> Array:
    return stddev * jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype)

  return init


def torch_batch_norm(train: bool, name: str | None = None, axis: int | tuple[int, ...] = -1
                     ) -> nn.BatchNorm:
  """nn.BatchNorm with torch.nn.BatchNorm defaults (momentum 0.1 there = 0.9 here, eps 1e-5)."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, axis=axis,
                      name=name)


class DepthwiseConv(nn.Module):
  """Depthwise 2-D convolution as a sum of shifted, strided slices times per-channel taps.

  Same parameters as `nn.Conv(C, kernel, feature_group_count=C)` (kernel (kh, kw, 1, C),
  bias (C,)) and the same outputs; hand-written because XLA:CPU's grouped convolution
  gradient is ~7x slower than these elementwise ops (measured on DS-CNN's 3x3 layers),
  which made CPU training of depthwise-separable models impractically slow.
  """

  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: Any = "SAME"
  kernel_dilation: tuple[int, int] = (1, 1)
  use_bias: bool = True
  kernel_init: Any = nn.initializers.lecun_normal()
  bias_init: Any = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: Array) -> Array:
    if x.shape[-1] != self.features:
      raise ValueError(f"DepthwiseConv: input has {x.shape[-1]} channels, expected {self.features}")
    kh, kw = self.kernel_size
    dh, dw = self.kernel_dilation
    sh, sw = self.strides
    kernel = self.param("kernel", self.kernel_init, (kh, kw, 1, self.features), jnp.float32)
    x = x.astype(jnp.float32)
    height, width = x.shape[-3], x.shape[-2]
    span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if self.padding == "SAME":
      pads = (same_padding(height, span_h, sh), same_padding(width, span_w, sw))
    elif self.padding == "VALID":
      pads = ((0, 0), (0, 0))
    else:
      pads = tuple(tuple(p) for p in self.padding)
    y = depthwise_conv(x, kernel, tuple(self.strides), pads, tuple(self.kernel_dilation))
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,), jnp.float32)
    return y


def same_padding(size: int, span: int, stride: int) -> tuple[int, int]:
  """TF 'SAME' padding (before, after) of one axis for a kernel spanning `span` inputs."""
  out = -(-size // stride)
  total = max((out - 1) * stride + span - size, 0)
  return total // 2, total - total // 2


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def depthwise_conv(x: Array, kernel: Array, strides: tuple[int, int],
                   pads: tuple[tuple[int, int], tuple[int, int]],
                   dilation: tuple[int, int]) -> Array:
  """`DepthwiseConv`'s arithmetic; a named jit so `models.macs` counts it as a convolution."""
  kh, kw = kernel.shape[:2]
  (dh, dw), (sh, sw) = dilation, strides
  span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
  x = jnp.pad(x, ((0, 0),) * (x.ndim - 3) + tuple(pads) + ((0, 0),))
  out_h = (x.shape[-3] - span_h) // sh + 1
  out_w = (x.shape[-2] - span_w) // sw + 1
  y = 0.0
  for i in range(kh):
    for j in range(kw):
      tap = x[..., i * dh:i * dh + (out_h - 1) * sh + 1:sh,
              j * dw:j * dw + (out_w - 1) * sw + 1:sw, :]
      y = y + tap * kernel[i, j, 0]
  return y
