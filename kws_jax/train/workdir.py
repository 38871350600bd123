"""A training workdir's config.json: written on the first run, checked on every resume."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import ml_collections

from kws_jax.configs import loader as config_loader
from kws_jax.errors import ConfigError
from kws_jax.runs import checkpoints

# Keys a resumed run may change: they do not change what is computed (the number of
# devices splits the same global batch; results agree up to float summation order).
RESUMABLE_CHANGES = ("train.num_devices",)


def prepare_workdir(workdir: pathlib.Path, config: ml_collections.ConfigDict,
                    write: bool = True) -> None:
  """Writes config.json (when `write`), or checks that a resumed run has the same config."""
  workdir.mkdir(parents=True, exist_ok=True)
  path = workdir / "config.json"
  current = config_loader.to_dict(config)
  if path.exists():
    try:
      saved = json.loads(path.read_text())
    except json.JSONDecodeError:
      saved = None
    changed = [] if saved is None else sorted(
        k for k in diff_keys(saved, current) if k not in RESUMABLE_CHANGES)
    # Only a run with checkpoints is resumed; a run that failed before its first may change.
    if changed and any(checkpoints.checkpoint_dir(workdir, checkpoints.LATEST).glob("[0-9]*")):
      raise ConfigError(
          f"{workdir} holds a run with a different config (changed: {', '.join(changed[:8])}); "
          "resuming needs the same config: use a new --workdir, or delete the old one")
  if not write:
    return
  tmp = path.with_suffix(".json.tmp")
  tmp.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
  os.replace(tmp, path)


def diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
  if isinstance(a, dict) and isinstance(b, dict):
    out = []
    for key in sorted(set(a) | set(b)):
      out += diff_keys(a.get(key, "<missing>"), b.get(key, "<missing>"), f"{prefix}{key}.")
    return out
  return [] if a == b else [prefix.rstrip(".")]
