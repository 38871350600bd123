"""Firmware for the emulated boards from a compiled dir: the step linked with the IREE runtime.

    python -m kws_jax.compile EXPORT --target cortex-m4 --firmware --out B [--iree-source SRC]

builds B as usual (static library + EmitC module), then `B/kws_firmware.elf`: the
IREE runtime (built once per target and source, iree_runtime_build), the board
support of `targets/<target>/firmware.json` (startup code, linker script,
semihosting C library) and `targets/emulated/hostlink_main.c`, through which
`kws_jax.deploy.firmware_runner.FirmwareStep` drives it under QEMU hop by hop.
`B/firmware.json` records the sizes: text, data and bss of the ELF, and the heap and
stack high-water marks of one hop run under QEMU (when QEMU is installed).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
from typing import Any, Callable

import numpy as np
from elftools.elf.elffile import ELFFile

from kws_jax.deploy import firmware_runner, iree_compile, iree_runtime_build
from kws_jax.deploy.firmware_runner import FIRMWARE_FILE
from kws_jax.errors import ExportError

ELF_FILE = "kws_firmware.elf"
BOARD_FILE = "firmware.json"   # targets/<name>/firmware.json
# The firmware calls this (empty) function before and after each step, so that the
# instruction-count plugin can attribute instructions to hops.
MARK_SYMBOL = "kws_count_mark"
_MODEL_SOURCES = ("common/kws_runtime.c", "emulated/hostlink_main.c")


def load_board(target_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
  """(target.json, firmware.json) of a target that has firmware for an emulated board."""
  target = iree_compile.load_target(target_name)
  path = pathlib.Path(target["dir"]) / BOARD_FILE
  if target["kind"] != "static" or not path.is_file():
    with_board = [t for t in iree_compile.list_targets()
                  if (iree_compile.targets_dir() / t / BOARD_FILE).is_file()]
    raise ExportError(f"target {target_name} has no firmware build (no {path}); "
                      f"targets with one: {', '.join(with_board)}")
  return target, json.loads(path.read_text())


def check_compiler(board: dict[str, Any]) -> str:
  """The cross compiler, checked to have the C library the board links."""
  packages = " ".join(board["debian_packages"])
  tool = shutil.which(board["compiler"])
  if tool is None:
    raise ExportError(f"{board['compiler']} not found: install Debian's {packages} "
                      f"(apt-get install {packages})")
  library = board.get("c_library_check")
  if library:
    found = subprocess.run([tool, f"-print-file-name={library}"], capture_output=True,
                           text=True).stdout.strip()
    if not os.path.isabs(found):
      raise ExportError(f"{board['compiler']} has no C library ({library}): install Debian's "
                        f"{packages}")
  return tool


def build_firmware(compiled_dir: str | os.PathLike, target_name: str | None = None, *,
                   iree_source: str | os.PathLike | None = None,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
  """Links `compiled_dir/kws_firmware.elf`; returns (and writes) firmware.json's content."""
  out = pathlib.Path(compiled_dir)
  meta, report = iree_compile.load_compiled(out)
  if target_name is not None:
    _check_target(out, report, target_name)
  target, board = load_board(report["target"])
  target["name"] = report["target"]
  check_compiler(board)
  source = iree_runtime_build.prepared_source(iree_source)
  runtime = iree_runtime_build.built_runtime(target, board, source, log=log)
  elf = link(out, runtime)
  info = {"target": report["target"], "board": board["board"], "qemu": board["qemu"],
          "qemu_debian_package": board.get("qemu_debian_package"),
          "elf": ELF_FILE, "elf_sha256": iree_runtime_build.file_hash(elf),
          "iree_source": source.name, "runtime_build": runtime.name,
          "sizes": elf_sizes(elf), "mark_address": mark_address(elf)}
  info["sizes"]["flash_bytes"] = info["sizes"]["text"] + info["sizes"]["data"]
  (out / FIRMWARE_FILE).write_text(json.dumps(info, indent=1) + "\n")
  if shutil.which(board["qemu"][0]):
    with firmware_runner.FirmwareStep(out) as step:
      step.step(step.initial_state(), _zeros(meta["hop_size"]))
      info["sizes"].update(step.memory())
    info["sizes"]["ram_bytes"] = (info["sizes"]["data"] + info["sizes"]["bss"]
                                  + info["sizes"]["heap_high_water"]
                                  + info["sizes"]["stack_high_water"])
    (out / FIRMWARE_FILE).write_text(json.dumps(info, indent=1) + "\n")
  return info


def _check_target(out: pathlib.Path, report: dict[str, Any], target_name: str) -> None:
  if report["target"] != target_name:
    raise ExportError(f"{out} was compiled for {report['target']}, not {target_name}: compile the "
                      f"export for {target_name} (python -m kws_jax.compile EXPORT --target "
                      f"{target_name} --firmware --out DIR)")


def _zeros(n: int) -> np.ndarray:
  return np.zeros(n, np.float32)


def link(out: pathlib.Path, runtime: pathlib.Path) -> pathlib.Path:
  """Compiles the model's C (EmitC module, step, host link) and links it with the runtime."""
  out = out.resolve()  # the compiler runs in the runtime's build dir
  compile_flags, link_command = iree_runtime_build.probe_flags(runtime)
  targets = iree_compile.targets_dir()
  objects_dir = out / "firmware_obj"
  objects_dir.mkdir(exist_ok=True)
  objects = []
  for name in _MODEL_SOURCES:
    obj = objects_dir / (pathlib.Path(name).stem + ".o")
    command = [link_command[0], *compile_flags, f"-I{out}", f"-I{targets / 'common'}",
               f"-I{targets / 'emulated'}", "-c", str(targets / name), "-o", str(obj)]
    _run(command, f"compiling {name} for {out}", runtime)
    objects.append(str(obj))
  objects.append(str(out / iree_compile.STATIC_OBJECT_FILE))
  probe_object = f"CMakeFiles/{iree_runtime_build.PROBE}.dir/probe.c.obj"
  elf = out / ELF_FILE
  command = []
  for i, arg in enumerate(link_command):
    if arg == probe_object:
      command += objects
    elif i > 0 and link_command[i - 1] == "-o":
      command.append(str(elf))
    else:
      command.append(arg)
  command += [f"-Wl,-Map={out / 'kws_firmware.map'}"]
  if probe_object not in link_command:
    raise ExportError(f"{runtime}/CMakeFiles: unexpected link line (no {probe_object}); remove "
                      f"{runtime} and build again")
  _run(command, f"linking {elf}", runtime)
  return elf


def _run(command: list[str], what: str, cwd: pathlib.Path) -> None:
  proc = subprocess.run(command, capture_output=True, text=True, cwd=cwd)
  if proc.returncode != 0:
    lines = [line for line in proc.stderr.splitlines()
             if "error" in line and "collect2" not in line or "undefined reference" in line]
    lines = lines or proc.stderr.splitlines()[-1:]
    raise ExportError(f"{what} failed: {(lines or ['no message'])[0].strip()[:300]}")


def elf_sizes(elf: pathlib.Path) -> dict[str, int]:
  """text (code and read-only data, in flash), data (flash and RAM), bss (RAM), like `size`."""
  sizes = {"text": 0, "data": 0, "bss": 0}
  with open(elf, "rb") as f:
    for section in ELFFile(f).iter_sections():
      flags = section["sh_flags"]
      if not flags & 0x2 or section.name in (".stack",):  # SHF_ALLOC; the stack is counted apart
        continue
      if section["sh_type"] == "SHT_NOBITS":
        sizes["bss"] += section["sh_size"]
      elif flags & 0x1:  # SHF_WRITE
        sizes["data"] += section["sh_size"]
      else:
        sizes["text"] += section["sh_size"]
  return sizes


def mark_address(elf: pathlib.Path) -> int:
  with open(elf, "rb") as f:
    symtab = ELFFile(f).get_section_by_name(".symtab")
    for sym in symtab.iter_symbols() if symtab is not None else []:
      if sym.name == MARK_SYMBOL:
        return int(sym["st_value"]) & ~1
  raise ExportError(f"{elf}: no {MARK_SYMBOL} symbol; build the firmware again")


def summary(info: dict[str, Any]) -> str:
  s = info["sizes"]
  line = (f"firmware ({info['target']}, {info['board']}): flash {s['flash_bytes']:,} B "
          f"(text {s['text']:,}, data {s['data']:,}), static RAM {s['data'] + s['bss']:,} B "
          f"(data {s['data']:,}, bss {s['bss']:,})")
  if "heap_high_water" in s:
    line += (f"; heap high-water {s['heap_high_water']:,} B, stack {s['stack_high_water']:,} B, "
             f"RAM in all {s['ram_bytes']:,} B")
  return line


def main(args) -> int:
  """`python -m kws_jax.compile ... --firmware`: compile (unless given a compiled dir), then link."""
  source = pathlib.Path(args.export_dir or "")
  if not (args.export_dir and args.target):
    raise ExportError("give EXPORT_DIR (or a compiled dir), --target NAME and --out OUT_DIR "
                      "with --firmware")
  board = load_board(args.target)[1]
  if (source / iree_compile.COMPILE_FILE).is_file():
    out = source   # already compiled: check its target before anything slow
    _check_target(out, iree_compile.load_compiled(out)[1], args.target)
    check_compiler(board)
  else:
    check_compiler(board)
    if not args.out:
      raise ExportError("give --out OUT_DIR for the compiled dir and its firmware")
    out = pathlib.Path(args.out)
    iree_compile.compile_export(source, args.target, out, extra_flags=args.iree_flag)
    print(f"compiled {source} for {args.target} -> {out}")
  info = build_firmware(out, args.target, iree_source=args.iree_source)
  print(f"{out / ELF_FILE}: {summary(info)}")
  return 0
