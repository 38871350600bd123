"""A trained model from a workdir: config, labels, frontend, Flax model and weights.

`load(workdir)` is how every later stage (evaluate, streaming, export) gets a
model; the workdir's checkpoints are `kws_jax.runs.checkpoints`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from kws_jax.configs import loader as config_loader
from kws_jax.errors import KwsError
from kws_jax.models import builder
from kws_jax.runs.checkpoints import (BEST, CHECKPOINT_FORMAT, LATEST, checkpoint_dir,
                                      checkpoint_manager, restore_latest_good)

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
    return builder.make_logits_fn(self.model, self.frontend)

  def predict(self, audio: np.ndarray | jax.Array) -> jax.Array:
    """Logits (B, C) for clips (B, S): float32 in [-1, 1] or int16."""
    audio = jnp.asarray(audio)
    if audio.ndim != 2 or audio.shape[1] != self.clip_samples:
      raise KwsError(f"predict expects clips of shape (batch, {self.clip_samples}), "
                     f"got {tuple(audio.shape)}")
    return self._predict(self.variables, audio)


def load(workdir: str | os.PathLike, which: str = BEST, *, sharding=None) -> Trained:
  """The model of a training workdir; KwsError when missing or incompatible.

  sharding: where the restored weights go (e.g. replicated over a training mesh);
  None: this process's first device, whatever devices the run trained on.
  """
  if which not in (BEST, LATEST):
    raise KwsError(f"which={which!r}: choose 'best' or 'latest'")
  workdir = pathlib.Path(workdir)
  if not workdir.is_dir():
    raise KwsError(f"{workdir}: no such workdir; train first with "
                   "`python -m kws_jax.train experiments/<name>.py --workdir DIR`")
  config = config_loader.load_json(workdir / "config.json")
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
  frontend_params, model, num_frames, num_features = builder.build(
      config, len(label_names), meta["clip_samples"])
  if (num_frames, num_features) != (meta["num_frames"], meta["num_features"]):
    raise KwsError(f"{directory}/{step}: trained on ({meta['num_frames']}, "
                   f"{meta['num_features']}) features, the config now gives "
                   f"({num_frames}, {num_features}); the frontend code or config changed")
  target = builder.abstract_variables(model, num_frames, num_features)
  # Orbax restores onto the saved topology unless told otherwise; a run trained on
  # several devices would then not load on one.
  sharding = sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                        target)
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


