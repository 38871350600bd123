"""Compile an exported streaming step with IREE for one target.

    python -m kws_jax.compile EXPORT_DIR --target NAME --out OUT_DIR
    python -m kws_jax.compile --list-targets

Targets are described in `targets/<name>/target.json` (IREE flags, the featurizer
variant, the output kind). Every OUT_DIR gets meta.json and initial_state.npz
(copied from the export, so a compiled dir is self-describing), compile.json (the
exact iree-compile command lines and file hashes) and:
  vmfb targets (host-cpu, vulkan):  kws_step.vmfb
    kws_chunk.vmfb (targets with "chunk": true, when the export has one): the
    step scanned over ~1 s of audio per call, for fast offline evaluation
  static targets (cortex-m4, cortex-m55, riscv32):
    kws_step_lib.o / kws_step_lib.h   the dispatch code as a static library
    kws_step_emitc.h                  the VM module as C (EmitC), weights inside
    kws_step_io.h                     shapes, labels and the initial state as C
    size_report.json                  code, read-only data and weight bytes
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
from importlib import metadata
from typing import Any, Sequence

import numpy as np
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile
from iree.compiler.tools import binaries

from kws_jax import errors
from kws_jax.deploy import stablehlo_export as export
from kws_jax.errors import ExportError

COMPILE_FILE = "compile.json"
SIZE_REPORT_FILE = "size_report.json"
VMFB_FILE = "kws_step.vmfb"
CHUNK_VMFB_FILE = "kws_chunk.vmfb"
STATIC_OBJECT_FILE = "kws_step_lib.o"
STATIC_HEADER_FILE = "kws_step_lib.h"
EMITC_FILE = "kws_step_emitc.h"
IO_HEADER_FILE = "kws_step_io.h"
# The static library's entry point, named by IREE after the module.
LIBRARY_QUERY_SYMBOL = f"{export.MODULE_NAME}_linked_library_query"
EMITC_CREATE_SYMBOL = f"{export.MODULE_NAME}_create"


def targets_dir() -> pathlib.Path:
  """targets/ beside the package (KWS_TARGETS_DIR overrides)."""
  env = os.environ.get("KWS_TARGETS_DIR")
  return pathlib.Path(env) if env else pathlib.Path(__file__).resolve().parents[2] / "targets"


def list_targets() -> list[str]:
  root = targets_dir()
  return sorted(p.parent.name for p in root.glob("*/target.json")) if root.is_dir() else []


def load_target(name: str) -> dict[str, Any]:
  path = targets_dir() / name / "target.json"
  if not path.is_file():
    known = ", ".join(list_targets()) or f"none found in {targets_dir()}"
    raise ExportError(f"unknown target {name!r}; known targets: {known}")
  target = json.loads(path.read_text())
  target["dir"] = str(path.parent)
  return target


def iree_compile_tool() -> str:
  return binaries.find_tool("iree-compile")


def _run_iree_compile(args: list[str], out: pathlib.Path) -> None:
  proc = subprocess.run(args, capture_output=True, text=True)
  if proc.returncode != 0:
    log = out / "compile_failed.txt"
    log.write_text(" ".join(args) + "\n\n" + proc.stderr)
    lines = [l for l in proc.stderr.splitlines() if "error:" in l] or proc.stderr.splitlines()[-1:]
    raise ExportError(f"iree-compile failed: {lines[0].strip() if lines else 'no message'} "
                      f"(command and full log in {log})")


# The firmware runtime (IREE b48a5955) replays int8 steps' reusable ("indirect") command
# buffers with a binding range longer than the buffer bound to it (OUT_OF_RANGE in
# hal.device.queue.execute.indirect; iree.runtime 3.13 on the host runs the same program);
# recorded directly, the int8 GRU's firmware gives the int8 host module's scores
# (BUILD.md section 5). Float steps keep them: ~1.4x fewer instructions on the Cortex-M4.
_INT8_STATIC_FLAGS = ("--iree-hal-indirect-command-buffers=false",)


def _workaround_flags(target: dict[str, Any], meta: dict[str, Any]) -> tuple[str, ...]:
  return _INT8_STATIC_FLAGS if target["kind"] == "static" and meta.get("quantization") else ()


def compile_export(export_dir: str | os.PathLike,
                   target_name: str,
                   out_dir: str | os.PathLike,
                   *,
                   extra_flags: Sequence[str] = ()) -> dict[str, Any]:
  """Compiles EXPORT_DIR for `target_name` into `out_dir`; returns compile.json's content."""
  meta = export.load_meta(export_dir)
  target = load_target(target_name)
  wanted = [meta["default_variant"] if v == "default" else v for v in target["variants"]]
  available = [v for v in wanted if v in meta["modules"]]
  if not available:
    raise ExportError(
        f"target {target_name} needs the {' or '.join(map(repr, wanted))} featurizer variant but "
        f"{export_dir} has only {sorted(meta['modules'])}; export from a frontend with a "
        f"`spectrum` option")
  variant = available[0]
  source = pathlib.Path(export_dir) / meta["modules"][variant]["bytecode"]
  if not source.is_file():
    raise ExportError(f"{source}: missing; export again")
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  tool = iree_compile_tool()
  base = [tool, "--iree-input-type=stablehlo", *target["iree_flags"],
          *_workaround_flags(target, meta), *extra_flags]
  chunk = None
  if target["kind"] == "vmfb":
    commands = [base + [str(source), "-o", str(out / VMFB_FILE)]]
    chunk_files = (meta.get("chunk") or {}).get("modules", {}).get(variant)
    if target.get("chunk") and chunk_files:
      chunk = {"hops": meta["chunk"]["hops"], "source": chunk_files["bytecode"]}
      commands.append(base + [str(pathlib.Path(export_dir) / chunk_files["bytecode"]), "-o",
                              str(out / CHUNK_VMFB_FILE)])
  elif target["kind"] == "static":
    # EmitC: the VM module as C, so firmware needs no bytecode interpreter. (The same
    # command without --output-format=vm-c gives a .vmfb for the bytecode VM instead.)
    library = f"--iree-llvmcpu-static-library-output-path={out / STATIC_OBJECT_FILE}"
    commands = [base + ["--output-format=vm-c", library, str(source), "-o", str(out / EMITC_FILE)]]
  else:
    raise ExportError(f"target {target_name}: unknown kind {target['kind']!r}")
  for command in commands:
    _run_iree_compile(command, out)
  for name in (export.META_FILE, meta["initial_state"]):
    shutil.copyfile(pathlib.Path(export_dir) / name, out / name)
  report: dict[str, Any] = {
      "target": target_name,
      "kind": target["kind"],
      "device": target.get("device"),
      "variant": variant,
      "iree_compiler_version": metadata.version("iree-base-compiler"),
      "source": {"file": source.name, "sha256": _sha256(source)},
      "chunk": chunk,
      "commands": [[pathlib.Path(c[0]).name] + c[1:] for c in commands],
      "files": {},
  }
  if target["kind"] == "static":
    (out / IO_HEADER_FILE).write_text(io_header(meta, export.load_initial_state(export_dir, meta)))
    sizes = size_report(out / STATIC_OBJECT_FILE, out / EMITC_FILE)
    sizes["target"] = target_name
    (out / SIZE_REPORT_FILE).write_text(json.dumps(sizes, indent=1) + "\n")
    report["sizes"] = sizes
  for path in sorted(out.iterdir()):
    if path.name != COMPILE_FILE and path.is_file():
      report["files"][path.name] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
  (out / COMPILE_FILE).write_text(json.dumps(report, indent=1) + "\n")
  return report


def size_report(obj_path: pathlib.Path, emitc_path: pathlib.Path | None = None) -> dict[str, Any]:
  """Bytes of code, read-only data and writable data in the static library, weights in the module.

  `weights` is the constant pool the EmitC module carries (the model's weights
  and featurizer tables as IREE laid them out); `undefined` lists the symbols the
  firmware must provide (IREE runtime, libgcc, libm).
  """
  code = rodata = data = 0
  undefined: list[str] = []
  defined: list[str] = []
  with open(obj_path, "rb") as f:
    elf = ELFFile(f)
    machine = elf["e_machine"]
    for section in elf.iter_sections():
      flags = section["sh_flags"]
      if not flags & SH_FLAGS.SHF_ALLOC:
        continue
      size = section["sh_size"]
      if flags & SH_FLAGS.SHF_EXECINSTR:
        code += size
      elif not flags & SH_FLAGS.SHF_WRITE or section.name.startswith(".data.rel.ro"):
        rodata += size  # .data.rel.ro is read-only once linked without a dynamic loader.
      else:
        data += size
    symtab = elf.get_section_by_name(".symtab")
    for sym in symtab.iter_symbols() if symtab is not None else []:
      if not sym.name or sym["st_info"]["type"] in ("STT_SECTION", "STT_FILE"):
        continue
      if sym["st_shndx"] == "SHN_UNDEF":
        undefined.append(sym.name)
      elif sym["st_info"]["bind"] == "STB_GLOBAL":
        defined.append(sym.name)
  report = {"machine": machine, "code_bytes": code, "rodata_bytes": rodata, "data_bytes": data,
            "undefined": sorted(undefined), "exported": sorted(defined)}
  if emitc_path is not None and emitc_path.is_file():
    report["weights_bytes"] = emitc_constant_bytes(emitc_path.read_text())
  report["total_flash_bytes"] = code + rodata + report.get("weights_bytes", 0)
  return report


def emitc_constant_bytes(source: str) -> int:
  """Bytes of the module's constant buffers (`static const uint8_t X__const...[] = {...}`)."""
  total = 0
  for match in re.finditer(r"static const uint8_t \w+__const\w*\[\] = \{([^}]*)\}", source):
    total += match.group(1).count(",") + 1
  return total


_C_TYPES = {"float32": ("float", "FLOAT_32"), "int32": ("int32_t", "SINT_32"),
            "int8": ("int8_t", "SINT_8"), "int16": ("int16_t", "SINT_16"),
            "uint8": ("uint8_t", "UINT_8"), "bool": ("uint8_t", "BOOL_8"),
            "int64": ("int64_t", "SINT_64"), "float64": ("double", "FLOAT_64")}


def io_header(meta: dict[str, Any], initial_state: list[np.ndarray]) -> str:
  """A C header with the step's signature, labels and initial state for firmware."""
  names = [o["name"] for o in meta["outputs"]]
  lines = ["// Generated by kws_jax.compile from meta.json. Do not edit.",
           "#ifndef KWS_STEP_IO_H_", "#define KWS_STEP_IO_H_", "#include <stdint.h>", "",
           f'#define KWS_FUNCTION "{meta["module_name"]}.{meta["function"]}"',
           f"#define KWS_SAMPLE_RATE {meta['sample_rate']}",
           f"#define KWS_HOP_SIZE {meta['hop_size']}",
           f"#define KWS_NUM_CLASSES {len(meta['labels'])}",
           f"#define KWS_NUM_INPUTS {len(meta['inputs'])}",
           f"#define KWS_NUM_OUTPUTS {len(meta['outputs'])}",
           f"#define KWS_NUM_STATE {len(meta['state'])}",
           f"#define KWS_SCORES_OUTPUT {names.index('scores')}", "",
           "static const char* const kws_labels[KWS_NUM_CLASSES] = {",
           *[f'  "{label}",' for label in meta["labels"]], "};", "",
           "// Outputs in call order; the last KWS_NUM_STATE are the new state."]
  for i, o in enumerate(meta["outputs"]):
    lines.append(f"//   {i}: {o['name']} {o['dtype']}{o['shape']}")
  lines.append("")
  for i, (s, value) in enumerate(zip(meta["state"], initial_state)):
    ctype, element = _C_TYPES.get(s["dtype"], ("uint8_t", "OPAQUE_8"))
    flat = np.asarray(value).reshape(-1)
    if s["dtype"] == "bool":
      flat = flat.astype(np.uint8)
    body = ", ".join(repr(float(v)) + "f" if ctype == "float" else str(int(v)) for v in flat)
    dims = ", ".join(str(d) for d in s["shape"]) or "1"
    lines += [f"// state {i}: {s['name']} {s['dtype']}{s['shape']}",
              f"#define KWS_STATE{i}_RANK {len(s['shape'])}",
              f"#define KWS_STATE{i}_ELEMENT_TYPE IREE_HAL_ELEMENT_TYPE_{element}",
              f"static const int32_t kws_state{i}_dims[] = {{{dims}}};",
              f"static const {ctype} kws_state{i}_init[{max(flat.size, 1)}] = {{{body or '0'}}};"]
  lines += ["", "// X-macro over the state indices: KWS_FOR_EACH_STATE(F) expands to F(0) F(1) ...",
            "#define KWS_FOR_EACH_STATE(F) " + " ".join(f"F({i})" for i in range(len(meta["state"]))),
            "", "#endif  // KWS_STEP_IO_H_", ""]
  return "\n".join(lines)


def load_compiled(compiled_dir: str | os.PathLike) -> tuple[dict, dict]:
  """(meta, compile report) of a compiled dir, checking that the files are the ones compiled."""
  root = pathlib.Path(compiled_dir)
  meta = export.load_meta(root)
  path = root / COMPILE_FILE
  if not path.is_file():
    raise ExportError(f"{compiled_dir}: not a compiled dir (no {COMPILE_FILE}); make one with "
                      f"`python -m kws_jax.compile EXPORT_DIR --target NAME --out {compiled_dir}`")
  report = json.loads(path.read_text())
  for name, info in report["files"].items():
    file = root / name
    if not file.is_file():
      raise ExportError(f"{file}: missing; compile again")
    if name in (VMFB_FILE, CHUNK_VMFB_FILE, export.META_FILE) and _sha256(file) != info["sha256"]:
      raise ExportError(f"{file} does not match {COMPILE_FILE} (replaced or from another "
                        f"export); compile again")
  return meta, report


def _sha256(path: pathlib.Path) -> str:
  return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m kws_jax.compile",
      usage="%(prog)s EXPORT_DIR --target NAME --out OUT_DIR [--iree-flag FLAG ...]\n"
            "       %(prog)s --list-targets",
      description="Compile an export dir with IREE for one target.")
  parser.add_argument("export_dir", nargs="?", help="dir written by python -m kws_jax.export")
  parser.add_argument("--target", help="required: one of targets/*/ (see --list-targets)")
  parser.add_argument("--out", help="required: output dir for the compiled module")
  parser.add_argument("--list-targets", action="store_true", help="print the targets and exit")
  parser.add_argument("--iree-flag", action="append", default=[],
                      help="extra iree-compile flag (repeatable), e.g. --iree-flag=--mlir-timing")
  parser.add_argument("--firmware", action="store_true",
                      help="also link firmware for the target's emulated board (QEMU); EXPORT_DIR "
                           "may be an already compiled dir (BUILD.md section 5)")
  parser.add_argument("--iree-source", help="IREE runtime sources for --firmware: a checkout or "
                      "a tarball (default: ../shared/vendor/iree-runtime-src-*.tar.xz)")
  errors.add_verbose_flag(parser)
  args = parser.parse_args(argv)
  if args.firmware:
    from kws_jax.deploy import firmware  # lazy: firmware imports this module
    return firmware.main(args)
  if args.list_targets:
    for name in list_targets():
      print(f"{name:12s} {load_target(name)['description']}")
    return 0
  if not (args.export_dir and args.target and args.out):
    raise ExportError("give EXPORT_DIR, --target NAME and --out OUT_DIR (or --list-targets)")
  report = compile_export(args.export_dir, args.target, args.out, extra_flags=args.iree_flag)
  files = ", ".join(f"{k} ({v['bytes'] / 1024:.1f} KiB)" for k, v in report["files"].items()
                    if not k.endswith((".json", ".npz")))
  print(f"compiled {args.export_dir} for {args.target} -> {args.out}: {files}")
  if "sizes" in report:
    s = report["sizes"]
    print(f"size ({args.target}): code {s['code_bytes']} B, read-only data {s['rodata_bytes']} B, "
          f"weights {s.get('weights_bytes', 0)} B, total flash {s['total_flash_bytes']} B; "
          f"undefined symbols: {', '.join(s['undefined']) or 'none'}")
  return 0


if __name__ == "__main__":
  errors.run_cli(main)
