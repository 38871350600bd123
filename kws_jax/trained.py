"""A trained model from a workdir: config, labels, frontend, Flax model and weights.

`load(workdir)` is how every later stage (evaluate, streaming, export) gets a
model. The checkpoint helpers here are shared with `kws_jax.train`, which writes
`checkpoints/latest/<step>` (weights, optimizer state, progress) and
`checkpoints/best/<step>` (weights of the best validation accuracy) with orbax.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import pathlib
import warnings
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from kws_jax import config as config_lib
from kws_jax.errors import KwsError

LATEST = "latest"
BEST = "best"
CHECKPOINT_FORMAT = 1

# Orbax logs every save/restore at INFO through absl; training prints its own summary.
logging.getLogger("absl").setLevel(logging.WARNING)


def checkpoint_dir(workdir: str | os.PathLike, which: str) -> pathlib.Path:
  return pathlib.Path(workdir).resolve() / "checkpoints" / which


def checkpoint_manager(workdir: str | os.PathLike, which: str, *, max_to_keep: int = 2,
                       read_only: bool = False) -> ocp.CheckpointManager:
  """The orbax manager of `checkpoints/<which>`; synchronous so a kill never races a save."""
  directory = checkpoint_dir(workdir, which)
  # Readers open the manager writable but never save: orbax's read_only mode logs warnings.
  options = ocp.CheckpointManagerOptions(
      max_to_keep=None if read_only else max_to_keep, create=not read_only,
      enable_async_checkpointing=False, cleanup_tmp_directories=not read_only)
  return ocp.CheckpointManager(directory, options=options)


def restore_latest_good(manager: ocp.CheckpointManager,
                        items: dict[str, Any]) -> tuple[int, Any] | None:
  """Restores the newest checkpoint that reads back, warning about each that does not.

  `items` maps item names to a restore arg (e.g. `ocp.args.StandardRestore(tree)`).
  Returns (step, restored Composite), or None when there is no checkpoint at all.
  A corrupt or partial newest checkpoint falls back to the one before it.
  """
  steps = sorted(manager.all_steps(), reverse=True)
  for i, step in enumerate(steps):
    try:
      restored = manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # orbax/tensorstore raise many types for damaged files.
      message = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
      where = f"{manager.directory}/{step}"
      if i + 1 < len(steps):
        warnings.warn(f"checkpoint {where} cannot be read ({message}); "
                      f"falling back to step {steps[i + 1]}", stacklevel=2)
      else:
        warnings.warn(f"checkpoint {where} cannot be read ({message}); "
                      "no older checkpoint to fall back to", stacklevel=2)
      continue
    return step, restored
  return None


def build(config: ml_collections.ConfigDict, num_classes: int, clip_samples: int):
  """Frontend params, Flax model and input shape (T, F) for `config`."""
  from kws_jax import models
  from kws_jax.ops import frontend

  features = config_lib.to_dict(config.features)
  try:
    frontend_cfg = frontend.get_config(**features)
  except TypeError as e:  # unknown override names
    raise KwsError(f"config.features: {e}") from None
  frontend_params = frontend.make_params(frontend_cfg)
  num_frames = frontend.num_frames(frontend_cfg, clip_samples)
  num_features = frontend_cfg.num_features
  hparams = config_lib.to_dict(config.model)
  name = hparams.pop("name")
  hparams = {k: tuple(v) if isinstance(v, list) else v for k, v in hparams.items()}
  model = models.create(name, num_classes=num_classes, num_frames=num_frames,
                        num_features=num_features, **hparams)
  return frontend_params, model, num_frames, num_features


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


@dataclasses.dataclass
class Trained:
  """A trained model ready for inference (see module docstring)."""
  config: ml_collections.ConfigDict
  label_names: list[str]
  frontend: Any            # kws_jax.ops.frontend.FrontendParams
  model: Any               # flax.linen.Module
  variables: dict
  num_frames: int
  num_features: int
  clip_samples: int
  sample_rate: int
  step: int
  workdir: pathlib.Path

  @functools.cached_property
  def _predict(self) -> Callable:
    from kws_jax.ops import frontend

    model, frontend_params = self.model, self.frontend

    @jax.jit
    def predict(variables, audio):
      return model.apply(variables, frontend.featurize(frontend_params, audio), train=False)
    return predict

  def predict(self, audio: np.ndarray | jax.Array) -> jax.Array:
    """Logits (B, C) for clips (B, S): float32 in [-1, 1] or int16."""
    audio = jnp.asarray(audio)
    if audio.ndim != 2 or audio.shape[1] != self.clip_samples:
      raise KwsError(f"predict expects clips of shape (batch, {self.clip_samples}), "
                     f"got {tuple(audio.shape)}")
    return self._predict(self.variables, audio)


def load(workdir: str | os.PathLike, which: str = BEST) -> Trained:
  """The model of a training workdir; KwsError when missing or incompatible."""
  if which not in (BEST, LATEST):
    raise KwsError(f"which={which!r}: choose 'best' or 'latest'")
  workdir = pathlib.Path(workdir)
  if not workdir.is_dir():
    raise KwsError(f"{workdir}: no such workdir; train first with "
                   "`python -m kws_jax.train experiments/<name>.py --workdir DIR`")
  config = config_lib.load_json(workdir / "config.json")
  labels_path = workdir / "labels.txt"
  if not labels_path.is_file():
    raise KwsError(f"{labels_path}: missing; is {workdir} a training workdir?")
  label_names = [line for line in labels_path.read_text().splitlines() if line]
  directory = checkpoint_dir(workdir, which)
  if not directory.is_dir():
    raise KwsError(f"{workdir}: no {which} checkpoint yet ({directory} is missing); "
                   "train (or resume training) first")
  manager = checkpoint_manager(workdir, which, read_only=True)
  found = restore_latest_good(manager, {"meta": ocp.args.JsonRestore()})
  if found is None:
    raise KwsError(f"{directory}: holds no readable checkpoint; train (or resume training) first")
  step, restored = found
  meta = restored.meta
  if meta.get("format") != CHECKPOINT_FORMAT:
    raise KwsError(f"{directory}/{step}: checkpoint format {meta.get('format')} is not the "
                   f"format {CHECKPOINT_FORMAT} this kws_jax reads; retrain")
  if list(meta["label_names"]) != label_names:
    raise KwsError(f"{directory}/{step}: labels {meta['label_names']} differ from "
                   f"{labels_path} {label_names}; the workdir is inconsistent")
  frontend_params, model, num_frames, num_features = build(
      config, len(label_names), meta["clip_samples"])
  if (num_frames, num_features) != (meta["num_frames"], meta["num_features"]):
    raise KwsError(f"{directory}/{step}: trained on ({meta['num_frames']}, "
                   f"{meta['num_features']}) features, the config now gives "
                   f"({num_frames}, {num_features}); the frontend code or config changed")
  target = abstract_variables(model, num_frames, num_features)
  try:
    restored = manager.restore(step, args=ocp.args.Composite(
        model=ocp.args.StandardRestore(target)))
  except Exception as e:
    message = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
    raise KwsError(f"{directory}/{step}: weights do not fit the model the config builds "
                   f"({message}); the model code or config changed since training") from None
  variables = restored.model
  _check_shapes(target, variables, f"{directory}/{step}")
  return Trained(config=config, label_names=label_names, frontend=frontend_params, model=model,
                 variables=variables, num_frames=num_frames, num_features=num_features,
                 clip_samples=int(meta["clip_samples"]), sample_rate=int(meta["sample_rate"]),
                 step=int(step), workdir=workdir)


def _check_shapes(target, restored, where: str) -> None:
  expected = jax.tree_util.tree_structure(target)
  got = jax.tree_util.tree_structure(restored)
  if expected != got:
    raise KwsError(f"{where}: weights do not fit the model the config builds; "
                   "the model code or config changed since training")
  for a, b in zip(jax.tree.leaves(target), jax.tree.leaves(restored)):
    if tuple(a.shape) != tuple(b.shape):
      raise KwsError(f"{where}: a weight of shape {tuple(b.shape)} where the model needs "
                     f"{tuple(a.shape)}; the model code or config changed since training")


def parameter_count(variables: dict) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(variables.get("params", {}))))


__all__: Sequence[str] = ("Trained", "load", "build", "BEST", "LATEST")
