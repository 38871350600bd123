"""int8 quantization: per-channel weights, int32 products checked against NumPy integer math."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from export_helpers import tiny_trained

from kws_jax.deploy import int8, iree_compile, iree_runner
from kws_jax.deploy import stablehlo_export as export
from kws_jax.deploy import streaming_step as streaming


def test_per_channel_scales_and_rounding():
  rng = np.random.default_rng(0)
  w = rng.normal(size=(24, 6)).astype(np.float32) * np.array([1, 10, 0.1, 3, 0, 7], np.float32)
  q, scale = int8.quantize_per_channel(w, contract=(0,))
  assert q.dtype == np.int8 and scale.shape == (6,)
  np.testing.assert_allclose(scale[[0, 1, 2, 3, 5]], np.abs(w).max(axis=0)[[0, 1, 2, 3, 5]] / 127)
  assert scale[4] == 1.0 and not q[:, 4].any()  # An all-zero channel stays zero.
  assert np.abs(q).max() == 127
  # Each weight is within half a step of its channel's grid.
  assert np.all(np.abs(q * scale - w) <= scale / 2 + 1e-7)


def test_quantized_dot_is_integer_arithmetic():
  """y = (x_q . W_q in int32) * s_x * s_W, recomputed independently with NumPy integers."""
  rng = np.random.default_rng(1)
  x = rng.normal(size=(3, 20)).astype(np.float32)
  w = rng.normal(size=(20, 5)).astype(np.float32)
  q, s_w = int8.quantize_per_channel(w, contract=(0,))
  dims = (((1,), (0,)), ((), ()))
  got = np.asarray(int8.quantized_dot(jnp.asarray(x), jnp.asarray(q), jnp.asarray(s_w), dims,
                                          True, jnp.float32))
  s_x = np.abs(x).max(axis=1) / 127
  x_q = np.clip(np.round(x / s_x[:, None]), -127, 127).astype(np.int32)
  want = (x_q @ q.astype(np.int32)).astype(np.float32) * s_x[:, None] * s_w[None, :]
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(got, x @ w, atol=0.05 * np.abs(x @ w).max())
  # The weight on the left: y = W^T-side product, scales along the other axis.
  got_left = np.asarray(int8.quantized_dot(jnp.asarray(x.T), jnp.asarray(q), jnp.asarray(s_w),
                                               (((0,), (0,)), ((), ())), False, jnp.float32))
  np.testing.assert_allclose(got_left, want.T, rtol=1e-6, atol=1e-6)


def test_quantized_conv_is_integer_arithmetic():
  """conv(x, K) = (x_q * K_q in int32) * s_x * s_K per example and output feature, recomputed
  with a NumPy integer loop."""
  rng = np.random.default_rng(2)
  x = rng.normal(size=(2, 9, 7, 3)).astype(np.float32)       # NHWC
  k = rng.normal(size=(3, 2, 3, 4)).astype(np.float32)       # HWIO
  k[..., 2] *= 10.0                                           # one loud output feature
  dims = jax.lax.conv_dimension_numbers(x.shape, k.shape, ("NHWC", "HWIO", "NHWC"))

  def conv(a, b):
    return jax.lax.conv_general_dilated(a, b, (1, 2), "VALID", dimension_numbers=dims)

  eqn = jax.make_jaxpr(conv)(x, k).jaxpr.eqns[0]
  q, s_k = int8.quantize_per_channel(k, contract=(0, 1, 2))
  got = np.asarray(int8.quantized_conv(jnp.asarray(x), jnp.asarray(q), jnp.asarray(s_k),
                                       eqn.params, jnp.float32))
  s_x = np.abs(x).reshape(2, -1).max(axis=1) / 127
  x_q = np.clip(np.round(x / s_x[:, None, None, None]), -127, 127).astype(np.int64)
  out_h, out_w = 9 - 3 + 1, (7 - 2) // 2 + 1
  want = np.zeros((2, out_h, out_w, 4), np.int64)
  for i in range(out_h):
    for j in range(out_w):
      patch = x_q[:, i:i + 3, 2 * j:2 * j + 2, :]
      want[:, i, j, :] = np.einsum("nhwc,hwco->no", patch, q.astype(np.int64))
  want = want.astype(np.float32) * s_x[:, None, None, None] * s_k
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  ref = np.asarray(conv(x, k))
  np.testing.assert_allclose(got, ref, atol=0.05 * np.abs(ref).max())


def test_conv_model_kernels_are_quantized(test_clip):
  """The TF CNN's convolution kernels become int8 too, and its step stays close to float."""
  trained = tiny_trained(model="tf_conv")
  step = streaming.make_step(trained, vad=False, smoothing=False)
  qstep, report = int8.quantize_step(step)
  conv_kernels = sorted(jax.tree_util.keystr(p, simple=True, separator="/")
                        for p, v in jax.tree_util.tree_flatten_with_path(
                            trained.variables["params"])[0] if np.ndim(v) == 4)
  quantized = {k.removeprefix("params/") for k in report["quantized"]}
  assert conv_kernels and set(conv_kernels) <= quantized
  assert not any(np.ndim(v) == 4 for v in jax.tree.leaves(qstep.params["float"]))
  _, ref = step.run(test_clip)
  _, got = qstep.run(test_clip)
  diff = np.abs(np.asarray(got["scores"]) - np.asarray(ref["scores"])).max()
  assert 0 < diff < 0.02, diff


def test_weights_inside_a_cond_are_quantized(test_clip):
  """dscnn_streaming computes its column under lax.cond every second hop: the products in
  the branch (the first convolution's patch product, pointwise kernels, head) become int8,
  the branch that holds the state still runs, and the step stays close to float."""
  trained = tiny_trained("tf_speech_commands", "dscnn_streaming",
                         features={"hop_size": 320, "num_mfcc": 10}, filters=8, num_blocks=2)
  step = streaming.make_step(trained, vad=False, smoothing=False)
  qstep, report = int8.quantize_step(step)
  assert {"params/conv/kernel", "params/pointwise_0/kernel", "params/pointwise_1/kernel",
          "params/fc/kernel"} <= set(report["quantized"])
  _, ref = step.run(test_clip)
  _, got = qstep.run(test_clip)
  scores, ref_scores = np.asarray(got["scores"]), np.asarray(ref["scores"])
  # The scores change on the same hops (every second one) in both: both branches ran.
  changed = np.any(np.diff(scores, axis=0) != 0, axis=1)
  ref_changed = np.any(np.diff(ref_scores, axis=0) != 0, axis=1)
  assert np.array_equal(changed, ref_changed) and 0 < changed.sum() < changed.size
  diff = np.abs(scores - ref_scores).max()
  assert 0 < diff < 0.02, diff


def test_quantized_step_close_to_float(trained_gru, test_clip):
  step = streaming.make_step(trained_gru)
  qstep, report = int8.quantize_step(step)
  params = trained_gru.variables["params"]
  kernels = sorted(jax.tree_util.keystr(p, simple=True, separator="/")
                   for p, v in jax.tree_util.tree_flatten_with_path(params)[0] if np.ndim(v) == 2)
  assert [k.removeprefix("params/") for k in report["quantized"]] == kernels
  assert all(np.ndim(v) == 1 for v in jax.tree.leaves(qstep.params["float"]))
  assert report["weight_bytes_quantized"] < 0.4 * report["weight_bytes_float32"]
  _, ref = step.run(test_clip)
  _, got = qstep.run(test_clip)
  diff = np.abs(np.asarray(got["scores"]) - np.asarray(ref["scores"])).max()
  assert 0 < diff < 0.02, diff
  assert qstep.info["quantization"] == report


def test_int8_export_has_int8_constants_and_runs_on_iree(trained_gru, tmp_path, test_clip):
  meta = export.export_trained(trained_gru, tmp_path / "export", quantize="int8")
  assert meta["quantization"]["quantized"]
  text = (tmp_path / "export" / meta["modules"][meta["default_variant"]]["text"]).read_text()
  assert re.search(r"tensor<\d+x\d+xi8>", text)
  assert "xi32>" in text and "stablehlo.while" not in text
  iree_compile.compile_export(tmp_path / "export", "host-cpu", tmp_path / "cpu")
  runner = iree_runner.IreeStep(tmp_path / "cpu")
  qstep, _ = int8.quantize_step(streaming.make_step(trained_gru))
  ref_state, ref = qstep.run(test_clip)
  state, got = runner.run(test_clip)
  # Same int8 arithmetic; only a rare rounding tie of an activation may differ by one step.
  np.testing.assert_allclose(got["scores"], np.asarray(ref["scores"]), atol=1e-3)
  for a, b in zip(state, jax.tree.leaves(ref_state)):
    np.testing.assert_allclose(a, np.asarray(b), atol=1e-3)


def test_cortex_m4_int8_is_smaller(compiled, trained_gru, tmp_path):
  export.export_trained(trained_gru, tmp_path / "export", quantize="int8")
  report = iree_compile.compile_export(tmp_path / "export", "cortex-m4", tmp_path / "m4")
  float_sizes = iree_compile.size_report(compiled("cortex-m4") / iree_compile.STATIC_OBJECT_FILE,
                                        compiled("cortex-m4") / iree_compile.EMITC_FILE)
  print(f"cortex-m4 weights: float {float_sizes['weights_bytes']} B, "
        f"int8 {report['sizes']['weights_bytes']} B")
  assert report["sizes"]["weights_bytes"] < float_sizes["weights_bytes"]


def test_no_products_is_a_clear_error():
  from kws_jax.deploy.streaming_step import StreamingStep
  from kws_jax.errors import ExportError
  step = StreamingStep(apply=lambda p, s, x: (s, {"logits": x[:2] * p["w"], "scores": x[:2]}),
                       params={"w": jnp.ones(2)}, init_state=lambda: {"n": jnp.zeros(())},
                       hop_size=4, sample_rate=16000, label_names=("a", "b"))
  with pytest.raises(ExportError, match="found no weight matrix products or convolutions"):
    int8.quantize_step(step)
