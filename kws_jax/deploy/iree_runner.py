"""Run a compiled streaming step (.vmfb) through IREE: CPU (local-sync) or Vulkan.

    runner = IreeStep("compiled/host-cpu")          # device from compile.json
    state = runner.initial_state()
    state, outputs = runner.step(state, samples)      # numpy in, numpy out

Results are read back through a host-visible staging buffer filled by a device
queue copy: mapping a Vulkan buffer directly (`DeviceArray.to_host`) fails on
lavapipe because numpy memory does not meet Vulkan's 4096-byte host-pointer
import alignment. On CPU devices the same path costs one small memcpy.

When the compiled dir has a chunk module (`kws_chunk.vmfb`, host-cpu), `run` feeds
it about 1 s of audio per call and steps only the remainder hop by hop: the
per-call cost of the Python bindings (buffer uploads, invoke, read-back; a few
hundred us) is then paid once per chunk instead of once per hop.

`run_module_tool` calls the `iree-run-module` command line tool for one step, the
way firmware developers check a module by hand.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Sequence

import iree.runtime as ireert
import numpy as np
from iree.runtime import BufferUsage, HalElementType, HalFence, MemoryType

from kws_jax.deploy import iree_compile, protocol
from kws_jax.deploy import stablehlo_export as export
from kws_jax.errors import ExportError

_IREE_TYPES = {"f32": "float32", "f16": "float16", "f64": "float64", "i32": "int32",
               "i8": "int8", "i16": "int16", "i64": "int64", "i1": "bool", "ui8": "uint8"}


def parse_abi_declaration(declaration: str) -> tuple[list[tuple], list[tuple]]:
  """[(shape, dtype)] of inputs and outputs from IREE's `iree.abi.declaration` reflection."""
  head, _, tail = declaration.partition("->")

  def tensors(text: str) -> list[tuple]:
    out = []
    for body in re.findall(r"tensor<([^>]*)>", text):
      *dims, elem = body.split("x")
      out.append((tuple(int(d) for d in dims), _IREE_TYPES.get(elem, elem)))
    return out

  return tensors(head), tensors(tail)


def _element_type(dtype: np.dtype):
  return {np.dtype(np.float32): HalElementType.FLOAT_32, np.dtype(np.int32): HalElementType.SINT_32,
          np.dtype(np.int8): HalElementType.SINT_8, np.dtype(np.int16): HalElementType.SINT_16,
          np.dtype(np.int64): HalElementType.SINT_64, np.dtype(np.uint8): HalElementType.UINT_8,
          np.dtype(np.bool_): HalElementType.BOOL_8, np.dtype(np.float16): HalElementType.FLOAT_16,
          }[np.dtype(dtype)]


class IreeStep(protocol.MetaStepRunner):
  """A compiled dir's step, callable like the JAX step on numpy arrays."""

  def __init__(self, compiled_dir: str | os.PathLike, device: str | None = None,
               use_chunk: bool = True):
    """`use_chunk=False` ignores the chunk module (every hop is one call)."""
    self.dir = pathlib.Path(compiled_dir)
    self.meta, self.report = iree_compile.load_compiled(self.dir)
    if self.report["kind"] != "vmfb":
      raise ExportError(f"{compiled_dir} was compiled for {self.report['target']}, a bare-metal "
                        f"target; run it on the board (BUILD.md) or compile for host-cpu")
    self.device_name = device or self.report["device"]
    try:
      self._config = ireert.Config(self.device_name)
    except (RuntimeError, ValueError) as e:
      hint = (" (install a Vulkan driver, e.g. Debian's libvulkan1 mesa-vulkan-drivers)"
              if self.device_name.startswith("vulkan") else "")
      raise ExportError(f"cannot open IREE device {self.device_name!r}{hint}: "
                        f"{str(e).splitlines()[0]}") from None
    self._device = self._config.device
    self._context = ireert.SystemContext(config=self._config)
    vmfb = self.dir / iree_compile.VMFB_FILE
    self._module = ireert.VmModule.copy_buffer(self._context.instance, vmfb.read_bytes())
    try:
      self._context.add_vm_module(self._module)
    except RuntimeError as e:
      raise ExportError(f"{vmfb} cannot run on device {self.device_name!r} (compiled for "
                        f"{self.report['target']}): {str(e).splitlines()[0][:200]}") from None
    self._function = self._module.lookup_function(self.meta["function"])
    if self._function is None:
      raise ExportError(f"{vmfb} has no function {self.meta['function']!r}; compile again")
    self._check_signature()
    self.chunk_hops = 0
    self._chunk_function = None
    chunk = self.report.get("chunk")
    if use_chunk and chunk and (self.meta.get("chunk") or {}).get("hops") == chunk["hops"]:
      chunk_vmfb = self.dir / iree_compile.CHUNK_VMFB_FILE
      chunk_module = ireert.VmModule.copy_buffer(self._context.instance, chunk_vmfb.read_bytes())
      self._context.add_vm_module(chunk_module)
      self._chunk_function = chunk_module.lookup_function(self.meta["chunk"]["function"])
      if self._chunk_function is None:
        raise ExportError(f"{chunk_vmfb} has no function {self.meta['chunk']['function']!r}; "
                          f"compile again")
      self.chunk_hops = int(chunk["hops"])
      self._chunk_inputs = [{**self.meta["inputs"][0],
                             "shape": [self.chunk_hops, *self.meta["inputs"][0]["shape"]]},
                            *self.meta["inputs"][1:]]
      inputs, _ = parse_abi_declaration(
          self._chunk_function.reflection.get("iree.abi.declaration", ""))
      if inputs != [(tuple(i["shape"]), i["dtype"]) for i in self._chunk_inputs]:
        raise ExportError(f"{chunk_vmfb} does not match its meta.json (module takes {inputs}); "
                          f"compile the export again")
    self._initial = export.load_initial_state(self.dir, self.meta)
    self._semaphore = self._device.create_semaphore(0)
    self._timepoint = 0
    self.num_outputs = len(self.meta["outputs"]) - len(self.meta["state"])
    self.output_names = [o["name"] for o in self.meta["outputs"][:self.num_outputs]]

  def _check_signature(self) -> None:
    declaration = self._function.reflection.get("iree.abi.declaration", "")
    inputs, outputs = parse_abi_declaration(declaration)
    want_in = [(tuple(i["shape"]), i["dtype"]) for i in self.meta["inputs"]]
    want_out = [(tuple(o["shape"]), o["dtype"]) for o in self.meta["outputs"]]
    if (inputs, outputs) != (want_in, want_out):
      raise ExportError(f"{self.dir / iree_compile.VMFB_FILE} does not match its meta.json "
                        f"(module takes {inputs}, meta says {want_in}); compile the export again")

  def _upload(self, array: np.ndarray, spec: dict):
    array = np.array(array, dtype=spec["dtype"], order="C")  # ascontiguousarray makes 0-d 1-d
    if list(array.shape) != spec["shape"]:
      raise ExportError(f"input {spec['name']}: shape {list(array.shape)}, the module needs "
                        f"{spec['shape']}")
    return self._device.allocator.allocate_buffer_copy(
        memory_type=int(MemoryType.DEVICE_LOCAL), allowed_usage=int(BufferUsage.DEFAULT),
        device=self._device, buffer=array, element_type=_element_type(array.dtype))

  def _read_back(self, views: list, specs: list[dict]) -> list[np.ndarray]:
    """Results as numpy: mapped directly when the device allows (CPU), else staged (Vulkan).

    Staging: queue a copy of every result into its own host-visible buffer, wait once.
    """
    arrays: list = [None] * len(views)
    staged = []
    for i, (view, spec) in enumerate(zip(views, specs)):
      buffer = view.get_buffer()
      shape, dtype = tuple(spec["shape"]), np.dtype(spec["dtype"])
      if (buffer.memory_type() & int(MemoryType.HOST_VISIBLE)
          and buffer.allowed_usage() & int(BufferUsage.MAPPING_SCOPED)):
        # reshape: a mapped scalar comes back as shape (1,).
        arrays[i] = np.array(view.map().asarray(shape, dtype)).reshape(shape)
        continue
      staging = self._device.allocator.allocate_buffer(
          memory_type=int(MemoryType.HOST_LOCAL | MemoryType.DEVICE_VISIBLE),
          allowed_usage=int(BufferUsage.TRANSFER_TARGET | BufferUsage.MAPPING_SCOPED),
          allocation_size=int(buffer.byte_length()))
      wait = HalFence.create_at(self._semaphore, self._timepoint)
      self._timepoint += 1
      self._device.queue_copy(buffer, staging, wait,
                              HalFence.create_at(self._semaphore, self._timepoint))
      staged.append((i, staging, shape, dtype))
    if staged:
      HalFence.create_at(self._semaphore, self._timepoint).wait()
    for i, staging, shape, dtype in staged:
      arrays[i] = np.array(staging.map().asarray(shape, dtype)).reshape(shape)
    return arrays

  def _invoke(self, samples: np.ndarray, state_views: list, chunk: bool = False) -> list:
    """Calls the step (or chunk) function; state may be numpy arrays or result views."""
    specs = self._chunk_inputs if chunk else self.meta["inputs"]
    function = self._chunk_function if chunk else self._function
    if len(state_views) != len(self.meta["state"]):
      raise ExportError(f"expected {len(self.meta['state'])} state arrays, got {len(state_views)}")
    args = ireert.VmVariantList(len(specs))
    for value, spec in zip([samples, *state_views], specs):
      args.push_ref(value if isinstance(value, ireert.HalBufferView) else self._upload(value, spec))
    results = ireert.VmVariantList(len(self.meta["outputs"]))
    self._context.vm_context.invoke(function, args, results)
    return [results.get_as_object(i, ireert.HalBufferView) for i in range(results.size)]

  def step(self, state: Sequence[np.ndarray], samples: np.ndarray
           ) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """One hop: `(new_state, outputs)` as numpy, like the JAX step (state as a flat list)."""
    views = self._invoke(samples, list(state))
    values = self._read_back(views, self.meta["outputs"])
    return values[self.num_outputs:], dict(zip(self.output_names, values[:self.num_outputs]))

  def run(self, audio: np.ndarray, state: Sequence[np.ndarray] | None = None
          ) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Steps over `audio` (length a multiple of the hop); outputs stacked `(steps, ...)`.

    The state stays on the device between calls; only the outputs come back. Whole
    chunks go through the chunk function when there is one, the rest hop by hop.
    """
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1 or audio.size % self.hop_size:
      raise ExportError(f"audio must be 1-D with a length that is a multiple of "
                        f"{self.hop_size}; got shape {audio.shape}")
    state_views = list(state) if state is not None else self.initial_state()
    out_specs = self.meta["outputs"][:self.num_outputs]
    hops = audio.reshape(-1, self.hop_size)
    collected: list[list[np.ndarray]] = []   # per call: outputs with a leading hop axis
    done = 0
    if self.chunk_hops:
      chunk_specs = [{**o, "shape": [self.chunk_hops, *o["shape"]]} for o in out_specs]
      for start in range(0, hops.shape[0] - self.chunk_hops + 1, self.chunk_hops):
        views = self._invoke(hops[start:start + self.chunk_hops], state_views, chunk=True)
        state_views = views[self.num_outputs:]
        collected.append(self._read_back(views[:self.num_outputs], chunk_specs))
      done = len(collected) * self.chunk_hops
    for chunk in hops[done:]:
      views = self._invoke(chunk, state_views)
      state_views = views[self.num_outputs:]
      collected.append([v[None] for v in self._read_back(views[:self.num_outputs], out_specs)])
    final_state = self._read_back(state_views, self.meta["state"]) if collected else state_views
    stacked = {name: (np.concatenate([c[i] for c in collected]) if collected else
                      np.zeros((0, *out_specs[i]["shape"]), out_specs[i]["dtype"]))
               for i, name in enumerate(self.output_names)}
    return [np.asarray(s) for s in final_state], stacked


def run_module_tool(compiled_dir: str | os.PathLike,
                    state: Sequence[np.ndarray],
                    samples: np.ndarray,
                    *,
                    device: str | None = None) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
  """One step through the `iree-run-module` command line tool (npy files in and out)."""
  meta, report = iree_compile.load_compiled(compiled_dir)
  tool = run_module_path()
  with tempfile.TemporaryDirectory() as tmp:
    inputs = [pathlib.Path(tmp) / f"in{i}.npy" for i in range(len(meta["inputs"]))]
    for path, value, spec in zip(inputs, [samples, *state], meta["inputs"]):
      np.save(path, np.array(value, dtype=spec["dtype"], order="C"))
    outs = [pathlib.Path(tmp) / f"out{i}.npy" for i in range(len(meta["outputs"]))]
    command = [tool, f"--module={pathlib.Path(compiled_dir) / iree_compile.VMFB_FILE}",
               f"--device={device or report['device']}", f"--function={meta['function']}",
               *[f"--input=@{i}" for i in inputs], *[f"--output=@{o}" for o in outs]]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
      raise ExportError(f"iree-run-module failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
    values = [np.load(o) for o in outs]
  num_outputs = len(meta["outputs"]) - len(meta["state"])
  names = [o["name"] for o in meta["outputs"][:num_outputs]]
  return values[num_outputs:], dict(zip(names, values[:num_outputs]))


def run_module_path() -> str:
  """The iree-run-module binary of the installed iree-base-runtime."""
  candidates = [pathlib.Path(sys.executable).parent / "iree-run-module"]
  found = shutil.which("iree-run-module")
  if found:
    candidates.append(pathlib.Path(found))
  for path in candidates:
    if path.is_file():
      return str(path)
  raise ExportError("iree-run-module not found; install iree-base-runtime in this environment")

