"""The optax optimizer and learning-rate schedule a `train` config section asks for."""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import optax

from kws_jax.configs import default as config_default
from kws_jax.errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "piecewise", "step", "cosine")


def make_schedule(train: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
  """The learning-rate schedule in optimizer steps (epochs in the config)."""
  rate = float(train.learning_rate)
  if train.schedule == "constant":
    return optax.constant_schedule(rate)
  if train.schedule == "piecewise":
    epochs, rates = tuple(train.piecewise_epochs), tuple(train.piecewise_rates)
    if len(epochs) != len(rates) or not epochs or epochs[0] != 0 or list(epochs) != sorted(epochs):
      raise ConfigError("train.piecewise_epochs must start at 0, increase, and have one entry "
                        f"per rate in train.piecewise_rates (got {epochs} and {rates})")
    starts = jnp.asarray([round(e * steps_per_epoch) for e in epochs[1:]], jnp.int32)
    values = jnp.asarray(rates, jnp.float32)
    return lambda step: values[jnp.searchsorted(starts, step, side="right")]
  if train.schedule == "step":
    every = max(1, int(train.step_size_epochs) * steps_per_epoch)
    return lambda step: rate * float(train.step_gamma) ** (step // every)
  if train.schedule == "cosine":
    total = max(1, int(train.epochs) * steps_per_epoch)
    # A run shorter than its warm-up (e.g. --config.train.epochs=1 to try a recipe) warms up
    # over all but its last step instead of failing.
    warmup = min(int(round(float(train.warmup_epochs) * steps_per_epoch)), total - 1)
    return optax.warmup_cosine_decay_schedule(
        0.0 if warmup else rate, rate, warmup, max(total, warmup + 1),
        end_value=rate * float(train.final_rate_fraction))
  raise ConfigError(f"train.schedule={train.schedule!r}: choose one of {', '.join(SCHEDULES)}")


def make_optimizer(train: ml_collections.ConfigDict,
                   schedule: optax.Schedule) -> optax.GradientTransformation:
  parts = []
  if train.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(float(train.grad_clip_norm)))
  decoupled = train.optimizer == "adamw"
  if train.weight_decay > 0 and not decoupled:
    parts.append(optax.add_decayed_weights(float(train.weight_decay)))
  momentum = float(train.momentum) or None
  if train.optimizer == "adam":
    parts.append(optax.adam(schedule, b1=train.adam_b1, b2=train.adam_b2, eps=train.eps))
  elif train.optimizer == "adamw":
    parts.append(optax.adamw(schedule, b1=train.adam_b1, b2=train.adam_b2, eps=train.eps,
                             weight_decay=float(train.weight_decay)))
  elif train.optimizer == "sgd":
    parts.append(optax.sgd(schedule, momentum=momentum, nesterov=bool(train.nesterov)))
  elif train.optimizer == "rmsprop":
    # eps outside the square root, as PyTorch's RMSprop (the ELL recipe's optimizer).
    parts.append(optax.rmsprop(schedule, decay=float(train.rmsprop_decay), eps=train.eps,
                               eps_in_sqrt=False, momentum=momentum,
                               nesterov=bool(train.nesterov)))
  else:
    raise ConfigError(f"train.optimizer={train.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
  return optax.chain(*parts)


def validate_config(config: ml_collections.ConfigDict) -> None:
  for section in ("data", "features", "model", "train"):
    if section not in config:
      raise ConfigError(f"the experiment has no `{section}` section")
  if "seed" not in config:
    raise ConfigError("the experiment has no `seed`")
  if "name" not in config.model:
    raise ConfigError("config.model needs a `name` (see kws_jax.models.list_models())")
  known = set(config_default.train_config().keys())
  for key in config.train.keys():
    if key not in known:
      raise ConfigError(f"config.train.{key}: unknown training option; known: {', '.join(sorted(known))}")
  train = config.train
  if train.optimizer not in OPTIMIZERS:
    raise ConfigError(f"train.optimizer={train.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
  if train.schedule not in SCHEDULES:
    raise ConfigError(f"train.schedule={train.schedule!r}: choose one of {', '.join(SCHEDULES)}")
  for key in ("epochs", "batch_size", "eval_batch_size", "steps_per_call"):
    if int(train[key]) < 1:
      raise ConfigError(f"train.{key}={train[key]}: must be at least 1")
  if train.spec_augment.get("mask_with", "zero") not in ("zero", "floor"):
    raise ConfigError(f"train.spec_augment.mask_with={train.spec_augment.mask_with!r}: choose "
                      "'zero' or 'floor' (each example's lowest feature value)")
  if int(train.keep_checkpoints) < 1:
    raise ConfigError("train.keep_checkpoints must be at least 1")
