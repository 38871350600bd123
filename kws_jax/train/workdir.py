"""A training workdir's config.json (written on the first run, checked on every resume) and its
lock (one training run per workdir)."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import socket
import sys
import time
from typing import Any, Iterator

import ml_collections

from kws_jax.configs import loader as config_loader
from kws_jax.errors import ConfigError, TrainingError
from kws_jax.runs import checkpoints

LOCK_NAME = "train.lock"

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


def _holder(path: pathlib.Path) -> dict | None:
  """The lock's {pid, host, started}; None when it is gone or unreadable (a torn write)."""
  try:
    holder = json.loads(path.read_text())
  except (OSError, json.JSONDecodeError):
    return None
  return holder if isinstance(holder, dict) else None


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Another user's live process.
    return True
  return True


@contextlib.contextmanager
def locked(workdir: pathlib.Path) -> Iterator[None]:
  """Holds `workdir/train.lock` (pid and host) while one run trains in `workdir`.

  A second run is refused with a TrainingError naming the holder; the lock of a process that
  no longer exists on this host (killed, machine rebooted) is taken over. A workdir this call
  created and nothing else filled (a run refused at once) is removed again.
  """
  created = not workdir.exists()
  workdir.mkdir(parents=True, exist_ok=True)
  path = workdir / LOCK_NAME
  host, pid = socket.gethostname(), os.getpid()
  mine = json.dumps(dict(pid=pid, host=host, started=time.strftime("%Y-%m-%d %H:%M:%S"))) + "\n"
  try:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
  except FileExistsError:
    holder = _holder(path) or {}
    if holder.get("host") != host or _alive(int(holder.get("pid", -1))):
      raise TrainingError(
          f"{workdir} is in use by another training run (pid {holder.get('pid', '?')} on "
          f"{holder.get('host', '?')}, since {holder.get('started', '?')}); wait for it to end or "
          f"use another --workdir (if that run is gone, delete {path})") from None
    print(f"taking over the stale lock {path} of pid {holder.get('pid')} (no such process)",
          file=sys.stderr)
    tmp = path.with_suffix(f".{pid}.tmp")
    tmp.write_text(mine)
    os.replace(tmp, path)
    if (_holder(path) or {}).get("pid") != pid:  # Another run took it over at the same moment.
      raise TrainingError(f"{workdir} is in use by another training run (it took over "
                          f"{path} at the same time); use another --workdir") from None
  else:
    with os.fdopen(fd, "w") as f:
      f.write(mine)
  try:
    yield
  finally:
    if (_holder(path) or {}).get("pid") == pid:
      path.unlink(missing_ok=True)
    if created and not any(workdir.iterdir()):
      workdir.rmdir()
