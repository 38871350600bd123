"""Optimizer for models with a pretrained part: a top-level `embedding` parameter subtree.

The pretrained speech embedding (kws_jax.models.speech_embedding) is frozen by default:
its parameters get no update (optax.set_to_zero, so no weight decay and no optimizer
moments either) and the model stops its gradient. With the model's `finetune=True` it
trains at its own peak rate `train.embedding_learning_rate`, following the same schedule
shape as the head (the head's schedule scaled by the ratio of the two rates), with Adam:
a pretrained network wants a rate one or two orders below a fresh head's.
Models without an `embedding` subtree keep the optimizer unchanged (and their checkpoints'
optimizer state layout).
"""

from __future__ import annotations

from typing import Any

import ml_collections
import optax

from kws_jax.errors import ConfigError

PRETRAINED_KEY = "embedding"


def split_optimizer(tx: optax.GradientTransformation, model: Any, params: Any,
                    train: ml_collections.ConfigDict,
                    schedule: optax.Schedule) -> optax.GradientTransformation:
  """`tx` for the head; the `embedding` subtree frozen or at its own rate."""
  rate = float(train.get("embedding_learning_rate", 0.0))
  if PRETRAINED_KEY not in params:
    if rate:
      raise ConfigError("train.embedding_learning_rate is set but the model has no pretrained "
                        "embedding; leave it at 0")
    return tx
  finetune = bool(getattr(model, "finetune", False))
  if finetune != (rate > 0):
    raise ConfigError(
        f"model.finetune={finetune} with train.embedding_learning_rate={rate}: fine-tuning "
        "needs both (finetune=True and a rate > 0), freezing neither")
  if finetune:
    ratio = rate / float(train.learning_rate)
    pretrained = optax.adam(lambda step: schedule(step) * ratio, b1=train.adam_b1,
                            b2=train.adam_b2, eps=train.eps)
  else:
    pretrained = optax.set_to_zero()
  labels = {key: (PRETRAINED_KEY if key == PRETRAINED_KEY else "head") for key in params}
  return optax.multi_transform({"head": tx, PRETRAINED_KEY: pretrained}, labels)
