"""The optimizer split for models with a pretrained `embedding` subtree (kws_jax.frozen)."""

from __future__ import annotations

import types

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kws_jax.configs import default as config_default
from kws_jax.errors import ConfigError
from kws_jax.train import frozen, optimizer


def params():
  return {"embedding": {"w": jnp.ones((3,))}, "out": {"w": jnp.ones((2,))}}


def update(tx, p):
  grads = {"embedding": {"w": jnp.ones((3,))}, "out": {"w": jnp.ones((2,))}}
  updates, _ = tx.update(grads, tx.init(p), p)
  return optax.apply_updates(p, updates)


def test_frozen_embedding_gets_no_update_and_no_weight_decay():
  config = config_default.train_config()
  config.update(dict(optimizer="adamw", weight_decay=0.1, learning_rate=0.1))
  schedule = optimizer.make_schedule(config, 10)
  tx = frozen.split_optimizer(optimizer.make_optimizer(config, schedule),
                              types.SimpleNamespace(finetune=False), params(), config, schedule)
  new = update(tx, params())
  np.testing.assert_array_equal(np.asarray(new["embedding"]["w"]), np.ones(3))
  assert np.all(np.asarray(new["out"]["w"]) < 1.0)


def test_finetuned_embedding_moves_at_its_own_rate():
  config = config_default.train_config()
  config.update(dict(learning_rate=0.1, embedding_learning_rate=0.001))
  schedule = optimizer.make_schedule(config, 10)
  tx = frozen.split_optimizer(optimizer.make_optimizer(config, schedule),
                              types.SimpleNamespace(finetune=True), params(), config, schedule)
  new = update(tx, params())
  # Adam's first step moves each parameter by about its rate.
  np.testing.assert_allclose(1.0 - np.asarray(new["embedding"]["w"]), 0.001, rtol=1e-3)
  np.testing.assert_allclose(1.0 - np.asarray(new["out"]["w"]), 0.1, rtol=1e-3)


def test_mismatched_finetune_settings_are_config_errors():
  config = config_default.train_config()
  schedule = optimizer.make_schedule(config, 10)
  tx = optimizer.make_optimizer(config, schedule)
  with pytest.raises(ConfigError, match="finetune=True and a rate > 0"):
    frozen.split_optimizer(tx, types.SimpleNamespace(finetune=True), params(), config, schedule)
  config.embedding_learning_rate = 1e-4
  with pytest.raises(ConfigError, match="no pretrained embedding"):
    frozen.split_optimizer(tx, types.SimpleNamespace(), {"out": {}}, config, schedule)
  assert frozen.split_optimizer(tx, None, {"out": {}}, config_default.train_config(), schedule) is tx
