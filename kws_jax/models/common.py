"""Pieces shared by the model families: input checks, ring buffers, initializers.

Layout convention: every model takes features `(B, T, F)` (time major after
batch, like the frontend's output); 2-D convolutions see them as NHWC images
`(B, T, F, 1)` with height = time and width = frequency.
"""

from __future__ import annotations

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


def push_frame(buffer: Array, item: Array) -> Array:
  """Drops the oldest entry of `buffer` (B, N, ...) along axis 1 and appends `item` (B, ...).

  A shift (not a circular write index) keeps the window in time order, so a
  window model can run on the buffer as is; it is plain array ops (no scan),
  which the export needs.
  """
  return jnp.concatenate([buffer[:, 1:], item[:, None]], axis=1)


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
