"""Benchmark code: the PyTorch baselines compute what kws_jax computes (so the speed ratios
compare like with like), and the CLIs run end to end on tiny shapes. No timing assertions."""

from __future__ import annotations

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kws_jax import models
from kws_jax.bench import train_speed
from kws_jax.bench.__main__ import main as bench_main
from kws_jax.errors import KwsError
from kws_jax.models import rnn
from kws_jax.ops import frontend

SMALL = train_speed.EllGruRecipe(num_frames=7, num_features=6, hidden_size=5, num_classes=4,
                                 batch_size=3)


def _small_batch(seed=0):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((SMALL.batch_size, SMALL.num_frames, SMALL.num_features)).astype(np.float32)
  y = rng.integers(0, SMALL.num_classes, SMALL.batch_size).astype(np.int32)
  return x, y


def _numpy_gru_reference(params, x):
  """torch.nn.GRU equations in float64 NumPy loops (independent of both implementations)."""
  sig = lambda v: 1.0 / (1.0 + np.exp(-v))
  h_seq = np.asarray(x, np.float64)
  for name in sorted(k for k in params if k.startswith("layer_")):
    p = {k: np.asarray(v, np.float64) for k, v in params[name].items()}
    hidden = p["recurrent_kernel"].shape[0]
    h = np.zeros((h_seq.shape[0], hidden))
    outs = []
    for t in range(h_seq.shape[1]):
      xi = h_seq[:, t] @ p["input_kernel"] + p["input_bias"]
      hh = h @ p["recurrent_kernel"] + p["recurrent_bias"]
      r = sig(xi[:, :hidden] + hh[:, :hidden])
      z = sig(xi[:, hidden:2 * hidden] + hh[:, hidden:2 * hidden])
      n = np.tanh(xi[:, 2 * hidden:] + r * hh[:, 2 * hidden:])
      h = (1 - z) * n + z * h
      outs.append(h)
    h_seq = np.stack(outs, axis=1)
  logits = h_seq @ np.asarray(params["head"]["kernel"], np.float64) + np.asarray(params["head"]["bias"])
  logits -= logits.max(-1, keepdims=True)
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  return log_probs.mean(axis=1)


def test_fused_gru_matches_model_and_numpy_loop():
  params = train_speed.init_ell_gru(SMALL, seed=3)
  x, _ = _small_batch()
  reference = _numpy_gru_reference(params, x)
  fused = train_speed.fused_gru_apply(params, jnp.asarray(x))
  model_out = train_speed.ell_gru_model(SMALL).apply({"params": params}, x, train=False)
  np.testing.assert_allclose(fused, reference, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(model_out, reference, rtol=1e-5, atol=1e-6)


def _autodiff_gru_loss(params, x, y):
  """The recipe's loss with JAX autodiff through a plain scan of `rnn.gru_cell`."""
  h = jnp.swapaxes(x, 0, 1)
  for name in sorted(k for k in params if k.startswith("layer_")):
    p = params[name]
    x_gates = rnn.split_gates(h @ p["input_kernel"] + p["input_bias"], 3)
    h0 = jnp.zeros((h.shape[1], p["recurrent_kernel"].shape[0]))
    step = lambda h, xg, p=p: (rnn.gru_cell(xg, h, p["recurrent_kernel"], p["recurrent_bias"]),) * 2
    _, h = jax.lax.scan(step, h0, x_gates)
  logits = h @ params["head"]["kernel"] + params["head"]["bias"]
  return train_speed.nll_loss(jnp.mean(jax.nn.log_softmax(logits, -1), axis=0), y)


@pytest.mark.parametrize("formulation", train_speed.FORMULATIONS)
def test_hand_written_gru_gradient_matches_autodiff_of_the_scanned_cell(formulation):
  params = train_speed.init_ell_gru(SMALL, seed=4)
  x, y = _small_batch(1)
  g_reference = jax.grad(_autodiff_gru_loss)(params, x, y)
  g_tested = jax.grad(train_speed.ell_gru_loss(SMALL, formulation))(params, x, y)
  flat_reference, _ = jax.tree_util.tree_flatten_with_path(g_reference)
  flat_tested = dict(jax.tree_util.tree_flatten_with_path(g_tested)[0])
  assert len(flat_reference) == 10
  for path, value in flat_reference:
    assert float(jnp.abs(value).max()) > 0, path
    np.testing.assert_allclose(flat_tested[path], value, rtol=1e-4, atol=1e-7, err_msg=str(path))


# ------------------------------------------------------------------- torch parity

@pytest.fixture(scope="module")
def torch_baselines():
  pytest.importorskip("torch")
  from kws_jax.bench import torch_baselines
  return torch_baselines


def test_training_runners_count_clips_not_frames(torch_baselines):
  """Both sides count steps x batch clips per call (the seq-first GRU input once counted frames)."""
  steps, batch = 2, SMALL.batch_size
  x, y = train_speed.synthetic_batches(steps, batch, (SMALL.num_frames, SMALL.num_features),
                                       SMALL.num_classes)
  torch_gru = torch_baselines.ell_gru_train_runner(x, y, hidden_size=SMALL.hidden_size,
                                                   num_classes=SMALL.num_classes)
  jax_gru = train_speed.make_ell_gru_runner(SMALL, steps=steps, num_devices=1)
  assert torch_gru.clips_per_call == jax_gru.clips_per_call == steps * batch


def test_torch_gru_same_outputs_and_gradients_for_same_weights(torch_baselines):
  import torch
  params = train_speed.init_ell_gru(SMALL, seed=5)
  x, y = _small_batch(2)
  net = torch_baselines.ell_gru_from_params(params)
  xt = torch.from_numpy(np.swapaxes(x, 0, 1).copy())  # ELL feeds (T, B, F)
  out = net(xt)
  np.testing.assert_allclose(out.detach().numpy(), train_speed.fused_gru_apply(params, x),
                             rtol=1e-5, atol=1e-6)
  torch.nn.functional.nll_loss(out, torch.from_numpy(y.astype(np.int64))).backward()
  grads = jax.grad(train_speed.ell_gru_loss(SMALL, "fused_vjp"))(params, x, y)
  np.testing.assert_allclose(net.grus[0].weight_hh_l0.grad.numpy().T,
                             grads["layer_0"]["recurrent_kernel"], rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(net.grus[1].weight_ih_l0.grad.numpy().T,
                             grads["layer_1"]["input_kernel"], rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(net.hidden2keyword.bias.grad.numpy(), grads["head"]["bias"],
                             rtol=1e-4, atol=1e-7)


def test_torch_rmsprop_and_optax_recipe_take_the_same_steps(torch_baselines):
  import torch
  params = train_speed.init_ell_gru(SMALL, seed=6)
  net = torch_baselines.ell_gru_from_params(params)
  recipe = dataclass_replace(SMALL, learning_rate=0.01, weight_decay=0.01)
  torch_opt = torch.optim.RMSprop(net.parameters(), lr=recipe.learning_rate, alpha=0.99,
                                  eps=1e-8, weight_decay=recipe.weight_decay)
  optimizer = train_speed.recipe_optimizer(recipe)
  state = optimizer.init(params)
  loss_fn = train_speed.ell_gru_loss(recipe, "fused_vjp")
  for i in range(3):
    x, y = _small_batch(10 + i)
    torch_opt.zero_grad()
    loss = torch.nn.functional.nll_loss(net(torch.from_numpy(np.swapaxes(x, 0, 1).copy())),
                                        torch.from_numpy(y.astype(np.int64)))
    loss.backward()
    torch_opt.step()
    jax_loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    np.testing.assert_allclose(loss.item(), float(jax_loss), rtol=1e-5)
    updates, state = optimizer.update(grads, state, params)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
  np.testing.assert_allclose(net.grus[0].weight_hh_l0.detach().numpy().T,
                             params["layer_0"]["recurrent_kernel"], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(net.hidden2keyword.weight.detach().numpy().T,
                             params["head"]["kernel"], rtol=1e-4, atol=1e-5)


def dataclass_replace(obj, **changes):
  import dataclasses
  return dataclasses.replace(obj, **changes)


@pytest.mark.parametrize("preset", ["ell", "tf_speech_commands", "torchaudio"])
def test_torch_featurizer_matches_frontend(torch_baselines, preset):
  import torch
  cfg = frontend.get_config(preset)
  rng = np.random.default_rng(7)
  t = np.arange(8000) / 16000
  audio = np.stack([0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(8000),
                    0.05 * rng.standard_normal(8000)]).astype(np.float32)
  ours = np.asarray(frontend.featurize(frontend.make_params(cfg), audio))
  theirs = torch_baselines.TorchFeaturizer(cfg)(torch.from_numpy(audio)).numpy()
  assert theirs.shape == ours.shape == (2, frontend.num_frames(cfg, 8000), cfg.num_features)
  # Log/dB features: absolute agreement (float32 DFT-matmul vs FFT rounding).
  np.testing.assert_allclose(theirs, ours, atol=2e-2 if preset == "torchaudio" else 2e-3)


def test_torch_stream_step_matches_jax_stream_step(torch_baselines):
  from kws_jax.bench import latency
  cfg = frontend.get_config("ell")
  model = models.create("gru", num_classes=4, num_frames=3, num_features=cfg.num_features,
                        hidden_size=6)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 3, cfg.num_features)))
  chunks = latency.synthetic_audio(5, cfg.hop_size, seed=3)
  jax_step = latency.JaxStreamStepRunner(frontend.make_params(cfg), model, variables, chunks)
  torch_step = torch_baselines.StreamStepRunner(
      torch_baselines.TorchFeaturizer(cfg), torch_baselines.ell_gru_from_params(variables["params"]),
      3, chunks)
  for _ in range(5):  # past the 3-frame window, so the ring buffers wrap
    np.testing.assert_allclose(torch_step().numpy(), np.asarray(jax_step()), rtol=1e-4, atol=1e-4)


def test_torchaudio_cnn_has_the_tutorial_parameter_count(torch_baselines):
  torch_count = torch_baselines.count_params(torch_baselines.TorchaudioCnn(64, 101, 11))
  model = models.create("torchaudio_cnn", num_classes=11, num_frames=101, num_features=64)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 101, 64)), train=False)
  assert torch_count == models.count_params(variables["params"]) == 213_891


# ------------------------------------------------------------------------ CLIs

REQUIRED = ("cpu_train_ell_gru", "step_latency_ell_gru", "featurizer_batch")


def test_baselines_cli_json_tiny(torch_baselines, capsys, tmp_path):
  assert bench_main(["baselines", "--tiny", "--json", "--out", str(tmp_path)]) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  results = json.loads(lines[-1])
  for name in REQUIRED + ("cpu_train_torchaudio_cnn",):
    entry = results[name]
    assert set(entry) == {"kws_jax", "baseline", "unit", "speedup"}
    assert entry["kws_jax"] > 0 and entry["baseline"] > 0
    higher_better = entry["unit"] != "us"
    expected = (entry["kws_jax"] / entry["baseline"] if higher_better
                else entry["baseline"] / entry["kws_jax"])
    assert math.isclose(entry["speedup"], expected, rel_tol=2e-3)
  assert results["step_latency_ell_gru"]["unit"] == "us"
  assert "not measured" in "\n".join(lines)  # GPU rows
  saved = json.loads((tmp_path / "baselines.json").read_text())
  assert saved["results"].keys() == results.keys()
  assert saved["machine"]["cores"] >= 1


def test_table_cli_tiny(tmp_path, capsys):
  out = tmp_path / "bench"
  assert bench_main(["--models", "gru,dscnn", "--out", str(out), "--train-batch", "2",
                     "--train-steps", "1", "--latency-calls", "1", "--rounds", "1"]) == 0
  rows = json.loads((out / "bench.json").read_text())
  assert [r["model"] for r in rows] == ["gru", "dscnn"]
  gru = rows[0]
  assert gru["input_shape"] == [31, 80] and gru["frontend"] == "ell"
  model = models.create("gru", num_classes=12, num_frames=31, num_features=80)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 31, 80)))
  assert gru["params"] == models.count_params(variables)
  assert gru["macs_per_second"] == models.macs_per_second(model, variables, 512 / 16000)
  assert rows[1]["input_shape"] == [49, 10]
  for r in rows:
    assert r["jax_step_us"] > 0 and r["train_clips_per_s"] > 0
    assert r["accuracy"] is None and r["iree_step_us"] is None
  markdown = (out / "bench.md").read_text()
  assert "| gru |" in markdown and "n/a" in markdown
  assert (out / "accuracy_vs_latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert "bench.json" in capsys.readouterr().out


def test_table_cli_errors_are_clear(tmp_path):
  with pytest.raises(KwsError, match="unknown model.*valid"):
    bench_main(["--models", "nope", "--out", str(tmp_path)])
  with pytest.raises(KwsError, match="no such workdir"):
    bench_main(["--models", "", "--workdir", str(tmp_path / "missing"), "--out", str(tmp_path)])
  with pytest.raises(KwsError, match="--rounds"):
    bench_main(["--models", "gru", "--rounds", "0", "--out", str(tmp_path)])


def test_host_device_count_is_not_set_once_jax_has_started(monkeypatch):
  from kws_jax.bench import __main__ as bench_cli
  jax.devices()  # backends started: the flag could only leak into child processes
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  bench_cli.use_host_devices(2)
  assert "XLA_FLAGS" not in os.environ
