"""Exact guest instructions per hop and per second of audio of a firmware dir, under QEMU.

    python -m kws_jax.bench.firmware_instructions B [--wav X] [--hops 100] [--json] [--profile 20]
        [--against WORKDIR | HOST_MODULE_DIR]

B is a firmware dir (`python -m kws_jax.compile EXPORT --target cortex-m4 --firmware
--out B`). The hops are a WAV's (default: 1 s of a synthetic chirp in noise, padded
or cut to --hops); QEMU's instruction-count plugin attributes every executed guest
instruction of a step to its hop, so the figures are exact and do not depend on the
host's load. Instructions are not cycles: on a Cortex-M4 most take one cycle, loads,
multiplies with accumulate and branches more, so cycles are ~1-1.5x this.
`--profile N` also lists the N functions that execute the most of those instructions
(the plugin counts per instruction address inside the steps; the ELF's symbols name them).
`--against` runs the same hops through a reference runner of the streaming-step protocol
(the JAX step of a training workdir, or a host IREE module dir: an int8 export's
reference) and reports the largest difference of every output and of the final state.
"""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any, Sequence

import jax
import numpy as np

from kws_jax import audio as audio_lib
from kws_jax import errors
from kws_jax.deploy import firmware_runner


def synthetic_audio(samples: int, sample_rate: int = 16000) -> np.ndarray:
  t = np.arange(samples) / sample_rate
  rng = np.random.default_rng(1)
  return (0.3 * np.sin(2 * np.pi * (300 + 900 * t) * t) + 0.01 * rng.normal(size=samples)
          ).astype(np.float32)


def reference_runner(path: str):
  """The JAX step of a training workdir, or the host IREE module of a compiled dir."""
  if (pathlib.Path(path) / "config.json").is_file():
    from kws_jax.deploy import streaming_step
    from kws_jax.runs import trained_model
    return streaming_step.make_step(trained_model.load(path))
  from kws_jax.deploy import iree_runner
  return iree_runner.IreeStep(path, use_chunk=False)


def largest_difference(got: tuple, want: tuple) -> dict[str, float]:
  """max |got - want| of each output and of the state, for two (state, outputs) results."""
  (state, outputs), (ref_state, ref_outputs) = got, want
  diff = {name: float(np.abs(np.asarray(outputs[name]) - np.asarray(ref_outputs[name])).max())
          for name in ref_outputs}
  diff["state"] = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                      for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state)))
  return diff


def measure(firmware_dir: str, audio: np.ndarray, hops: int, profile: bool = False,
            against: str | None = None) -> dict[str, Any]:
  step = firmware_runner.FirmwareStep(firmware_dir, count_instructions=True, profile=profile)
  needed = hops * step.hop_size
  audio = np.pad(audio, (0, max(0, needed - audio.size)))[:needed]
  result = step.run(audio)
  parity = largest_difference(result, reference_runner(against).run(audio)) if against else None
  memory = step.memory()
  counts = np.asarray(step.instructions(), np.int64)
  functions = step.function_profile() if profile else []
  hop_s = step.hop_size / float(step.meta["sample_rate"])
  sizes = step.info["sizes"]
  return {"dir": str(firmware_dir), "target": step.info["target"], "board": step.info["board"],
          "hops": int(counts.size), "hop_ms": 1000 * hop_s,
          "instructions_per_hop_mean": float(counts.mean()),
          "instructions_per_hop_min": int(counts.min()),
          "instructions_per_hop_max": int(counts.max()),
          "instructions_per_second": float(counts.mean() / hop_s),
          "flash_bytes": sizes["flash_bytes"], "text": sizes["text"], "data": sizes["data"],
          "bss": sizes["bss"], **memory,
          "ram_bytes": sizes["data"] + sizes["bss"] + memory["heap_high_water"]
                       + memory["stack_high_water"],
          "classifier_stride": int(step.meta.get("classifier_stride", 1)),
          **({"against": str(against), "max_abs_difference": parity} if against else {}),
          **({"functions": [{"name": n, "instructions_per_hop": c / counts.size}
                            for n, c in functions]} if profile else {})}


def main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(prog="python -m kws_jax.bench.firmware_instructions",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("firmware_dir", help="firmware dir (kws_jax.compile ... --firmware)")
  parser.add_argument("--wav", help="audio to run (default: a synthetic chirp in noise)")
  parser.add_argument("--hops", type=int, default=100, help="hops to count (default 100)")
  parser.add_argument("--json", action="store_true", help="print the figures as JSON")
  parser.add_argument("--profile", type=int, default=0, metavar="N",
                      help="also list the N functions executing the most instructions per hop")
  parser.add_argument("--against", metavar="DIR",
                      help="compare with a training workdir's JAX step or a host module dir")
  args = parser.parse_args(argv)
  meta = firmware_runner.load_firmware(args.firmware_dir)[0]
  audio = (audio_lib.read_audio(args.wav, int(meta["sample_rate"])) if args.wav
           else synthetic_audio(args.hops * int(meta["hop_size"]), int(meta["sample_rate"])))
  r = measure(args.firmware_dir, audio, args.hops, profile=args.profile > 0,
              against=args.against)
  if args.json:
    print(json.dumps(r, indent=1))
    return 0
  print(f"{r['dir']} ({r['target']}, {r['board']}): flash {r['flash_bytes']:,} B, RAM "
        f"{r['ram_bytes']:,} B (data {r['data']:,} + bss {r['bss']:,} + heap high-water "
        f"{r['heap_high_water']:,} + stack {r['stack_high_water']:,})")
  print(f"  {r['hops']} hops of {r['hop_ms']:.0f} ms: {r['instructions_per_hop_mean']:,.0f} "
        f"instructions per hop (min {r['instructions_per_hop_min']:,}, max "
        f"{r['instructions_per_hop_max']:,}), {r['instructions_per_second'] / 1e6:.2f} M per "
        f"second of audio")
  if args.against:
    diffs = ", ".join(f"{k} {v:.2g}" for k, v in r["max_abs_difference"].items())
    print(f"  max |firmware - {args.against}| over those hops: {diffs}")
  per_hop = r["instructions_per_hop_mean"]
  for f in r.get("functions", [])[:args.profile]:
    print(f"  {f['instructions_per_hop']:>12,.0f}  {100 * f['instructions_per_hop'] / per_hop:5.1f} %"
          f"  {f['name']}")
  return 0


if __name__ == "__main__":
  errors.run_cli(main)
