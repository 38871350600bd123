"""Distillation: the loss against NumPy, learning from a fixed teacher, and a teacher workdir."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from tiny_training import make_folder, tiny_config

from kws_jax.configs import default as config_default
from kws_jax.errors import ConfigError
from kws_jax.models import builder
from kws_jax.ops import frontend
from kws_jax.train import distill, loop
from kws_jax.train import step as train_step


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_distillation_loss_equals_numpy():
  rng = np.random.default_rng(0)
  student = rng.normal(size=(5, 4)) * 3
  teacher = rng.normal(size=(5, 4)) * 3
  targets = np.asarray(optax.smooth_labels(jax.nn.one_hot(rng.integers(0, 4, 5), 4), 0.1))
  weight, t = 0.7, 3.0
  hard = -(targets * _log_softmax(student)).sum(-1)
  p_teacher = np.exp(_log_softmax(teacher / t))
  kl = (p_teacher * (_log_softmax(teacher / t) - _log_softmax(student / t))).sum(-1)
  want = (1 - weight) * hard + weight * t * t * kl
  got = distill.distillation_loss(jnp.asarray(student, jnp.float32), jnp.asarray(targets),
                                  jnp.asarray(teacher, jnp.float32), weight, t)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)
  # No teacher: exactly optax's cross-entropy (what training without distillation used).
  plain = distill.distillation_loss(jnp.asarray(student, jnp.float32), jnp.asarray(targets), None,
                                    weight, t)
  np.testing.assert_allclose(np.asarray(plain), np.asarray(optax.softmax_cross_entropy(
      jnp.asarray(student, jnp.float32), jnp.asarray(targets))), rtol=1e-6)
  # A student equal to its teacher pays only the hard-label share.
  same = distill.distillation_loss(jnp.asarray(teacher, jnp.float32), jnp.asarray(targets),
                                   jnp.asarray(teacher, jnp.float32), weight, t)
  np.testing.assert_allclose(np.asarray(same), (1 - weight) * -(targets * _log_softmax(teacher)).sum(-1),
                             rtol=1e-5)


def _mean_kl(teacher_logits, student_logits):
  p = np.exp(_log_softmax(teacher_logits))
  return float((p * (_log_softmax(teacher_logits) - _log_softmax(student_logits))).sum(-1).mean())


def test_student_reaches_a_fixed_teacher_better_than_labels_alone():
  """Same student, same batches: distilled from a fixed teacher, its posteriors on unseen audio
  are closer to the teacher's than those of the student trained on the labels alone."""
  config = ml_collections.ConfigDict({"features": {"preset": "tf_speech_commands"},
                                      "model": {"name": "tf_tiny_conv", "dropout_rate": 0.0}})
  frontend_params, model, frames, features = builder.build(config, 4, 8000)
  teacher_vars = builder.init_variables(model, frames, features, jax.random.key(7))

  def teacher(audio):
    return model.apply(teacher_vars, frontend.featurize(frontend_params, audio), train=False)

  rng = np.random.default_rng(0)
  steps, batch = 40, 16
  audio = (rng.normal(size=(steps, batch, 8000)) * 3000).astype(np.int16)
  labels = rng.integers(0, 4, size=(steps, batch)).astype(np.int32)  # not the teacher's answers
  held_out = (rng.normal(size=(64, 8000)) * 0.1).astype(np.float32)
  train_cfg = config_default.train_config()
  tx = optax.adam(3e-3)

  def train(weight: float):
    variables = builder.init_variables(model, frames, features, jax.random.key(1))
    params = variables["params"]
    state = {k: v for k, v in variables.items() if k != "params"}
    chunk = train_step.make_train_chunk(
        model, frontend_params, lambda key, a, y: a.astype(jnp.float32) / 32768.0, tx, train_cfg,
        4, 0, teacher=teacher if weight else None,
        distill=ml_collections.ConfigDict(dict(weight=weight, temperature=2.0)))
    carry, _ = chunk((params, state, tx.init(params)), audio, labels,
                     np.arange(steps, dtype=np.int32), np.ones(steps, bool), np.int32(-1))
    return np.asarray(model.apply({"params": carry[0], **carry[1]},
                                  frontend.featurize(frontend_params, held_out), train=False))

  want = np.asarray(teacher(held_out))
  kl_distilled, kl_labels = _mean_kl(want, train(1.0)), _mean_kl(want, train(0.0))
  print(f"KL(teacher || student) on unseen audio: distilled {kl_distilled:.4f}, "
        f"labels only {kl_labels:.4f}")
  assert kl_distilled < 0.5 * kl_labels


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("distill")
  data, cache = make_folder(root / "data"), root / "cache"
  config = tiny_config(data, cache, epochs=1)
  loop.train_and_evaluate(config, root / "teacher")
  return root, data, cache


def test_training_with_a_teacher_workdir(teacher_run):
  root, data, cache = teacher_run
  config = tiny_config(data, cache, epochs=1)
  config.distill = config_default.distill_config()
  config.distill.teacher = str(root / "teacher")
  config.model.name = "tf_low_latency_conv"  # another student family than the teacher
  results = loop.train_and_evaluate(config, root / "student")
  assert json.loads((root / "student" / "results.json").read_text())["model"] == results["model"]
  assert np.isfinite(results["test_loss"])
  # A teacher that knows other labels is refused before training.
  bad = tiny_config(data, cache, epochs=1)
  bad.data.wanted_words = "yes"
  bad.distill = config_default.distill_config()
  bad.distill.teacher = str(root / "teacher")
  with pytest.raises(ConfigError, match="distill.teacher=.*labels"):
    loop.train_and_evaluate(bad, root / "bad")
  bad.distill.weight = 1.5
  with pytest.raises(ConfigError, match="distill.weight"):
    loop.train_and_evaluate(bad, root / "bad2")
  # weight 0 is labels only: the teacher is never loaded (nor its cost paid), so even a
  # missing teacher dir does not matter; with a weight it does.
  labels_only = config_default.distill_config()
  labels_only.update(dict(teacher=str(root / "missing"), weight=0.0))
  assert distill.make_teacher(labels_only, ["_silence_", "_unknown_", "yes"]) is None
  labels_only.weight = 0.5
  with pytest.raises(Exception, match="missing"):
    distill.make_teacher(labels_only, ["_silence_", "_unknown_", "yes"])
