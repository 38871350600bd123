"""The jitted training step: int16 clips -> augmentation -> features -> SpecAugment -> model -> optax.

`make_train_chunk` runs `train.steps_per_call` optimizer steps in one jitted call
(a `lax.scan`, or a Python loop inside `jit` when `train.unroll_steps`), so Python
only slices batches and checks the losses between chunks.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from kws_jax.models import common as models_common
from kws_jax.ops import augment as augment_ops
from kws_jax.ops import frontend
from kws_jax.train import parallel
from kws_jax.train.distill import distillation_loss


@dataclasses.dataclass(frozen=True)
class LossSpec:
  """What the loss needs besides the arrays (static under jit)."""
  model: Any
  num_classes: int
  label_smoothing: float = 0.0
  distill_weight: float = 0.0      # share of the teacher's soft-target term
  temperature: float = 1.0


def loss_and_logits(spec: LossSpec, params, model_state, features, labels, key, teacher_logits):
  """(loss to differentiate, (logits, model-state updates, loss to report)) of one batch."""
  variables = {"params": params, **model_state}
  if model_state:
    logits, updates = spec.model.apply(variables, features, train=True, rngs={"dropout": key},
                                       mutable=list(model_state))
  else:
    logits, updates = spec.model.apply(variables, features, train=True,
                                       rngs={"dropout": key}), {}
  targets = jax.nn.one_hot(labels, spec.num_classes)
  if spec.label_smoothing > 0:
    targets = optax.smooth_labels(targets, spec.label_smoothing)
  logits = logits.astype(jnp.float32)
  weight, temperature = spec.distill_weight, spec.temperature
  if logits.ndim == 3:
    # An ensemble's members (B, M, C): each member's own loss, summed over members so each
    # gets the gradient it would get alone (reported: their mean); the prediction is the
    # averaged posterior, as at inference.
    member_losses = distillation_loss(
        logits, targets[:, None, :], None if teacher_logits is None else teacher_logits[:, None],
        weight, temperature).mean(0)
    loss, reported = member_losses.sum(), member_losses.mean()
    logits = models_common.average_members(logits)
  else:
    loss = reported = distillation_loss(logits, targets, teacher_logits, weight,
                                        temperature).mean()
  return loss, (logits, dict(updates), reported)


def spec_augment_batch(key: jax.Array, features: jax.Array,
                       spec: ml_collections.ConfigDict) -> jax.Array:
  """SpecAugment masks of `spec` (train.spec_augment), drawn per example."""
  keys = jax.random.split(key, features.shape[0])
  fill = (jnp.min(features, axis=(1, 2)) if spec.get("mask_with", "zero") == "floor"
          else jnp.zeros(features.shape[:1], features.dtype))
  return jax.vmap(lambda k, f, v: augment_ops.spec_augment(
      k, f, time_masks=int(spec.time_masks), time_mask_max=int(spec.time_mask_max),
      freq_masks=int(spec.freq_masks), freq_mask_max=int(spec.freq_mask_max), mask_value=v))(
          keys, features, fill)


def _jit_for(mesh: Mesh | None) -> Callable:
  """jax.jit, or with the data-parallel shardings of train_chunk's arguments over `mesh`."""
  if mesh is None:
    return jax.jit
  replicated = NamedSharding(mesh, P())
  by_example = NamedSharding(mesh, P(None, parallel.BATCH_AXIS))
  return functools.partial(
      jax.jit, in_shardings=(replicated, by_example, by_example, replicated, replicated,
                             replicated), out_shardings=(replicated, replicated))


def make_train_chunk(model, frontend_params, augment: Callable, tx: optax.GradientTransformation,
                     train: ml_collections.ConfigDict, num_classes: int, seed: int,
                     teacher: Callable | None = None,
                     distill: ml_collections.ConfigDict | None = None,
                     mesh: Mesh | None = None) -> Callable:
  """jit(carry, audio (K,B,S) int16, labels (K,B), steps (K,), valid (K,), nan_step) -> ...

  Returns (carry, (loss (K,), correct (K,))). `carry` is (params, model_state,
  opt_state); steps with valid=False leave it as is (they pad the last chunk of an
  epoch so every chunk has one compiled shape). `nan_step` >= 0 poisons the loss of
  that step (testing the NaN guard); it is an argument, not a constant, so the
  compiled function is the same with and without it. `teacher` (float audio -> logits,
  `kws_jax.train.distill.make_teacher`) runs on the same augmented audio as the model and
  adds `distill`'s soft-target term to the loss.

  mesh: data-parallel over its devices (`parallel.training_mesh`): the carry and the
  outputs replicated, audio and labels split on the example axis (B). The program is
  the one-device program, partitioned by XLA: losses and gradients are global-batch
  means, BatchNorm uses the global batch's statistics, and each example's random
  augmentation, SpecAugment masks and dropout come from keys split per global example
  index, so the numbers do not depend on the number of devices or processes (up to
  float summation order in the cross-device reductions).
  """
  base_key = jax.random.fold_in(jax.random.key(seed), 1)
  spec = train.spec_augment
  use_spec = (spec.time_masks > 0 and spec.time_mask_max > 0) or (
      spec.freq_masks > 0 and spec.freq_mask_max > 0)
  loss_spec = LossSpec(model, num_classes, float(train.label_smoothing),
                       float(distill.weight) if teacher is not None else 0.0,
                       float(distill.temperature) if teacher is not None else 1.0)

  def one_step(carry, inputs, nan_step):
    audio, labels, step, valid = inputs

    def run(carry):
      params, model_state, opt_state = carry
      key = jax.random.fold_in(base_key, step)
      k_augment, k_spec, k_dropout = jax.random.split(key, 3)
      clean = augment(k_augment, audio, labels)
      teacher_logits = teacher(clean) if teacher is not None else None
      features = frontend.featurize(frontend_params, clean)
      if use_spec:
        features = spec_augment_batch(k_spec, features, spec)
      (_, (logits, updates, loss)), grads = jax.value_and_grad(
          functools.partial(loss_and_logits, loss_spec), has_aux=True)(
              params, model_state, features, labels, k_dropout, teacher_logits)
      poison = jnp.where(step == nan_step, jnp.float32(jnp.nan), jnp.float32(1.0))
      loss = loss * poison
      grads = jax.tree.map(lambda g: g * poison, grads)
      updates_opt, opt_state = tx.update(grads, opt_state, params)
      params = optax.apply_updates(params, updates_opt)
      model_state = {**model_state, **updates}
      correct = jnp.sum(jnp.argmax(logits, -1) == labels).astype(jnp.int32)
      return (params, model_state, opt_state), (loss, correct)

    # A select, not lax.cond: XLA:CPU runs convolutions inside a conditional's branch
    # ~6x slower (torchaudio CNN, batch 64, same minute: 7.8-10.1 vs 1.4-1.7 s per step).
    # Padded steps only occur in an epoch's last chunk, so computing and discarding them
    # costs little.
    new_carry, (loss, correct) = run(carry)
    new_carry = jax.tree.map(lambda new, old: jnp.where(valid, new, old), new_carry, carry)
    return new_carry, (jnp.where(valid, loss, 0.0), jnp.where(valid, correct, 0))

  jit = _jit_for(mesh)

  @jit
  def train_chunk(carry, audio, labels, steps, valid, nan_step):
    if not train.get("unroll_steps"):
      return jax.lax.scan(lambda c, x: one_step(c, x, nan_step), carry,
                          (audio, labels, steps, valid))
    # A Python loop, not lax.scan(unroll=True): that still emits a (one-trip) while loop,
    # and XLA:CPU runs convolutions inside a loop body ~6x slower (torchaudio CNN, batch
    # 64: 7.5 vs 1.3 s per step, same minute).
    outputs = []
    for index in range(audio.shape[0]):
      carry, out = one_step(carry, (audio[index], labels[index], steps[index], valid[index]),
                            nan_step)
      outputs.append(out)
    return carry, jax.tree.map(lambda *xs: jnp.stack(xs), *outputs)

  return train_chunk
