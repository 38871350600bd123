"""Tests for kws_jax.models: registry, every model's full/train/streaming applies, counts."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kws_jax import models
from kws_jax.errors import ConfigError, KwsError

NUM_CLASSES = 5

# Small shapes and widths so each model compiles and runs in about a second.
SMALL = {
    "gru": dict(num_frames=8, num_features=5, hidden_size=6),
    "lstm": dict(num_frames=8, num_features=5, hidden_size=6),
    "tf_conv": dict(num_frames=10, num_features=8, first_filters=4, second_filters=4),
    "tf_low_latency_conv": dict(num_frames=10, num_features=10, filters=4, fc_units=6),
    "tf_low_latency_svdf": dict(num_frames=10, num_features=6, num_units=5, fc_units=6),
    "tf_tiny_conv": dict(num_frames=10, num_features=8),
    "torchaudio_cnn": dict(num_frames=41, num_features=18, first_filters=4, second_filters=3,
                           fc_units=8),
    "dscnn": dict(num_frames=12, num_features=6, filters=8),
    "dscnn_streaming": dict(num_frames=24, num_features=6, filters=8, num_blocks=2),
    "bcresnet": dict(num_frames=12, num_features=40, tau=0.5),
}


# A pretrained model has the shapes of its weights (no small variant); its own tests are
# tests/models/test_speech_embedding.py (parity with onnxruntime, streaming = full window).
PRETRAINED = ("speech_embedding",)


def test_every_registered_model_has_a_small_test_config():
  assert sorted([*SMALL, *PRETRAINED]) == models.list_models()


def _build(name: str):
  kwargs = dict(SMALL[name])
  frames, features = kwargs.pop("num_frames"), kwargs.pop("num_features")
  model = models.create(name, NUM_CLASSES, frames, features, **kwargs)
  # Jitted: eager init compiles each random op per parameter shape, which is slow.
  init = jax.jit(lambda rngs, x: model.init(rngs, x, train=False))
  variables = init({"params": jax.random.key(0), "dropout": jax.random.key(1)},
                   jnp.zeros((1, frames, features)))
  return model, variables


def _window(model, batch=3, seed=7):
  """Noise with a different level and offset per example (i.i.d. noise of equal level looks
  the same to globally pooled models)."""
  noise = jax.random.normal(jax.random.key(seed), (batch, model.num_frames, model.num_features))
  level = jnp.arange(1, batch + 1, dtype=jnp.float32)[:, None, None]
  return noise * level + (level - 2.0)


def _train_fn(model):
  """The contract's training call, for models with and without BatchNorm alike (jitted)."""
  return jax.jit(lambda v, x, k: model.apply(v, x, train=True, rngs={"dropout": k},
                                             mutable=["batch_stats"]))


def _assert_close(actual, expected):
  """Float tolerance relative to the output's scale (TF-initialized models output ~1e-9)."""
  scale = float(np.max(np.abs(expected)))
  np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * scale)


def _differ(a, b):
  scale = float(np.max(np.abs(b)))
  return not np.allclose(a, b, rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_model_full_train_and_streaming(name):
  model, variables = _build(name)
  x = _window(model)

  evaluate = jax.jit(lambda v, x: model.apply(v, x, train=False))
  train_apply = _train_fn(model)

  # Training mode: runs with a dropout key; BatchNorm models return updated running stats.
  train_logits, updates = train_apply(variables, x, jax.random.key(3))
  assert train_logits.shape == (3, NUM_CLASSES)
  assert np.all(np.isfinite(train_logits))
  if "batch_stats" in variables:
    before = jax.tree_util.tree_leaves(variables["batch_stats"])
    after = jax.tree_util.tree_leaves(updates["batch_stats"])
    assert any(not np.allclose(a, b) for a, b in zip(before, after))
    # Let the running statistics converge to this data's, so that inference-mode BatchNorm is
    # non-trivial (at init it is nearly the identity and deep nets shrink their input).
    for _ in range(40):
      variables = {**variables, **train_apply(variables, x, jax.random.key(3))[1]}
  else:
    assert updates == {}
  dropout_models = {"tf_conv", "tf_low_latency_conv", "tf_low_latency_svdf", "tf_tiny_conv",
                    "dscnn", "dscnn_streaming", "bcresnet"}
  if name in dropout_models:
    other, _ = train_apply(variables, x, jax.random.key(4))
    again, _ = train_apply(variables, x, jax.random.key(4))
    assert _differ(train_apply(variables, x, jax.random.key(3))[0], other), \
        "dropout should depend on the rng"
    np.testing.assert_array_equal(other, again)

  logits = evaluate(variables, x)
  assert logits.shape == (3, NUM_CLASSES)
  assert np.all(np.isfinite(logits))
  # Outputs depend on the input: different windows give different logits.
  assert _differ(logits[0], logits[1]) and _differ(logits[1], logits[2])

  # Streaming: scanning `step` over the window from the initial state gives the full logits.
  state = model.apply(variables, x.shape[0], method="initial_state")

  @jax.jit
  def stream(variables, state, frames):
    def body(state, frame):
      return model.apply(variables, state, frame, method="step")
    return jax.lax.scan(body, state, jnp.swapaxes(frames, 0, 1))

  final_state, per_step = stream(variables, state, x)
  _assert_close(per_step[-1], logits)
  assert jax.tree_util.tree_structure(final_state) == jax.tree_util.tree_structure(state)
  # Before the window is full, the output is a different (partial-window) decision.
  assert _differ(per_step[-2], logits)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_step_is_a_flat_graph(name):
  """Export needs the step without loops: no scan/while anywhere in its jaxpr."""
  model, variables = _build(name)
  state = model.apply(variables, 1, method="initial_state")
  frame = jnp.zeros((1, model.num_features))
  jaxpr = jax.make_jaxpr(lambda v, s, f: model.apply(v, s, f, method="step"))(
      variables, state, frame)

  def primitives(jaxpr):
    for eqn in jaxpr.eqns:
      yield eqn.primitive.name
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        yield from primitives(sub)

  names = set(primitives(jaxpr.jaxpr))
  assert not names & {"scan", "while"}, names


# --- GRU / LSTM parity with a plain NumPy loop of torch's equations ------------------------


def _sigmoid(v):
  return 1.0 / (1.0 + np.exp(-v))


def _log_softmax(v):
  v = v - v.max(axis=-1, keepdims=True)
  return v - np.log(np.exp(v).sum(axis=-1, keepdims=True))


def _numpy_recurrent_spotter(params, x, cell, num_layers, hidden):
  """torch.nn.GRU / LSTM equations per gate, frame by frame, in float64."""
  x = np.asarray(x, np.float64)
  batch, frames, _ = x.shape
  seq = x
  for layer in range(num_layers):
    p = {k: np.asarray(v, np.float64) for k, v in params[f"layer_{layer}"].items()}
    gate = lambda w, g: w[..., g * hidden:(g + 1) * hidden]  # noqa: E731
    h = np.zeros((batch, hidden))
    c = np.zeros((batch, hidden))
    outputs = []
    for t in range(frames):
      xt = seq[:, t]
      wi, bi, wh, bh = p["input_kernel"], p["input_bias"], p["recurrent_kernel"], p["recurrent_bias"]
      if cell == "gru":
        r = _sigmoid(xt @ gate(wi, 0) + gate(bi, 0) + h @ gate(wh, 0) + gate(bh, 0))
        z = _sigmoid(xt @ gate(wi, 1) + gate(bi, 1) + h @ gate(wh, 1) + gate(bh, 1))
        n = np.tanh(xt @ gate(wi, 2) + gate(bi, 2) + r * (h @ gate(wh, 2) + gate(bh, 2)))
        h = (1 - z) * n + z * h
      else:
        pre = [xt @ gate(wi, g) + gate(bi, g) + h @ gate(wh, g) + gate(bh, g) for g in range(4)]
        i, f, g, o = _sigmoid(pre[0]), _sigmoid(pre[1]), np.tanh(pre[2]), _sigmoid(pre[3])
        c = f * c + i * g
        h = o * np.tanh(c)
      outputs.append(h)
    seq = np.stack(outputs, axis=1)
  head = {k: np.asarray(v, np.float64) for k, v in params["head"].items()}
  return _log_softmax(seq @ head["kernel"] + head["bias"]).mean(axis=1)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_recurrent_matches_numpy_loop(cell):
  model = models.create(cell, 4, num_frames=7, num_features=3, hidden_size=5, num_layers=3)
  variables = model.init(jax.random.key(11), jnp.zeros((1, 7, 3)))
  x = 2.0 * jax.random.normal(jax.random.key(12), (2, 7, 3))
  expected = _numpy_recurrent_spotter(variables["params"], x, cell, 3, 5)
  np.testing.assert_allclose(model.apply(variables, x), expected, rtol=1e-5, atol=1e-5)


def test_recurrent_parameter_layout_is_torch_and_ell():
  """2 x GRU128 on 40 features: torch.nn.GRU counts 3H(in+H) + 6H per layer, plus the Linear."""
  model = models.create("gru", 12, num_frames=101, num_features=40)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 101, 40))))
  hidden = 128
  per_layer = lambda n_in: 3 * hidden * (n_in + hidden) + 6 * hidden  # noqa: E731
  assert models.count_params(shapes) == per_layer(40) + per_layer(hidden) + hidden * 12 + 12
  assert set(shapes["params"]) == {"layer_0", "layer_1", "head"}


def test_recurrent_stream_keeps_running_after_the_window():
  """After the window, the output is the mean of the last T per-frame log-probabilities."""
  model = models.create("gru", 3, num_frames=4, num_features=2, hidden_size=4)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 4, 2)))
  x = jax.random.normal(jax.random.key(1), (1, 9, 2))
  state = model.apply(variables, 1, method="initial_state")
  outputs = []
  for t in range(9):
    state, out = model.apply(variables, state, x[:, t], method="step")
    outputs.append(out)
  np.testing.assert_allclose(outputs[-1], state["log_probs"].mean(axis=1), rtol=1e-6)
  np.testing.assert_allclose(np.exp(state["log_probs"]).sum(-1), 1.0, rtol=1e-5)
  # The hidden state carries context from before the window: not a fresh window's output.
  assert not np.allclose(outputs[-1], model.apply(variables, x[:, -4:]), atol=1e-6)


# --- parameter counts of the published configurations --------------------------------------


def _param_count(name, num_classes, frames, features, **hparams):
  model = models.create(name, num_classes, frames, features, **hparams)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, frames, features))))
  return models.count_params(shapes["params"])


def test_torchaudio_cnn_has_the_tutorials_parameter_count():
  assert _param_count("torchaudio_cnn", 11, 101, 64) == 213_891


def test_published_sizes():
  # DS-CNN (MLPerf Tiny): conv 10x4x64 + 4 x (dw 3x3 + pw 64x64) with BN, linear; by hand:
  bn = 2 * 64
  expected = (10 * 4 * 64 + 64 + bn) + 4 * (9 * 64 + 64 + bn + 64 * 64 + 64 + bn) + 64 * 12 + 12
  assert _param_count("dscnn", 12, 49, 10) == expected == 23_756
  # TF cnn-trad-fpool3 on 98 x 40: two convs and a linear layer on the 49 x 20 x 64 pooled map.
  assert _param_count("tf_conv", 12, 98, 40) == (
      20 * 8 * 64 + 64 + 10 * 4 * 64 * 64 + 64 + 49 * 20 * 64 * 12 + 12)
  # TF tiny_conv on 49 x 40: 10x8x8 conv with stride 2 -> 25 x 20 x 8.
  assert _param_count("tf_tiny_conv", 12, 49, 40) == 10 * 8 * 8 + 8 + 25 * 20 * 8 * 12 + 12
  # BC-ResNet: paper sizes 9.2 k (tau 1), 26.8 k (tau 2), 54 k (tau 3); ours adds SSN's
  # per-sub-band affine, within 3 %.
  for tau, paper in ((1, 9_200), (2, 26_800), (3, 54_200)):
    assert abs(_param_count("bcresnet", 12, 101, 40, tau=tau) / paper - 1) < 0.03


# --- MACs ------------------------------------------------------------------------------------


def test_dscnn_macs_match_hand_count():
  model = models.create("dscnn", 12, 49, 10)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 49, 10)))
  out = 25 * 5  # SAME conv with stride 2 on 49 x 10
  expected = out * 64 * 10 * 4 + 4 * (out * 64 * 9 + out * 64 * 64) + 64 * 12
  assert models.window_macs(model, variables) == expected == 2_656_768
  # A window model reruns the window each hop: 100 hops per second at 10 ms.
  assert models.macs_per_second(model, variables, 0.01) == 100 * expected


def test_gru_macs_count_every_frame():
  model = models.create("gru", 12, num_frames=101, num_features=40, hidden_size=16)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 101, 40)))
  per_frame = 3 * 16 * 40 + 3 * 16 * 16 + 3 * 16 * 16 + 3 * 16 * 16 + 16 * 12
  assert models.window_macs(model, variables) == 101 * per_frame
  assert models.step_macs(model, variables) == per_frame
  assert models.macs_per_second(model, variables, 0.02) == 50 * per_frame


def test_tiny_conv_macs_include_same_padding():
  model = models.create("tf_tiny_conv", 12, 49, 40)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 49, 40)))
  x = jnp.zeros((1, 49, 40))
  ours = models.count_macs(lambda v, x: model.apply(v, x), variables, x)
  # 25 x 20 outputs x 8 filters x a full 10 x 8 kernel (zero padding counted), then the dense head.
  assert ours == 25 * 20 * 8 * 10 * 8 + 25 * 20 * 8 * 12


def test_macs_agree_with_xla_cost_analysis_on_a_loop_free_function():
  # XLA skips multiplications by SAME padding, so compare on VALID convolutions only.
  def conv_relu_dense(kernel, dense, x):
    y = jax.lax.conv_general_dilated(x, kernel, (2, 2), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jax.nn.relu(y).reshape(1, -1) @ dense
  x = jnp.zeros((1, 49, 40, 1))
  kernel = jnp.zeros((10, 8, 1, 8))
  dense = jnp.zeros((20 * 17 * 8, 12))
  xla_macs = jax.jit(conv_relu_dense).lower(kernel, dense, x).cost_analysis()["flops"] / 2
  ours = models.count_macs(conv_relu_dense, kernel, dense, x)
  assert ours == 20 * 17 * 8 * 10 * 8 + 20 * 17 * 8 * 12
  # XLA also counts the relu (elementwise): a few percent more, never less.
  assert ours <= xla_macs <= 1.05 * ours


def test_macs_rejects_non_positive_hop():
  model, variables = _build("tf_tiny_conv")
  with pytest.raises(ConfigError, match="hop_seconds"):
    models.macs_per_second(model, variables, 0.0)


# --- registry ----------------------------------------------------------------------------------


def test_unknown_model_lists_valid_names():
  with pytest.raises(KwsError) as info:
    models.create("resnet9000", 12, 98, 40)
  message = str(info.value)
  assert "resnet9000" in message
  for name in models.list_models():
    assert name in message


def test_unknown_hparam_lists_valid_ones():
  with pytest.raises(ConfigError) as info:
    models.create("gru", 12, 98, 40, hidden=64)
  message = str(info.value)
  assert "hidden" in message and "hidden_size=128" in message and "num_layers=2" in message


def test_default_hparams_and_shape_checks():
  assert models.default_hparams("dscnn")["filters"] == 64
  assert "num_frames" not in models.default_hparams("gru")
  assert models.create("gru", 3, 4, 2, hidden_size=4).hidden_size == 4
  with pytest.raises(ConfigError, match="num_frames"):
    models.create("gru", 3, 0, 2)


def test_wrong_input_shape_is_a_clear_error():
  model, variables = _build("dscnn")
  with pytest.raises(ConfigError, match="12 frames x 6 features"):
    model.apply(variables, jnp.zeros((1, 13, 6)))
  state = model.apply(variables, 1, method="initial_state")
  with pytest.raises(ConfigError, match=r"\(batch, 6\)"):
    model.apply(variables, state, jnp.zeros((1, 7)), method="step")


def test_count_params_accepts_variables_or_params():
  model, variables = _build("dscnn")
  from_params = models.count_params(variables["params"])
  assert models.count_params(variables) == from_params
  # Only trainable parameters: BatchNorm running statistics are not counted.
  everything = sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(variables))
  assert from_params < everything


def test_same_seed_same_weights():
  # DS-CNN, not BC-ResNet: each _build compiles its init afresh and BC-ResNet's takes ~25 s.
  a = _build("dscnn")[1]
  b = _build("dscnn")[1]
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(x, y)


def _stream_last(model, variables, x):
  """Logits after scanning `step` over the window x (jitted: eager steps dispatch slowly)."""
  @jax.jit
  def stream(variables, frames):
    state = model.apply(variables, frames.shape[0], method="initial_state")
    body = lambda state, frame: model.apply(variables, state, frame, method="step")
    return jax.lax.scan(body, state, jnp.swapaxes(frames, 0, 1))[1][-1]
  return np.asarray(stream(variables, x))


def test_dscnn_ensemble_averages_independent_members():
  members = 3
  small = dict(SMALL["dscnn"])
  frames, features = small.pop("num_frames"), small.pop("num_features")
  ensemble = models.create("dscnn", NUM_CLASSES, frames, features, members=members, **small)
  single = models.create("dscnn", NUM_CLASSES, frames, features, **small)
  variables = jax.jit(lambda k: ensemble.init(k, jnp.zeros((1, frames, features))))(
      jax.random.key(0))
  one = models.count_params(jax.eval_shape(
      lambda: single.init(jax.random.key(0), jnp.zeros((1, frames, features)))))
  assert models.count_params(variables) == members * one
  x = _window(ensemble)
  member_variables = [{col: tree[f"member_{i}"] for col, tree in variables.items()}
                      for i in range(members)]
  # Members start from different weights (else averaging them would gain nothing).
  assert _differ(np.asarray(member_variables[0]["params"]["conv"]["kernel"]),
                 np.asarray(member_variables[1]["params"]["conv"]["kernel"]))
  apply_single = jax.jit(lambda v, x: single.apply(v, x, train=False))
  member_logits = np.stack([np.asarray(apply_single(v, x)) for v in member_variables], axis=1)
  # Training: every member's logits, each computed exactly as the single model would.
  train_logits, _ = _train_fn(ensemble)(variables, x, jax.random.key(3))
  assert train_logits.shape == (3, members, NUM_CLASSES)
  # Inference: log of the mean posterior (NumPy reference).
  probs = np.exp(member_logits - member_logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  expected = np.log(probs.mean(axis=1))
  _assert_close(np.asarray(jax.jit(lambda v, x: ensemble.apply(v, x, train=False))(variables, x)),
                expected)
  # Streaming over the window ends at the same averaged posterior.
  _assert_close(_stream_last(ensemble, variables, x), expected)


def test_dscnn_input_mean_norm_ignores_a_constant_per_feature_offset():
  small = dict(SMALL["dscnn"])
  frames, features = small.pop("num_frames"), small.pop("num_features")
  model = models.create("dscnn", NUM_CLASSES, frames, features, input_norm="mean", **small)
  plain = models.create("dscnn", NUM_CLASSES, frames, features, **small)
  variables = jax.jit(lambda k: model.init(k, jnp.zeros((1, frames, features))))(
      jax.random.key(0))
  x = _window(model)
  offset = jnp.linspace(-3.0, 5.0, features)[None, None, :]  # e.g. another microphone's gain
  apply = jax.jit(lambda m_x: model.apply(variables, m_x, train=False))
  _assert_close(np.asarray(apply(x + offset)), np.asarray(apply(x)))
  # The same weights without the normalisation see the offset, and the mean-free input alike.
  apply_plain = jax.jit(lambda m_x: plain.apply(variables, m_x, train=False))
  assert _differ(np.asarray(apply_plain(x + offset)), np.asarray(apply_plain(x)))
  _assert_close(np.asarray(apply(x)),
                np.asarray(apply_plain(x - x.mean(axis=1, keepdims=True))))
  # Streaming still ends at the full-window logits (the step reruns the whole window).
  _assert_close(_stream_last(model, variables, x), np.asarray(apply(x)))
  with pytest.raises(ValueError, match="input_norm"):
    jax.eval_shape(lambda: models.create("dscnn", NUM_CLASSES, frames, features,
                                         input_norm="max", **small).init(
        jax.random.key(0), jnp.zeros((1, frames, features))))
