"""Data-parallel training: 4 CPU devices give the same loss curve as 1 device for the same global batch.

XLA's host device count is fixed when JAX starts, so the check runs in a fresh
interpreter with XLA_FLAGS=--xla_force_host_platform_device_count=4.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np, optax
    from kws_jax.train import parallel
    from kws_jax.bench import train_speed

    assert len(jax.devices()) == 4, jax.devices()
    recipe = train_speed.EllGruRecipe(num_frames=6, num_features=5, hidden_size=8,
                                      num_classes=3, batch_size=8)
    params0 = train_speed.init_ell_gru(recipe, seed=1)
    optimizer = train_speed.recipe_optimizer(recipe)
    x, y = train_speed.synthetic_batches(5, recipe.batch_size, (6, 5), 3, seed=2)
    out = {}
    for name, formulation in (("model", "model"), ("fused", "fused_vjp")):
      loss_fn = train_speed.ell_gru_loss(recipe, formulation)
      for n in (1, 4):
        mesh = parallel.batch_mesh(n)
        # Step by step ...
        step = parallel.make_train_step(loss_fn, optimizer, mesh)
        params, state = parallel.replicate((params0, optimizer.init(params0)), mesh)
        losses = []
        for i in range(len(x)):
          xb, yb = parallel.shard_batch((x[i], y[i]), mesh)
          params, state, loss = step(params, state, xb, yb)
          losses.append(float(loss))
        out[f"{name}_step_{n}"] = losses
        out[f"{name}_step_{n}_params"] = [np.asarray(a).ravel().tolist()
                                          for a in jax.tree.leaves(params)]
        # ... and as one scanned epoch.
        epoch = parallel.make_train_epoch(loss_fn, optimizer, mesh)
        params, state = parallel.replicate((params0, optimizer.init(params0)), mesh)
        xs, ys = parallel.shard_batch((x, y), mesh, axis=1)
        params, state, losses = epoch(params, state, xs, ys)
        out[f"{name}_epoch_{n}"] = np.asarray(losses).tolist()
        out[f"{name}_epoch_{n}_sharding"] = str(xs.sharding.spec)
    try:
      parallel.shard_batch(np.zeros((6, 2)), parallel.batch_mesh(4))
    except Exception as e:
      out["uneven_error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def four_device_run() -> dict:
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", ["model", "fused"])
@pytest.mark.parametrize("mode", ["step", "epoch"])
def test_four_devices_match_one_device(four_device_run, name, mode):
  one = np.asarray(four_device_run[f"{name}_{mode}_1"])
  four = np.asarray(four_device_run[f"{name}_{mode}_4"])
  assert one.shape == (5,)
  assert np.all(np.isfinite(one))
  assert one[-1] < one[0]  # it trains
  np.testing.assert_allclose(four, one, rtol=2e-5, atol=2e-6)


def test_four_devices_end_with_same_params(four_device_run):
  for name in ("model", "fused"):
    for a, b in zip(four_device_run[f"{name}_step_1_params"],
                    four_device_run[f"{name}_step_4_params"]):
      np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


def test_scan_and_step_agree(four_device_run):
  np.testing.assert_allclose(four_device_run["model_epoch_4"], four_device_run["model_step_4"],
                             rtol=2e-5, atol=2e-6)
  assert "batch" in four_device_run["model_epoch_4_sharding"]


def test_uneven_batch_is_a_clear_error(four_device_run):
  message = four_device_run["uneven_error"]
  assert message.startswith("ConfigError")
  assert "multiple of 4" in message
