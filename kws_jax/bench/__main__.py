"""Benchmarks.

  python -m kws_jax.bench [--models gru,dscnn] [--workdir DIR ...] [--out DIR]
      one row per model: params, MACs/s of audio, JAX step latency, training clips/s,
      accuracy (workdirs); writes bench.json, bench.md, accuracy_vs_latency.png
  python -m kws_jax.bench baselines [--json] [--out DIR]
      kws_jax next to plain PyTorch (needs torch: pip install 'kws_jax[bench]');
      with --json the last stdout line is {measure: {kws_jax, baseline, unit, speedup}}

JAX on a CPU host is split into one XLA device per core (set before JAX starts,
unless XLA_FLAGS already sets a device count), so the data-parallel trainer uses
every core; PyTorch uses its default of one thread per core.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
from typing import Sequence

from kws_jax import errors
from kws_jax.errors import KwsError

DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


def _jax_started() -> bool:
  if "jax" not in sys.modules:
    return False
  from jax._src import xla_bridge  # no public way to ask without starting the backends
  return xla_bridge.backends_are_initialized()


def use_host_devices(count: int | None) -> None:
  """One XLA CPU device per core (or `count`), if JAX has not started and XLA_FLAGS is silent.

  Once JAX's backends exist the flag cannot take effect here; setting it then would only
  leak into child processes (which would train data-parallel, with other rounding).
  """
  flags = os.environ.get("XLA_FLAGS", "")
  if DEVICE_COUNT_FLAG in flags or _jax_started():
    return
  count = count or os.cpu_count() or 1
  os.environ["XLA_FLAGS"] = f"{flags} {DEVICE_COUNT_FLAG}={count}".strip()


def _require_torch() -> None:
  try:
    import torch  # noqa: F401
  except ImportError:
    raise KwsError("the PyTorch baselines need torch; install it with "
                   "`pip install 'kws_jax[bench]'` (torch==2.13.0, CPU wheel)") from None


def baselines_main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(prog="python -m kws_jax.bench baselines",
                                   description="kws_jax vs plain PyTorch, side by side.")
  parser.add_argument("--json", action="store_true",
                      help="print the results as one JSON object on the last line")
  parser.add_argument("--out", type=pathlib.Path, help="also write baselines.json and .md here")
  parser.add_argument("--devices", type=int, help="XLA CPU devices (default: one per core)")
  parser.add_argument("--torch-threads", type=int,
                      help="torch intra-op threads (default: torch's, one per core); on a busy "
                           "machine 1 avoids OpenMP oversubscription stalls")
  parser.add_argument("--rounds", type=int, help="interleaved timing rounds (default 3)")
  parser.add_argument("--tiny", action="store_true", help="tiny shapes (smoke test, no figures)")
  errors.add_verbose_flag(parser)
  args = parser.parse_args(argv)
  for value, flag in ((args.devices, "--devices"), (args.torch_threads, "--torch-threads"),
                      (args.rounds, "--rounds")):
    if value is not None and value < 1:
      raise KwsError(f"{flag} must be at least 1, got {value}")
  _require_torch()
  use_host_devices(args.devices)
  if args.torch_threads:
    import torch
    torch.set_num_threads(args.torch_threads)
  import dataclasses

  from kws_jax.bench import baselines

  sizes = baselines.Sizes.tiny() if args.tiny else baselines.Sizes()
  if args.rounds:
    sizes = dataclasses.replace(sizes, rounds=args.rounds)
  results = baselines.run(sizes, progress=sys.stderr.isatty())
  machine = baselines.machine_description()
  table = baselines.format_table(results)
  print(f"machine: {machine['cpu']}, {machine['cores']} cores; jax {machine['jax']} on "
        f"{len(machine['jax_devices'])} CPU device(s), torch {machine['torch']} with "
        f"{machine['torch_threads']} threads")
  print(f"load average (1 min) after the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
  print(table)
  if args.out:
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "baselines.json").write_text(
        json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    (args.out / "baselines.md").write_text(table + "\n")
  if args.json:
    print(json.dumps(results))
  return 0


def table_main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m kws_jax.bench",
      usage="%(prog)s [baselines] [options]  (`python -m kws_jax.bench baselines --help`: its "
            "options)",
      description="Per-model benchmark table (subcommand `baselines`: side by side with PyTorch).")
  parser.add_argument("--models", default="gru,lstm,tf_conv,torchaudio_cnn,dscnn,bcresnet",
                      help="comma-separated registry names ('' for none; default: %(default)s)")
  parser.add_argument("--workdir", action="append", default=[],
                      help="trained workdir to include with its accuracy (repeatable)")
  parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench_results"),
                      help="output directory (default: %(default)s)")
  parser.add_argument("--train-batch", type=int, default=64,
                      help="batch of the training-speed measure (default: %(default)s)")
  parser.add_argument("--train-steps", type=int, default=2,
                      help="timed training steps per model (default: %(default)s)")
  parser.add_argument("--latency-calls", type=int, default=200,
                      help="step calls per latency measure (default: %(default)s)")
  parser.add_argument("--rounds", type=int, default=3,
                      help="interleaved timing rounds (default: %(default)s)")
  errors.add_verbose_flag(parser)
  args = parser.parse_args(argv)
  from kws_jax import models
  names = [m.strip() for m in args.models.split(",") if m.strip()]
  unknown = sorted(set(names) - set(models.list_models()))
  if unknown:
    raise KwsError(f"unknown model(s) {', '.join(unknown)}; valid: {', '.join(models.list_models())}")
  for value, flag in ((args.train_batch, "--train-batch"), (args.train_steps, "--train-steps"),
                      (args.latency_calls, "--latency-calls"), (args.rounds, "--rounds")):
    if value < 1:
      raise KwsError(f"{flag} must be at least 1, got {value}")
  from kws_jax.bench import table

  rows = table.run(names, args.workdir, args.out, train_batch=args.train_batch,
                   train_steps=args.train_steps, latency_calls=args.latency_calls,
                   rounds=args.rounds, progress=sys.stderr.isatty())
  print(table.markdown(rows))
  print(f"wrote {args.out / 'bench.json'}, {args.out / 'bench.md'}, "
        f"{args.out / 'accuracy_vs_latency.png'}")
  return 0


def main(argv: Sequence[str]) -> int:
  argv = list(argv)
  if argv and argv[0] == "baselines":
    return baselines_main(argv[1:])
  if argv and argv[0] == "openwakeword":
    from kws_jax.bench import openwakeword
    return openwakeword.main(argv[1:])
  return table_main(argv)


if __name__ == "__main__":
  errors.run_cli(main)
