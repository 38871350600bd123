"""One builder of frontend + model from an experiment config, and their jitted logits.

Training, loading a trained workdir, benchmarks and tests all build the pair here,
so a config means the same model everywhere.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections

from kws_jax import models
from kws_jax.configs import loader as config_loader
from kws_jax.errors import KwsError
from kws_jax.ops import frontend


def build(config: ml_collections.ConfigDict, num_classes: int, clip_samples: int):
  """Frontend params, Flax model and input shape (T, F) for `config`."""
  features = config_loader.to_dict(config.features)
  try:
    frontend_cfg = frontend.get_config(**features)
  except TypeError as e:  # unknown override names
    raise KwsError(f"config.features: {e}") from None
  frontend_params = frontend.make_params(frontend_cfg)
  num_frames = frontend.num_frames(frontend_cfg, clip_samples)
  num_features = frontend_cfg.num_features
  hparams = config_loader.to_dict(config.model)
  name = hparams.pop("name")
  hparams = {k: tuple(v) if isinstance(v, list) else v for k, v in hparams.items()}
  model = models.create(name, num_classes=num_classes, num_frames=num_frames,
                        num_features=num_features, **hparams)
  return frontend_params, model, num_frames, num_features


def build_named(model: str, num_classes: int, clip_samples: int, *,
                features: dict | None = None, **hparams) -> tuple:
  """`build` for a registry model on featurizer settings (no experiment file), e.g. benchmarks."""
  config = ml_collections.ConfigDict({"features": dict(features or {"preset": "tf_speech_commands"}),
                                      "model": {"name": model, **hparams}})
  return build(config, num_classes, clip_samples)


def init_variables(model, num_frames: int, num_features: int, key: jax.Array) -> dict:
  """Fresh variables; jitted because op-by-op init dispatches hundreds of tiny compiles."""
  @jax.jit
  def init(key):
    k_params, k_dropout = jax.random.split(key)
    return model.init({"params": k_params, "dropout": k_dropout},
                      jnp.zeros((1, num_frames, num_features), jnp.float32), train=False)
  return dict(init(key))


def abstract_variables(model, num_frames: int, num_features: int) -> dict:
  shapes = jax.eval_shape(functools.partial(init_variables, model, num_frames, num_features),
                          jax.random.key(0))
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), shapes)


def make_logits_fn(model, frontend_params) -> Callable:
  """jit(variables, audio (B, S) int16 or float) -> logits (B, C): featurize, then the model."""
  @jax.jit
  def logits(variables, audio):
    return model.apply(variables, frontend.featurize(frontend_params, audio), train=False)
  return logits
