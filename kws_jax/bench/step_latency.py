"""Latency of one streaming step: IREE host-cpu (iree-benchmark-module) vs JAX jit, same run.

    python -m kws_jax.bench.step_latency [--workdir DIR] [--preset ell --model gru ...]

Without --workdir it times the ELL keyword spotter shape: the `ell` featurizer
(512-sample hop, 80 mel bands) feeding 2 x GRU128 with random weights (latency
does not depend on the weight values). Goal: <= 15 us per 32 ms hop on host-cpu.
Prints both latencies and their ratio and writes them as JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import tempfile
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from kws_jax import errors
from kws_jax.deploy import int8, iree_compile, iree_runner, streaming_step
from kws_jax.deploy import stablehlo_export as export
from kws_jax.errors import KwsError
from kws_jax.models import builder
from kws_jax.ops import frontend
from kws_jax.runs import trained_model

GOAL_US = 15.0


def random_model_step(preset: str, model: str, num_classes: int, seed: int = 0,
                      **hparams: Any) -> streaming_step.StreamingStep:
  """The streaming step of a registry model with random weights on a frontend preset."""
  frontend_params, net, num_frames, num_features = builder.build_named(
      model, num_classes, frontend.get_config(preset).sample_rate, features={"preset": preset},
      **hparams)
  variables = builder.init_variables(net, num_frames, num_features, jax.random.key(seed))
  return streaming_step.make_step_from_parts(
      frontend_params, net, variables, [f"class{i}" for i in range(num_classes)],
      info={"model": {"name": model, **hparams}, "window_ms": 1000.0})


def jax_latency_us(step: streaming_step.StreamingStep, seconds: float) -> float:
  """Median wall time of the jitted step (state fed back, result awaited), in us."""
  apply = jax.jit(step.apply)
  state = step.initial_state()
  chunk = jnp.asarray(np.random.default_rng(0).normal(0, 0.1, step.hop_size), jnp.float32)
  for _ in range(20):
    state, out = apply(step.params, state, chunk)
  jax.block_until_ready(out)
  times = []
  deadline = time.perf_counter() + seconds
  while time.perf_counter() < deadline or len(times) < 50:
    start = time.perf_counter()
    state, out = apply(step.params, state, chunk)
    jax.block_until_ready(out)
    times.append(time.perf_counter() - start)
  return float(np.median(times) * 1e6)


def iree_latency_us(compiled_dir: pathlib.Path, seconds: float, repetitions: int) -> float:
  """Median real time per call from iree-benchmark-module (local-sync, one thread), in us."""
  meta, _ = iree_compile.load_compiled(compiled_dir)
  tool = pathlib.Path(iree_runner.run_module_path()).with_name("iree-benchmark-module")
  if not tool.is_file():
    raise KwsError(f"{tool} not found; install iree-base-runtime")
  state = export.load_initial_state(compiled_dir, meta)
  with tempfile.TemporaryDirectory() as tmp:
    inputs = []
    rng = np.random.default_rng(0)
    values = [rng.normal(0, 0.1, meta["hop_size"]).astype(np.float32), *state]
    for i, value in enumerate(values):
      path = pathlib.Path(tmp) / f"in{i}.npy"
      np.save(path, value)
      inputs.append(f"--input=@{path}")
    out = pathlib.Path(tmp) / "bench.json"
    command = [str(tool), f"--module={compiled_dir / iree_compile.VMFB_FILE}", "--device=local-sync",
               f"--function={meta['function']}", *inputs, f"--benchmark_min_time={seconds}s",
               f"--benchmark_repetitions={repetitions}", "--benchmark_out_format=json",
               f"--benchmark_out={out}"]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
      raise KwsError(f"iree-benchmark-module failed: {proc.stderr.strip()[-300:]}")
    runs = [b for b in json.loads(out.read_text())["benchmarks"] if b.get("run_type") == "iteration"]
  unit = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}
  return float(np.median([b["real_time"] * unit[b["time_unit"]] for b in runs]))


def run_real_time_factor(compiled_dir: pathlib.Path, audio_seconds: float,
                         use_chunk: bool) -> float:
  """Seconds of audio per second of wall time of `IreeStep.run` (chunk module or per hop)."""
  runner = iree_runner.IreeStep(compiled_dir, use_chunk=use_chunk)
  rate, hop = int(runner.meta["sample_rate"]), runner.hop_size
  audio = np.random.default_rng(0).normal(0, 0.1, int(audio_seconds * rate) // hop * hop)
  audio = audio.astype(np.float32)
  runner.run(audio[:hop * (runner.chunk_hops + 1)])
  start = time.perf_counter()
  runner.run(audio)
  return audio.size / rate / (time.perf_counter() - start)


def main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(prog="python -m kws_jax.bench.step_latency",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", help="time a trained model instead of random weights")
  parser.add_argument("--preset", default="ell", help="featurizer preset (random-weight model)")
  parser.add_argument("--model", default="gru", help="registry model (random-weight model)")
  parser.add_argument("--hidden-size", type=int, default=128)
  parser.add_argument("--num-layers", type=int, default=2)
  parser.add_argument("--num-classes", type=int, default=12)
  parser.add_argument("--quantize", choices=["int8"], default=None)
  parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
  parser.add_argument("--repetitions", type=int, default=3, help="iree-benchmark-module repetitions")
  parser.add_argument("--iree-flag", action="append", default=[], help="extra iree-compile flag")
  parser.add_argument("--audio-seconds", type=float, default=30.0,
                      help="audio for the IreeStep.run real-time factor (per hop vs chunked)")
  parser.add_argument("--chunk-unroll", action="store_true",
                      help="export the chunk function without a loop (see kws_jax.export)")
  parser.add_argument("--out", default="step_latency.json", help="JSON results file")
  errors.add_verbose_flag(parser)
  args = parser.parse_args(argv)
  if args.workdir:
    step = streaming_step.make_step(trained_model.load(args.workdir))
    what = f"{args.workdir}"
  else:
    hparams = {"hidden_size": args.hidden_size, "num_layers": args.num_layers} \
        if args.model in ("gru", "lstm") else {}
    step = random_model_step(args.preset, args.model, args.num_classes, **hparams)
    what = f"{args.preset} featurizer + {args.model} {hparams or ''} (random weights)"
  if args.quantize:
    step, _ = int8.quantize_step(step)
  with tempfile.TemporaryDirectory() as tmp:
    export_dir, compiled_dir = pathlib.Path(tmp) / "export", pathlib.Path(tmp) / "host-cpu"
    export.export_step(step, export_dir,
                       default_variant=(step.info.get("frontend") or {}).get("spectrum", "rfft"),
                       chunk_unroll=args.chunk_unroll)
    iree_compile.compile_export(export_dir, "host-cpu", compiled_dir, extra_flags=args.iree_flag)
    iree_us = iree_latency_us(compiled_dir, args.seconds, args.repetitions)
    runner = iree_runner.IreeStep(compiled_dir)
    state = runner.initial_state()
    chunk = np.zeros(step.hop_size, np.float32)
    for _ in range(10):
      state, _ = runner.step(state, chunk)
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < args.seconds:
      state, _ = runner.step(state, chunk)
      count += 1
    python_us = (time.perf_counter() - start) / count * 1e6
    rtf_per_hop = run_real_time_factor(compiled_dir, args.audio_seconds, use_chunk=False)
    rtf_chunked = run_real_time_factor(compiled_dir, args.audio_seconds, use_chunk=True)
  jax_us = jax_latency_us(step, args.seconds)
  hop_ms = 1000.0 * step.hop_size / step.sample_rate
  result = {"model": what, "quantize": args.quantize, "hop_ms": hop_ms,
            "iree_benchmark_module_us": iree_us, "iree_python_step_us": python_us,
            "jax_jit_us": jax_us, "iree_run_rtf_per_hop": rtf_per_hop,
            "iree_run_rtf_chunked": rtf_chunked, "chunk_unrolled": args.chunk_unroll,
            "jax_over_iree": jax_us / iree_us, "goal_us": GOAL_US,
            "iree_flags": args.iree_flag, "jax_version": jax.__version__}
  pathlib.Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
  print(f"step latency, {what}, hop {hop_ms:.0f} ms:")
  print(f"  IREE host-cpu (iree-benchmark-module)  {iree_us:9.1f} us   "
        f"({'meets' if iree_us <= GOAL_US else 'misses'} the {GOAL_US:.0f} us goal)")
  print(f"  IREE host-cpu via iree.runtime (Python){python_us:9.1f} us")
  print(f"  JAX jit (CPU, same process)            {jax_us:9.1f} us   = "
        f"{jax_us / iree_us:.1f} x the IREE step")
  print(f"  IreeStep.run real-time factor: {rtf_per_hop:.0f} one call per hop, "
        f"{rtf_chunked:.0f} with the ~1 s chunk function ({rtf_chunked / rtf_per_hop:.1f} x)")
  print(f"written to {args.out}")
  return 0


if __name__ == "__main__":
  errors.run_cli(main)
