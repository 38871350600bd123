"""Data-parallel training over devices with `jax.sharding` (a 1-D mesh over the batch axis).

The trainer (`kws_jax.train.loop`) jits its step with shardings over
`training_mesh(...)`: parameters, optimizer and BatchNorm state replicated, each
batch split on its example axis (`put_batches`), and XLA (GSPMD) inserts the
collectives. The program keeps the one-device semantics: the loss and gradients
are means over the global batch and BatchNorm normalizes with the global batch's
statistics (a cross-device mean, like SyncBatchNorm), so the numbers equal a
one-device run's up to float summation order. One device is the same code on a
1-device mesh.

The hand-written steps below (`make_train_step`, `make_train_epoch`, used by
`kws_jax.bench.train_speed`) map the loss over devices with `shard_map` instead:
each device gets an equal slice of the global batch, computes the loss and
gradients of its slice, and the gradients are averaged across the mesh
(`lax.pmean`), so for a loss that is a mean over examples the update equals the
single-device update on the whole global batch (up to float summation order).
Parameters and optimizer state are replicated.

  mesh = parallel.batch_mesh()                       # all local devices
  step = parallel.make_train_step(loss_fn, optax.adam(1e-3), mesh)
  params, opt_state = parallel.replicate((params, opt.init(params)), mesh)
  params, opt_state, loss = step(params, opt_state, parallel.shard_batch(batch, mesh))

`loss_fn(params, *batch) -> scalar` is the mean loss over the examples in
`batch` (arrays with the batch on axis 0). In these shard_map steps, models with
BatchNorm normalize with each device's own slice (like torch DDP without SyncBatchNorm).

On one CPU host, XLA exposes one device unless told otherwise; set
`XLA_FLAGS=--xla_force_host_platform_device_count=N` before JAX starts to
split the cores into N devices (the benchmark does this: small recurrent
matmuls run faster one per core than split across cores).

Multi-host: call `initialize_distributed(...)` (`kws_jax.train.distributed.initialize`)
first in every process (same arguments except `process_id`), then
`batch_mesh(global_devices=True)` or `training_mesh(...)`; each process passes its
own share of the global batch to `shard_batch`, or the global batch to `put_batches`.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from kws_jax.errors import ConfigError
from kws_jax.train import distributed

BATCH_AXIS = "batch"
PyTree = Any

initialize_distributed = distributed.initialize


def batch_mesh(num_devices: int | None = None, *, global_devices: bool = False,
               devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named `batch` over the first `num_devices` local devices (default: all).

  global_devices: every process's devices (multi-host), after `initialize_distributed`.
  """
  if devices is None:
    devices = jax.devices() if global_devices else jax.local_devices()
    if num_devices is not None:
      if not 1 <= num_devices <= len(devices):
        raise ConfigError(f"asked for {num_devices} devices but {len(devices)} are available "
                          "(on CPU, set XLA_FLAGS=--xla_force_host_platform_device_count=N "
                          "before starting Python)")
      devices = devices[:num_devices]
  return Mesh(np.asarray(devices), (BATCH_AXIS,))


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "batch size") -> None:
  """The global batch must split evenly over the mesh's devices."""
  n = mesh.devices.size
  if batch_size % n:
    raise ConfigError(f"{what} {batch_size} does not split evenly over {n} devices; "
                      f"use a multiple of {n}")


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
  """Copies every array of `tree` whole onto every device of `mesh`.

  Always a copy, so donating the result to a train step never deletes the caller's arrays.
  """
  # Through host memory: device_put(may_alias=False) still reuses the source buffer for the
  # shard on the source device when replicating over several devices (JAX 0.10.2). From a
  # callback, so that it also builds arrays over other processes' devices (each process
  # passes the same values).
  sharding = NamedSharding(mesh, P())

  def put(x):
    host = np.array(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree.map(put, tree)


def shard_batch(tree: PyTree, mesh: Mesh, axis: int = 0) -> PyTree:
  """Splits arrays along `axis` (the batch) over the mesh.

  On one host the arrays are the global batch; on several hosts each process
  passes its own contiguous share and gets back the global arrays.
  """
  spec = P(*([None] * axis + [BATCH_AXIS]))
  sharding = NamedSharding(mesh, spec)

  def put(x):
    x = np.asarray(x) if not isinstance(x, jax.Array) else x
    if jax.process_count() > 1:
      return jax.make_array_from_process_local_data(sharding, np.asarray(x))
    check_batch_size(x.shape[axis], mesh)
    return jax.device_put(x, sharding)

  return jax.tree.map(put, tree)


def training_mesh(num_devices: int = 0) -> Mesh:
  """The trainer's mesh: `num_devices` devices of every process (0: all), in process order.

  Every process contributes the same number of devices, so each feeds an equal,
  contiguous share of every global batch.
  """
  by_process: dict[int, list[jax.Device]] = {}
  for device in jax.devices():
    by_process.setdefault(device.process_index, []).append(device)
  local = len(by_process[jax.process_index()])
  if num_devices < 0 or num_devices > local:
    raise ConfigError(f"train.num_devices={num_devices} but this process has {local} device(s) "
                      "(0 = all; on CPU, set XLA_FLAGS=--xla_force_host_platform_device_count=N "
                      "before starting Python)")
  count = num_devices or min(len(d) for d in by_process.values())
  devices = [d for p in sorted(by_process) for d in sorted(by_process[p], key=lambda d: d.id)[:count]]
  return Mesh(np.asarray(devices), (BATCH_AXIS,))


def process_rows(batch_size: int, mesh: Mesh) -> slice:
  """The rows of a global batch of `batch_size` that this process puts on its devices."""
  check_batch_size(batch_size, mesh)
  indices = NamedSharding(mesh, P(BATCH_AXIS)).addressable_devices_indices_map((batch_size,))
  starts = sorted(index[0].start or 0 for index in indices.values())
  per_device = batch_size // mesh.devices.size
  return slice(starts[0], starts[-1] + per_device)


def put_batches(mesh: Mesh, *arrays: np.ndarray, axis: int = 1,
                local: bool = False) -> tuple[jax.Array, ...]:
  """Global arrays split over the mesh on `axis` (the examples), from host arrays.

  local=False: every process passes the whole global arrays and copies only its own
  rows; local=True: each passes just its rows (`process_rows`), e.g. read from its
  own share of the data.
  """
  spec = NamedSharding(mesh, P(*([None] * axis + [BATCH_AXIS])))
  out = []
  for x in arrays:
    x = np.asarray(x)
    if not local:
      rows = process_rows(x.shape[axis], mesh)
      x = x[(slice(None),) * axis + (rows,)]
    out.append(jax.make_array_from_process_local_data(spec, x))
  return tuple(out)


def sharded_logits_fn(logits_fn: Callable, mesh: Mesh) -> Callable:
  """`logits_fn(variables, audio)` with the batch split over the mesh; logits come back whole.

  Takes host batches (every process passes the same global batch) and returns a host
  array, as `evaluation.classification.evaluate_arrays` expects.
  """
  whole = jax.jit(lambda variables, audio: logits_fn(variables, audio),
                  out_shardings=NamedSharding(mesh, P()))

  def logits(variables, audio):
    check_batch_size(len(audio), mesh, "train.eval_batch_size")
    (audio,) = put_batches(mesh, audio, axis=0)
    return np.asarray(whole(variables, audio))

  return logits


def data_parallel_value_and_grad(loss_fn: Callable[..., jax.Array], mesh: Mesh
                                 ) -> Callable[..., tuple[jax.Array, PyTree]]:
  """`(params, *batch) -> (loss, grads)` of the global-batch mean loss, computed per device.

  Call it inside `jax.jit` with params replicated and batch arrays sharded on axis 0.
  """
  def local(params, *batch):
    loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
    return jax.lax.pmean((loss, grads), BATCH_AXIS)

  def value_and_grad(params, *batch):
    # check_vma=False: model code written for one device (e.g. a scan carry started
    # from jnp.zeros) runs unchanged, and gradients stay per-device values until
    # the explicit pmean above (the equality test against one device checks this).
    mapped = jax.shard_map(local, mesh=mesh, in_specs=(P(),) + (P(BATCH_AXIS),) * len(batch),
                           out_specs=P(), check_vma=False)
    return mapped(params, *batch)

  return value_and_grad


def _update(optimizer: optax.GradientTransformation, params, opt_state, grads):
  updates, opt_state = optimizer.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


def make_train_step(loss_fn: Callable[..., jax.Array], optimizer: optax.GradientTransformation,
                    mesh: Mesh) -> Callable[..., tuple[PyTree, PyTree, jax.Array]]:
  """Jitted `(params, opt_state, *batch) -> (params, opt_state, loss)`; donates params/state."""
  grad_fn = data_parallel_value_and_grad(loss_fn, mesh)
  replicated = NamedSharding(mesh, P())

  @functools.partial(jax.jit, donate_argnums=(0, 1),
                     out_shardings=(replicated, replicated, replicated))
  def step(params, opt_state, *batch):
    loss, grads = grad_fn(params, *batch)
    params, opt_state = _update(optimizer, params, opt_state, grads)
    return params, opt_state, loss

  return step


def make_train_epoch(loss_fn: Callable[..., jax.Array], optimizer: optax.GradientTransformation,
                     mesh: Mesh) -> Callable[..., tuple[PyTree, PyTree, jax.Array]]:
  """Jitted `(params, opt_state, *batches) -> (params, opt_state, losses)`.

  `batches` arrays are (steps, global_batch, ...), sharded on axis 1 (see
  `shard_batch(..., axis=1)`); the whole epoch is one `lax.scan` on the devices,
  so there is no per-step dispatch from Python.
  """
  grad_fn = data_parallel_value_and_grad(loss_fn, mesh)
  replicated = NamedSharding(mesh, P())

  @functools.partial(jax.jit, donate_argnums=(0, 1),
                     out_shardings=(replicated, replicated, replicated))
  def epoch(params, opt_state, *batches):
    def body(carry, batch):
      params, opt_state = carry
      loss, grads = grad_fn(params, *batch)
      return _update(optimizer, params, opt_state, grads), loss

    (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), batches)
    return params, opt_state, losses

  return epoch


__all__ = ["BATCH_AXIS", "initialize_distributed", "batch_mesh", "check_batch_size", "replicate",
           "shard_batch", "training_mesh", "process_rows", "put_batches", "sharded_logits_fn",
           "data_parallel_value_and_grad", "make_train_step", "make_train_epoch"]
