"""Knowledge distillation: a trained kws_jax workdir teaches the model being trained.

With `distill.teacher=WORKDIR`, every training step runs the teacher (frozen, inference
mode) on the same augmented audio as the student, inside the jitted step, and the
student's per-example loss becomes

    (1 - w) * CE(labels, student) + w * T^2 * KL(softmax(teacher / T) || softmax(student / T))

(Hinton et al. 2015; the T^2 keeps the soft term's gradient scale independent of T).
The teacher brings its own featurizer, so any student front end can learn from it.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from kws_jax.errors import ConfigError
from kws_jax.ops import frontend
from kws_jax.runs import trained_model


def distillation_loss(student_logits: jax.Array, targets: jax.Array,
                      teacher_logits: jax.Array | None, weight: float,
                      temperature: float) -> jax.Array:
  """Per-example loss (...,): hard-label cross-entropy mixed with the softened KL term.

  `targets` are (smoothed) one-hot labels shaped like the logits (or broadcastable);
  `teacher_logits=None` or `weight=0` is plain cross-entropy.
  """
  log_p = jax.nn.log_softmax(student_logits, axis=-1)
  hard = -jnp.sum(targets * log_p, axis=-1)
  if teacher_logits is None or weight == 0:
    return hard
  t = float(temperature)
  log_q_teacher = jax.nn.log_softmax(teacher_logits / t, axis=-1)
  log_q_student = jax.nn.log_softmax(student_logits / t, axis=-1)
  kl = jnp.sum(jnp.exp(log_q_teacher) * (log_q_teacher - log_q_student), axis=-1)
  return (1.0 - weight) * hard + weight * t * t * kl


def check_config(distill: ml_collections.ConfigDict) -> None:
  if not 0.0 <= float(distill.weight) <= 1.0:
    raise ConfigError(f"distill.weight={distill.weight}: must be in [0, 1]")
  if float(distill.temperature) <= 0:
    raise ConfigError(f"distill.temperature={distill.temperature}: must be > 0")


def make_teacher(distill: ml_collections.ConfigDict | None,
                 label_names: Sequence[str]) -> Callable[[jax.Array], jax.Array] | None:
  """`teacher(float audio (B, S)) -> logits (B, C)` of `distill.teacher`'s best checkpoint.

  None when no teacher is configured or `distill.weight` is 0 (labels only: the teacher
  would cost every step its forward pass for nothing). The teacher must know the same
  labels in the same order as the student's data.
  """
  if distill is None or not distill.get("teacher"):
    return None
  check_config(distill)
  if float(distill.weight) == 0.0:
    return None
  teacher = trained_model.load(distill.teacher)
  if list(teacher.label_names) != list(label_names):
    raise ConfigError(f"distill.teacher={distill.teacher}: its labels {teacher.label_names} "
                      f"differ from the training data's {list(label_names)}; train the teacher "
                      "on the same wanted_words")
  model, variables, frontend_params = teacher.model, teacher.variables, teacher.frontend

  def teacher_logits(audio: jax.Array) -> jax.Array:
    logits = model.apply(variables, frontend.featurize(frontend_params, audio), train=False)
    return jax.lax.stop_gradient(logits.astype(jnp.float32))
  return teacher_logits
