"""The TensorFlow speech_commands example's models (tensorflow/examples/speech_commands/models.py).

Shapes, strides, padding, dropout placement and initializers (truncated normal
stddev 0.01 weights, zero biases) follow the example; its train.py feeds
dropout rate 0.5, our default. Inputs are the example's fingerprint reshaped to
(time, frequency, 1), i.e. our (B, T, F) window with a channel axis.

- `tf_conv` (cnn-trad-fpool3): conv 20x8 x64 SAME, relu, dropout, maxpool 2x2,
  conv 10x4 x64 SAME, relu, dropout, flatten, linear.
- `tf_low_latency_conv` (cnn-one-fstride4): conv T x 8 x186 VALID (spans the
  window), relu, dropout, linear 128, dropout, linear 128, dropout, linear
  (no nonlinearity between the linear layers, as in the example).
- `tf_low_latency_svdf`: rank-2 SVDF with 1280 units, relu, dropout, linear 256,
  dropout, linear 256, dropout, linear. Streams incrementally: the state is the
  (filters x T) memory of feature-filter activations, as in the example's
  runtime memory; each step filters one new frame.
- `tf_tiny_conv`: conv 10x8 x8 stride 2 SAME, relu, dropout, linear.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from kws_jax.models.common import (
  Array,
  WindowModel,
  check_frame,
  check_window,
  push_frame,
  tf_truncated_normal,
)

_W_INIT = tf_truncated_normal(0.01)
_B_INIT = nn.initializers.zeros


def _conv(features: int, kernel: tuple[int, int], padding: str, strides=(1, 1),
          name: str | None = None) -> nn.Conv:
  return nn.Conv(features, kernel, strides=strides, padding=padding, kernel_init=_W_INIT,
                 bias_init=_B_INIT, name=name)


def _dense(features: int, name: str | None = None) -> nn.Dense:
  return nn.Dense(features, kernel_init=_W_INIT, bias_init=_B_INIT, name=name)


class TfConv(WindowModel):
  """cnn-trad-fpool3 (`conv` in the TF example)."""

  dropout_rate: float = 0.5
  first_filters: int = 64
  second_filters: int = 64

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    check_window(type(self).__name__, x, self.num_frames, self.num_features)
    y = x.astype(jnp.float32)[..., None]
    y = nn.relu(_conv(self.first_filters, (20, 8), "SAME", name="first_conv")(y))
    y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
    y = nn.max_pool(y, (2, 2), strides=(2, 2), padding="SAME")
    y = nn.relu(_conv(self.second_filters, (10, 4), "SAME", name="second_conv")(y))
    y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
    return _dense(self.num_classes, name="final_fc")(y.reshape(y.shape[0], -1))


class TfLowLatencyConv(WindowModel):
  """cnn-one-fstride4 (`low_latency_conv` in the TF example)."""

  dropout_rate: float = 0.5
  filters: int = 186
  fc_units: int = 128

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    check_window(type(self).__name__, x, self.num_frames, self.num_features)
    y = x.astype(jnp.float32)[..., None]
    y = nn.relu(_conv(self.filters, (self.num_frames, 8), "VALID", name="first_conv")(y))
    y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
    y = _dense(self.fc_units, name="first_fc")(y.reshape(y.shape[0], -1))
    y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
    y = _dense(self.fc_units, name="second_fc")(y)
    y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
    return _dense(self.num_classes, name="final_fc")(y)


class TfTinyConv(WindowModel):
  """`tiny_conv` in the TF example (microcontroller-sized)."""

  dropout_rate: float = 0.5
  filters: int = 8

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    check_window(type(self).__name__, x, self.num_frames, self.num_features)
    y = x.astype(jnp.float32)[..., None]
    y = nn.relu(_conv(self.filters, (10, 8), "SAME", strides=(2, 2), name="first_conv")(y))
    y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
    return _dense(self.num_classes, name="final_fc")(y.reshape(y.shape[0], -1))


class TfLowLatencySvdf(nn.Module):
  """`low_latency_svdf` in the TF example; streams incrementally (see module docstring)."""

  num_classes: int
  num_frames: int
  num_features: int
  dropout_rate: float = 0.5
  rank: int = 2
  num_units: int = 1280
  fc_units: int = 256

  def setup(self):
    num_filters = self.rank * self.num_units
    self.weights_frequency = self.param("weights_frequency", _W_INIT,
                                        (self.num_features, num_filters))
    # Column t filters the t-th oldest frame of the window (TF layout: oldest at index 0).
    self.weights_time = self.param("weights_time", _W_INIT, (num_filters, self.num_frames))
    self.bias = self.param("bias", _B_INIT, (self.num_units,))
    self.first_fc = _dense(self.fc_units, name="first_fc")
    self.second_fc = _dense(self.fc_units, name="second_fc")
    self.final_fc = _dense(self.num_classes, name="final_fc")
    self.dropout = nn.Dropout(self.dropout_rate)

  def _head(self, memory: Array, train: bool) -> Array:
    """memory (B, filters, T) of feature-filter activations -> logits."""
    outputs = jnp.einsum("bkt,kt->bk", memory, self.weights_time)
    units = outputs.reshape(outputs.shape[0], self.num_units, self.rank).sum(axis=-1)
    y = nn.relu(units + self.bias)
    y = self.dropout(y, deterministic=not train)
    y = self.dropout(self.first_fc(y), deterministic=not train)
    y = self.dropout(self.second_fc(y), deterministic=not train)
    return self.final_fc(y)

  def __call__(self, x: Array, train: bool = False) -> Array:
    check_window(type(self).__name__, x, self.num_frames, self.num_features)
    activations = x.astype(jnp.float32) @ self.weights_frequency  # (B, T, filters)
    return self._head(jnp.swapaxes(activations, 1, 2), train)

  def initial_state(self, batch_size: int) -> dict[str, Array]:
    return {"memory": jnp.zeros((batch_size, self.num_frames, self.rank * self.num_units),
                                jnp.float32)}

  def step(self, state: dict[str, Array], frame: Array) -> tuple[dict[str, Array], Array]:
    check_frame(type(self).__name__, frame, self.num_features)
    memory = push_frame(state["memory"], frame.astype(jnp.float32) @ self.weights_frequency)
    return {"memory": memory}, self._head(jnp.swapaxes(memory, 1, 2), train=False)
