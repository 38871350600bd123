"""Multi-process training: starting JAX's distributed runtime, and who writes what.

Every process runs the same training loop on the same config. They share one
1-D device mesh (`parallel.training_mesh`) and one workdir (a shared filesystem):

- data: each process holds the dataset and derives every epoch's order from
  (seed, epoch), so all agree on each global batch; each process copies only its
  own rows of it to its devices (`parallel.put_batches`).
- randomness: every key is folded from (seed, step) and split per example of the
  global batch inside the jitted step, so the augmentation and dropout of a clip
  depend on its global position, not on which process or device computes it.
- checkpoints: every process takes part in Orbax's multi-process save (replicated
  arrays are written once) and restores with the current mesh's shardings, so a
  run resumes on a different number of processes or devices.
- files: config.json, labels.txt, metrics, TensorBoard events, results.json and
  the plots are written by process 0 only; the others read.

On CPU, collectives between processes go through gloo (JAX's CPU collectives), so
multi-process runs work (and are tested) on a machine without accelerators.
"""

from __future__ import annotations

import os
from typing import Callable, TypeVar

import jax
from jax.experimental import multihost_utils

from kws_jax.errors import KwsError

T = TypeVar("T")

ENV_VARIABLES = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
  """Starts multi-process JAX; call once, before any other JAX work.

  Arguments left None come from JAX's own cluster detection (SLURM, Open MPI,
  TPU pods) or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID.
  """
  # Only the CPU client reads this; it must be set before the backend starts.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  if num_processes is None and os.environ.get("JAX_NUM_PROCESSES"):
    num_processes = int(os.environ["JAX_NUM_PROCESSES"])
  if process_id is None and os.environ.get("JAX_PROCESS_ID"):
    process_id = int(os.environ["JAX_PROCESS_ID"])
  if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
    raise KwsError(f"process id {process_id} is not in 0..{num_processes - 1}")
  try:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
  except (RuntimeError, ValueError) as e:
    first_line = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    raise KwsError(f"could not start multi-process JAX ({first_line}); give "
                   "--distributed.coordinator_address=HOST:PORT --distributed.num_processes=N "
                   "--distributed.process_id=I (or run under SLURM / Open MPI / a TPU pod, "
                   "or set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID)") from None


def wanted_from_environment() -> bool:
  """True when the environment names a coordinator (JAX_COORDINATOR_ADDRESS)."""
  return bool(os.environ.get("JAX_COORDINATOR_ADDRESS"))


def is_primary() -> bool:
  """Process 0: the one that writes the workdir's files and prints progress."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process gets here (a no-op in a one-process run)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def primary_first(name: str, fn: Callable[[], T]) -> T:
  """Runs `fn` on process 0, then on the others: e.g. loading data that builds a shared cache."""
  if is_primary():
    result = fn()
    barrier(name)
  else:
    barrier(name)
    result = fn()
  return result
