"""dscnn_streaming: streaming convolutions equal the window network; what a step costs.

The generic contract (train/eval/streaming after a window, flat step graph) is in
tests/models/test_models.py; here the real sizes (49 x 10 MFCC, 64 filters, 4 blocks).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kws_jax import models

STREAM = 49 + 30


def _stream() -> jax.Array:
  """Tones across the 10 bands, quiet with a loud 20-frame "word": the windows along the
  stream hold different parts of it, so their decisions differ."""
  t = jnp.arange(STREAM, dtype=jnp.float32)[:, None]
  k = jnp.arange(10, dtype=jnp.float32)[None]
  level = jnp.where((t >= 40) & (t < 60), 4.0, 0.5)
  tones = level * jnp.sin(0.05 * t * (k + 1) + k)
  return tones[None] + 0.1 * jax.random.normal(jax.random.key(3), (2, STREAM, 10))


@pytest.fixture(scope="module")
def model_and_variables():
  # bn_momentum 0: one training-mode pass sets the running statistics to this data's, so
  # inference-mode BatchNorm normalises (at init the network shrinks its input ~1e6-fold).
  model = models.create("dscnn_streaming", 12, 49, 10, bn_momentum=0.0)
  windows = jnp.stack([_stream()[0, end - 49:end] for end in range(49, STREAM + 1)])
  variables = jax.jit(lambda x: model.init({"params": jax.random.key(1)}, x))(windows[:1])
  variables = {**variables, **model.apply(variables, windows, train=True, mutable=["batch_stats"],
                                          rngs={"dropout": jax.random.key(2)})[1]}
  return model, variables


def test_every_second_hop_equals_the_window_network_ending_there(model_and_variables):
  model, variables = model_and_variables
  assert (model.first_columns, model.pooled_columns, model.last_column_frame) == (20, 12, 47)
  stream_frames = _stream()
  state = model.apply(variables, 2, method="initial_state")
  body = lambda s, f: model.apply(variables, s, f, method="step")  # noqa: E731
  per_hop = np.asarray(jax.jit(lambda s, x: jax.lax.scan(body, s, jnp.swapaxes(x, 0, 1))[1])(
      state, stream_frames))
  window = jax.jit(lambda x: model.apply(variables, x, train=False))
  # The window's last column ends at its frame 47 (frame 48 is beyond its last stride-2
  # column). The stream computes a column at every odd frame (in phase with a 49-frame
  # window from the stream's start), so the windows ending at odd frames (end - 1 odd,
  # `end` exclusive) are computed at hop end - 2 and held at hop end - 1.
  checked = 0
  for end in range(49, stream_frames.shape[1] + 1, 2):
    full = np.asarray(window(stream_frames[:, end - 49:end]))
    np.testing.assert_allclose(per_hop[end - 2], full, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(per_hop[end - 1], full, atol=1e-4, rtol=1e-4)
    checked += 1
  assert checked == 16
  # The logits change: the test compares different decisions, not one repeated.
  assert np.abs(per_hop[-1] - per_hop[48]).max() > 1e-2 * np.abs(per_hop[-1]).max()


def test_a_step_costs_one_column_of_each_layer_every_second_hop(model_and_variables):
  model, variables = model_and_variables
  window_model = models.create("dscnn", 12, 49, 10)
  window_vars = window_model.init(jax.random.key(0), jnp.zeros((1, 49, 10)))
  window = models.window_macs(window_model, window_vars)
  assert window == 2_656_768                                # sc12_real's DS-CNN (BUILD.md)
  per_hop = models.macs_per_second(model, variables, 1.0)
  # A column: 5 x 64 x 40 (first conv) + 4 x 5 x 64 x (9 + 64) (blocks) + the pool's mean and fc.
  column = 5 * 64 * 40 + 4 * 5 * 64 * (9 + 64)
  assert column // 2 <= per_hop <= column // 2 * 1.05
  assert window / per_hop > 45


def test_too_few_frames_is_a_one_line_error():
  model = models.create("dscnn_streaming", 12, 20, 10)
  with pytest.raises(ValueError, match="20 frames leave -2 columns"):
    model.init(jax.random.key(0), jnp.zeros((1, 20, 10)))


def test_context_frames_pad_with_the_clip_edges_and_the_step_sees_them_streamed():
  # 37 clip frames + 6 a side = a 49-frame window, as the bare model has.
  model = models.create("dscnn_streaming", 12, 37, 10, context_frames=6, bn_momentum=0.0)
  bare = models.create("dscnn_streaming", 12, 49, 10, bn_momentum=0.0)
  assert model.window_frames == 49 and model.pooled_columns == bare.pooled_columns
  clips = _stream()[:, 20:57]
  variables = bare.init({"params": jax.random.key(1)}, jnp.zeros((1, 49, 10)))
  padded = jnp.pad(clips, ((0, 0), (6, 6), (0, 0)), mode="edge")
  variables = {**variables, **bare.apply(variables, padded, train=True, mutable=["batch_stats"],
                                         rngs={"dropout": jax.random.key(2)})[1]}
  with_context = np.asarray(model.apply(variables, clips))
  np.testing.assert_allclose(with_context, np.asarray(bare.apply(variables, padded)),
                             atol=1e-5, rtol=1e-5)
  body = lambda s, f: model.apply(variables, s, f, method="step")  # noqa: E731
  state = model.apply(variables, 2, method="initial_state")
  per_hop = jax.jit(lambda s, x: jax.lax.scan(body, s, jnp.swapaxes(x, 0, 1))[1])(state, padded)
  np.testing.assert_allclose(np.asarray(per_hop[-1]), with_context, atol=1e-4, rtol=1e-4)
  with pytest.raises(ValueError, match="context_frames=-1"):
    models.create("dscnn_streaming", 12, 49, 10, context_frames=-1).init(
        jax.random.key(0), jnp.zeros((1, 49, 10)))
