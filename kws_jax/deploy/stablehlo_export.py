"""Export the streaming step as portable StableHLO with explicit state, plus meta.json.

    python -m kws_jax.export --workdir DIR --out EXPORT_DIR [--quantize int8]

The exported function is flat, so that any runtime (IREE's Python bindings,
`iree-run-module`, firmware in C) can call it without knowing JAX pytrees:

    main(samples f32[hop], *state) -> (*outputs, *new_state)

with the state leaves and outputs in the order listed in meta.json. An export dir
holds, per featurizer variant V (the trained spectrum, plus "dft" for Vulkan and
"rfft" for microcontrollers when the trained one differs):
  step_V.mlirbc   StableHLO portable bytecode (what `kws_jax.compile` reads)
  step_V.mlir     the same module as text, for reading and checks
and once: meta.json, initial_state.npz (the state before the first hop).

For host runtimes it also writes `chunk_V.mlirbc` (default variant only): the same
step scanned over `chunk_hops` hops (about 1 s of audio) per call,

    main(samples f32[chunk_hops, hop], *state) -> (*outputs stacked per hop, *new_state)

so that a Python caller pays the per-call overhead once per second of audio, not
once per hop. It contains a `stablehlo.while` (unless exported with
--chunk-unroll), which is why the embedded targets never compile it; the per-hop
step stays loop-free.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import re
import shutil
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import kws_jax
from kws_jax import errors
from kws_jax.deploy import int8, streaming_step
from kws_jax.deploy.streaming_step import StreamingStep
from kws_jax.errors import ConfigError, ExportError
from kws_jax.runs import trained_model
from kws_jax.runs.trained_model import Trained

EXPORT_FORMAT = "kws_jax.export"
EXPORT_FORMAT_VERSION = 1
META_FILE = "meta.json"
INITIAL_STATE_FILE = "initial_state.npz"
FUNCTION_NAME = "main"
# The module is named after the traced function: jit_<name>.
MODULE_BASENAME = "kws_step"
MODULE_NAME = f"jit_{MODULE_BASENAME}"
CHUNK_BASENAME = "kws_chunk"
CHUNK_MODULE_NAME = f"jit_{CHUNK_BASENAME}"

_FORBIDDEN_OPS = {
    "stablehlo.custom_call": "a custom call (IREE cannot compile host-specific kernels)",
    "stablehlo.while": "a loop (lax.scan/while_loop); the step must be straight-line code",
}


def flat_signature(step: StreamingStep) -> tuple[list[dict], list[dict], list[dict], list[np.ndarray]]:
  """(inputs, outputs, state) descriptions and the initial state leaves, in call order."""
  state0 = step.initial_state()
  state_leaves = jax.tree_util.tree_flatten_with_path(state0)[0]
  state = [{"name": "state." + jax.tree_util.keystr(p, simple=True, separator="."),
            "shape": list(np.shape(v)), "dtype": str(np.asarray(v).dtype)}
           for p, v in state_leaves]
  samples = jax.ShapeDtypeStruct((step.hop_size,), jnp.float32)
  _, out_shapes = jax.eval_shape(step.apply, step.params, state0, samples)
  outputs = [{"name": name, "shape": list(out_shapes[name].shape),
              "dtype": str(out_shapes[name].dtype)} for name in sorted(out_shapes)]
  inputs = [{"name": "samples", "shape": [step.hop_size], "dtype": "float32"}] + state
  return inputs, outputs + state, state, [np.asarray(v) for _, v in state_leaves]


def flat_function(step: StreamingStep):
  """`f(samples, *state_leaves) -> (*outputs, *new_state_leaves)`, weights baked in."""
  state0 = step.initial_state()
  treedef = jax.tree.structure(state0)
  num_state = treedef.num_leaves

  def kws_step(samples, *state_leaves):
    if len(state_leaves) != num_state:
      raise ExportError(f"expected {num_state} state arrays, got {len(state_leaves)}")
    state = jax.tree.unflatten(treedef, state_leaves)
    new_state, outputs = step.apply(step.params, state, samples)
    return (*[outputs[k] for k in sorted(outputs)], *jax.tree.leaves(new_state))

  kws_step.__name__ = MODULE_BASENAME
  return kws_step


def chunk_function(step: StreamingStep, hops: int, unroll: bool = False):
  """`f(samples (hops, hop), *state) -> (*outputs (hops, ...), *new_state)`: the step scanned.

  `unroll` writes the hops out as straight-line code (no `stablehlo.while`): ~1.3x
  faster on IREE's CPU backend for a GRU, but compile time grows with `hops`.
  """
  flat = flat_function(step)
  num_outputs = len(flat_signature(step)[1]) - jax.tree.structure(step.initial_state()).num_leaves

  def kws_chunk(samples, *state_leaves):
    def body(leaves, hop_samples):
      results = flat(hop_samples, *leaves)
      return tuple(results[num_outputs:]), tuple(results[:num_outputs])
    new_state, outputs = jax.lax.scan(body, tuple(state_leaves), samples, length=hops,
                                       unroll=bool(unroll))
    return (*outputs, *new_state)

  kws_chunk.__name__ = CHUNK_BASENAME
  return kws_chunk


def trace(step: StreamingStep, chunk_hops: int | None = None,
          unroll: bool = False) -> jax.export.Exported:
  """The flat step (or, with `chunk_hops`, the chunk function) as a jax.export.Exported."""
  inputs, _, _, _ = flat_signature(step)
  args = [jax.ShapeDtypeStruct(tuple(i["shape"]), jnp.dtype(i["dtype"])) for i in inputs]
  # Evaluated at trace time, whatever depends only on the weights becomes a constant
  # (BatchNorm's scale and shift, reshaped kernels): IREE keeps such small elementwise
  # work inside the dispatches that use it (a sqrt and a divide per channel and call in
  # every BatchNorm'd matrix product on the Cortex-M4; BUILD.md section 5).
  with jax.ensure_compile_time_eval():
    if chunk_hops is None:
      return jax.export.export(jax.jit(flat_function(step)))(*args)
    args[0] = jax.ShapeDtypeStruct((chunk_hops, step.hop_size), jnp.float32)
    return jax.export.export(jax.jit(chunk_function(step, chunk_hops, unroll)))(*args)


def check_module_text(text: str, allow_loops: bool = False) -> dict[str, int]:
  """Counts the StableHLO ops; raises ExportError for ops IREE cannot take from a step.

  `allow_loops` admits `stablehlo.while` (the host-only chunk function).
  """
  ops: dict[str, int] = {}
  for op in re.findall(r"\b(stablehlo\.[a-z_]+)\b", text):
    ops[op] = ops.get(op, 0) + 1
  for op, why in _FORBIDDEN_OPS.items():
    if op == "stablehlo.while" and allow_loops:
      continue
    if op in ops:
      raise ExportError(f"the exported step contains {op}: {why}; fix the model's `step`")
  for length in fft_lengths(text):
    if length & (length - 1):
      raise ExportError(
          f"the featurizer uses an FFT of length {length}, not a power of two, which IREE "
          f"cannot compile; set the frontend's fft_length to {1 << (length - 1).bit_length()} "
          f"or use spectrum='dft'")
  return dict(sorted(ops.items()))


def fft_lengths(text: str) -> list[int]:
  """FFT lengths in a StableHLO module's text (pretty or generic form)."""
  found = re.findall(r"stablehlo\.fft[^\n]*?length\s*=\s*(?:array<i64:\s*|\[)\s*([\d,\s]+)", text)
  return [math.prod(int(n) for n in group.replace(" ", "").split(",") if n) for group in found]


def export_step(step: StreamingStep,
                out_dir: str | os.PathLike,
                *,
                variants: dict[str, StreamingStep] | None = None,
                default_variant: str = "rfft",
                chunk_hops: int | None = None,
                chunk_unroll: bool = False,
                extra_meta: dict[str, Any] | None = None) -> dict[str, Any]:
  """Writes `step` (and same-signature variants, e.g. a DFT featurizer) to `out_dir`.

  `chunk_hops`: hops per call of the host-only chunk function (None: about 1 s of
  audio; 0: no chunk function); `chunk_unroll`: see `chunk_function`. Returns the meta
  dict (also written as meta.json).
  """
  out = pathlib.Path(out_dir)
  variants = dict(variants or {})
  variants.setdefault(default_variant, step)
  inputs, outputs, state, state0 = flat_signature(step)
  out.mkdir(parents=True, exist_ok=True)
  modules = {}
  for name, variant in sorted(variants.items()):
    v_inputs, v_outputs, _, _ = flat_signature(variant)
    if (v_inputs, v_outputs) != (inputs, outputs):
      raise ExportError(f"variant {name!r} of the step has another signature than the "
                        f"{default_variant!r} one")
    exported = trace(variant)
    text = exported.mlir_module()
    ops = check_module_text(text)
    files = {"bytecode": f"step_{name}.mlirbc", "text": f"step_{name}.mlir"}
    (out / files["bytecode"]).write_bytes(exported.mlir_module_serialized)
    (out / files["text"]).write_text(text)
    modules[name] = {**files, "ops": ops}
  if chunk_hops is None:
    chunk_hops = max(1, round(step.sample_rate / step.hop_size))
  chunk = None
  if chunk_hops:
    exported = trace(variants[default_variant], chunk_hops, chunk_unroll)
    text = exported.mlir_module()
    check_module_text(text, allow_loops=not chunk_unroll)
    files = {"bytecode": f"chunk_{default_variant}.mlirbc", "text": f"chunk_{default_variant}.mlir"}
    (out / files["bytecode"]).write_bytes(exported.mlir_module_serialized)
    (out / files["text"]).write_text(text)
    chunk = {"hops": int(chunk_hops), "unrolled": bool(chunk_unroll),
             "module_name": CHUNK_MODULE_NAME, "function": FUNCTION_NAME,
             "modules": {default_variant: files}}
  np.savez(out / INITIAL_STATE_FILE, **{s["name"]: v for s, v in zip(state, state0)})
  meta = {
      "format": EXPORT_FORMAT,
      "format_version": EXPORT_FORMAT_VERSION,
      "kws_jax_version": kws_jax.__version__,
      "jax_version": jax.__version__,
      "module_name": MODULE_NAME,
      "function": FUNCTION_NAME,
      "default_variant": default_variant,
      "modules": modules,
      "chunk": chunk,
      "sample_rate": step.sample_rate,
      "hop_size": step.hop_size,
      "labels": list(step.label_names),
      "inputs": inputs,
      "outputs": outputs,
      "state": state,
      "initial_state": INITIAL_STATE_FILE,
      "num_weights": int(sum(np.size(x) for x in jax.tree.leaves(step.params))),
      "weight_bytes": int(sum(np.asarray(x).nbytes for x in jax.tree.leaves(step.params))),
      **{k: v for k, v in step.info.items()},
      **(extra_meta or {}),
  }
  (out / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
  return meta


def load_meta(export_dir: str | os.PathLike) -> dict[str, Any]:
  """Reads and checks meta.json of an export (or compiled) dir; ExportError when unusable."""
  path = pathlib.Path(export_dir) / META_FILE
  if not path.is_file():
    if (pathlib.Path(export_dir) / "config.json").is_file():  # a training workdir
      name = pathlib.Path(export_dir).resolve().name
      raise ExportError(f"{export_dir} is a training workdir, not an export; export it first "
                        f"with `python -m kws_jax.export --workdir {export_dir} "
                        f"--out exports/{name}` and use exports/{name}")
    raise ExportError(f"{export_dir}: not a kws_jax export dir (no {META_FILE}); make one with "
                      f"`python -m kws_jax.export --workdir W --out {export_dir}` (W: the "
                      "training workdir)")
  try:
    meta = json.loads(path.read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise ExportError(f"{path}: unreadable ({e}); export again") from None
  if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
    raise ExportError(f"{path}: not a kws_jax export meta file; export again")
  version = meta.get("format_version")
  written_by = meta.get("kws_jax_version", "unknown")
  if version != EXPORT_FORMAT_VERSION or _minor(written_by) != _minor(kws_jax.__version__):
    raise ExportError(
        f"{export_dir} was exported by kws_jax {written_by} (export format {version}); this is "
        f"kws_jax {kws_jax.__version__} (format {EXPORT_FORMAT_VERSION}): export it again with "
        f"`python -m kws_jax.export`")
  return meta


def load_initial_state(export_dir: str | os.PathLike, meta: dict | None = None) -> list[np.ndarray]:
  meta = meta or load_meta(export_dir)
  path = pathlib.Path(export_dir) / meta["initial_state"]
  if not path.is_file():
    raise ExportError(f"{path}: missing; export again")
  with np.load(path) as data:
    try:
      return [data[s["name"]] for s in meta["state"]]
    except KeyError as e:
      raise ExportError(f"{path} lacks state {e}; export again") from None


def export_trained(trained: Trained,
                   out_dir: str | os.PathLike,
                   *,
                   quantize: str | None = None,
                   vad: bool | None = None,
                   smoothing: bool | None = None,
                   chunk_hops: int | None = None,
                   chunk_unroll: bool = False,
                   vad_options: Mapping[str, float] | None = None,
                   classifier_stride: int = 1) -> dict[str, Any]:
  """Exports a trained model's streaming step with its featurizer variants.

  The trained spectrum is the default variant; the "dft" (matmul) variant is added
  for Vulkan and the "rfft" one (power-of-two n_fft only) for small flash on MCUs.
  """
  cfg = streaming_step.frontend_params_config(trained.frontend)
  spectrum = getattr(cfg, "spectrum", "rfft")
  wanted = [spectrum]
  if hasattr(cfg, "spectrum"):
    wanted += [s for s in ("dft", "rfft") if s != spectrum]
  n_fft = getattr(cfg, "n_fft", 0)
  variants = {}
  for name in wanted:
    if name == "rfft" and name != spectrum and n_fft & (n_fft - 1):
      continue  # IREE compiles power-of-two FFTs only; the DFT variant covers the rest.
    variants[name] = streaming_step.make_step(trained, vad=vad, smoothing=smoothing,
                                              spectrum=None if name == spectrum else name,
                                              vad_options=vad_options,
                                              classifier_stride=classifier_stride)
  extra: dict[str, Any] = {"quantization": None}
  if quantize is not None:
    if quantize != "int8":
      raise ExportError(f"unknown --quantize {quantize!r}; the one scheme is int8")
    for name in list(variants):
      variants[name], extra["quantization"] = int8.quantize_step(variants[name])
  return export_step(variants[spectrum], out_dir, variants=variants, default_variant=spectrum,
                     chunk_hops=chunk_hops, chunk_unroll=chunk_unroll, extra_meta=extra)


def _minor(version: str) -> tuple[str, ...]:
  return tuple(str(version).split(".")[:2])


def main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(prog="python -m kws_jax.export", description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True, help="training workdir (config.json, checkpoints/)")
  parser.add_argument("--out", required=True, help="export dir to write")
  parser.add_argument("--which", default="best", choices=["best", "latest"],
                      help="checkpoint (default: %(default)s)")
  parser.add_argument("--quantize", choices=["int8"], default=None,
                      help="int8 weights per output channel, int8 x int8 -> int32 products")
  parser.add_argument("--vad", choices=["auto", "on", "off"], default="auto",
                      help="include the VAD that resets the recurrent state (auto: as configured)")
  parser.add_argument("--vad-option", action="append", default=[], metavar="KEY=VALUE",
                      help="VAD setting over the experiment's `vad` section, repeatable: "
                           "reset_delay_ms or a tracker constant of kws_jax.ops.vad")
  parser.add_argument("--smoothing", choices=["auto", "on", "off"], default="auto",
                      help="include posterior smoothing (auto: as configured)")
  parser.add_argument("--chunk-hops", type=int, default=None,
                      help="hops per call of the host-only chunk function (default: ~1 s; 0: none)")
  parser.add_argument("--chunk-unroll", action="store_true",
                      help="write the chunk's hops out without a loop (faster on IREE's CPU "
                           "backend, longer compile)")
  parser.add_argument("--classifier-stride", type=int, default=1, metavar="K",
                      help="window CNNs: run the network every K hops, the featurizer every hop "
                           "(divides the network's cost by K; scores held in between)")
  parser.add_argument("--force", action="store_true", help="replace an existing export dir")
  parser.add_argument("--detection-threshold", type=float, default=None,
                      help="ship smoothing (stream eval's TF settings) at this threshold, e.g. "
                      "the one `stream eval --fa-per-hour-target` prints")
  errors.add_verbose_flag(parser)
  args = parser.parse_args(argv)
  out = pathlib.Path(args.out)
  if out.exists() and any(out.iterdir()):
    if not args.force:
      raise ExportError(f"{out} exists and is not empty; pass --force to replace it")
    shutil.rmtree(out)
  vad_options = streaming_step.parse_vad_options(args.vad_option)
  if vad_options and args.vad == "off":
    raise ConfigError("--vad-option needs the VAD: drop --vad off")
  trained = trained_model.load(args.workdir, which=args.which)
  flag = {"auto": None, "on": True, "off": False}
  if args.detection_threshold is not None:
    streaming_step.set_shipping_threshold(trained.config, args.detection_threshold)
    args.smoothing = "on" if args.smoothing == "auto" else args.smoothing
  meta = export_trained(trained, out, quantize=args.quantize, vad=flag[args.vad],
                        smoothing=flag[args.smoothing], chunk_hops=args.chunk_hops,
                        chunk_unroll=args.chunk_unroll, vad_options=vad_options,
                        classifier_stride=args.classifier_stride)
  sizes = {name: (out / m["bytecode"]).stat().st_size for name, m in meta["modules"].items()}
  # num_weights counts every variable baked into the step: the trained parameters plus the
  # model's other collections (batch-norm statistics); training and results.json count the first.
  counts = {k: int(sum(np.size(x) for x in jax.tree.leaves(v)))
            for k, v in trained.variables.items()}
  others = "".join(f" + {n} {k}" for k, n in counts.items() if k != "params" and n)
  print(f"exported {args.workdir} -> {out}: hop {meta['hop_size']} samples at "
        f"{meta['sample_rate']} Hz, {len(meta['labels'])} classes, {len(meta['state'])} state "
        f"arrays, {counts.get('params', 0)} parameters{others} = {meta['num_weights']} exported "
        "weights; variants " + ", ".join(f"{k} ({v / 1024:.0f} KiB)" for k, v in sizes.items()))
  return 0


if __name__ == "__main__":
  errors.run_cli(main)
