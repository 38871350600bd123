"""Orbax checkpoints of a training workdir: `checkpoints/latest/<step>` and `checkpoints/best/<step>`.

The trainer writes `latest` (weights, optimizer state, progress) and `best` (the
weights of the best validation accuracy); every later stage reads them through
`kws_jax.runs.trained_model.load`.
"""

from __future__ import annotations

import logging
import os
import pathlib
import warnings
from typing import Any

import orbax.checkpoint as ocp

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
