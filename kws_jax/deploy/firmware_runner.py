"""Run a firmware dir (kws_jax.deploy.firmware) under QEMU, hop by hop, as a streaming step.

    step = FirmwareStep("build/m4")                 # starts QEMU on first use
    state = step.initial_state()
    state, outputs = step.step(state, samples)      # numpy in, numpy out, like IreeStep
    state, outputs = step.run(audio)                 # outputs stacked per hop
    step.hop_instructions                            # with count_instructions=True

QEMU runs the firmware's `hostlink_main.c`, which opens two named pipes in QEMU's
working directory through semihosting: commands and audio go in, outputs and
state come out (raw little-endian arrays in meta.json's order). One QEMU process
serves every call until `close()`. With `count_instructions=True` QEMU loads the
instruction-count plugin (targets/emulated/insn_count_plugin.c, built into the
cache on first use), which reports the exact number of guest instructions of each
step.
"""

from __future__ import annotations

import json
import os
import pathlib
import select
import shutil
import struct
import subprocess
import tempfile
import time
from typing import Sequence

import numpy as np

from kws_jax.deploy import iree_compile, iree_runtime_build, protocol
from kws_jax.deploy import stablehlo_export as export
from kws_jax.errors import ExportError

FIRMWARE_FILE = "firmware.json"   # written by kws_jax.deploy.firmware beside the compiled files
QUIT, STEP, SET_STATE, GET_STATE, INFO = range(5)
# No reply within this long means the firmware hung (a real step takes well under 1 s).
REPLY_TIMEOUT_S = 120.0


def load_firmware(firmware_dir: str | os.PathLike) -> tuple[dict, dict, dict]:
  """(meta, compile report, firmware.json) of a firmware dir, checking the ELF is the one built."""
  root = pathlib.Path(firmware_dir)
  meta, report = iree_compile.load_compiled(root)
  path = root / FIRMWARE_FILE
  if not path.is_file():
    raise ExportError(f"{root}: no {FIRMWARE_FILE}; build the firmware with `python -m "
                      f"kws_jax.compile {root} --target {report['target']} --firmware`")
  info = json.loads(path.read_text())
  elf = root / info["elf"]
  if not elf.is_file() or iree_runtime_build.file_hash(elf) != info["elf_sha256"]:
    raise ExportError(f"{elf} is missing or does not match {FIRMWARE_FILE}; build the firmware again")
  return meta, report, info



def plugin_path() -> pathlib.Path:
  """The instruction-count plugin, compiled with the host's C compiler into the cache."""
  source = iree_compile.targets_dir() / "emulated" / "insn_count_plugin.c"
  key = iree_runtime_build.file_hash(source)[:12]
  out = iree_runtime_build.cache_root() / f"insn_count-{key}.so"
  if not out.is_file():
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
      raise ExportError("instruction counts need a host C compiler for the QEMU plugin: "
                        "install Debian's gcc")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    proc = subprocess.run([compiler, "-shared", "-fPIC", "-O2", str(source), "-o", str(tmp)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
      raise ExportError(f"compiling {source} failed: {proc.stderr.strip()[:300]}")
    tmp.rename(out)
  return out


class FirmwareStep(protocol.MetaStepRunner):
  """A firmware dir's step under QEMU, callable like the JAX step and IreeStep."""

  def __init__(self, firmware_dir: str | os.PathLike, count_instructions: bool = False,
               profile: bool = False):
    self.dir = pathlib.Path(firmware_dir)
    self.meta, self.report, self.info = load_firmware(self.dir)
    self.profile = profile
    self.count_instructions = count_instructions or profile  # the profile needs the marks
    self.num_outputs = len(self.meta["outputs"]) - len(self.meta["state"])
    self.output_names = [o["name"] for o in self.meta["outputs"][:self.num_outputs]]
    self._initial = export.load_initial_state(self.dir, self.meta)
    self._proc: subprocess.Popen | None = None
    self._tmp: tempfile.TemporaryDirectory | None = None
    self.hop_instructions: list[int] = []   # instructions of each step run so far
    self._profile_counts: dict[int, int] = {}  # address -> executions inside steps

  # ------------------------------------------------------------------ QEMU process

  def _start(self) -> None:
    qemu = self.info["qemu"]
    if shutil.which(qemu[0]) is None:
      raise ExportError(f"{qemu[0]} not found: install Debian's "
                        f"{self.info.get('qemu_debian_package') or qemu[0]}")
    self._tmp = tempfile.TemporaryDirectory(prefix="kws_fw_")
    tmp = pathlib.Path(self._tmp.name)
    for name in ("kws_in", "kws_out"):
      os.mkfifo(tmp / name)
    command = [*qemu, "-nographic", "-monitor", "none", "-serial", "none",
               "-semihosting-config", "enable=on,target=native",
               "-kernel", str((self.dir / self.info["elf"]).resolve())]
    if self.count_instructions:
      plugin = f"{plugin_path()},out={tmp / 'marks.txt'},mark={self.info['mark_address']}"
      if self.profile:
        base, size = _text_range(self.dir / self.info["elf"])
        plugin += f",profile={tmp / 'profile.txt'},base={base},size={size}"
      command += ["-plugin", plugin]
    self._log = open(tmp / "qemu.log", "wb")
    self._proc = subprocess.Popen(command, cwd=tmp, stdin=subprocess.DEVNULL, stdout=self._log,
                                  stderr=subprocess.STDOUT)
    # O_RDWR: opening a FIFO this way never blocks, whether or not QEMU got this far.
    self._in = os.open(tmp / "kws_in", os.O_RDWR)
    self._out = os.open(tmp / "kws_out", os.O_RDWR)

  def _failure(self, what: str) -> ExportError:
    time.sleep(0.2)
    log = pathlib.Path(self._tmp.name) / "qemu.log" if self._tmp else None
    text = log.read_text(errors="replace").strip() if log and log.is_file() else ""
    code = self._proc.poll() if self._proc else None
    self.close()
    # The status message, not IREE's call-stack lines that follow it.
    lines = [l for l in text.splitlines() if l.strip() and not l.lstrip().startswith("[")]
    last = lines[-1][:300] if lines else (text[-300:] or "no output")
    return ExportError(f"firmware {self.dir / self.info['elf']} under {self.info['qemu'][0]}: "
                       f"{what} (exit status {code}): {last}")

  def _send(self, command: int, payload: bytes = b"") -> None:
    if self._proc is None:
      self._start()
    data = struct.pack("<I", command) + payload
    while data:
      _, ready, _ = select.select([], [self._in], [], 1.0)
      if self._proc.poll() is not None:
        raise self._failure("exited")
      if ready:
        data = data[os.write(self._in, data):]

  def _receive(self, size: int) -> bytes:
    chunks, got, deadline = [], 0, time.monotonic() + REPLY_TIMEOUT_S
    while got < size:
      ready, _, _ = select.select([self._out], [], [], 0.5)
      if ready:
        chunk = os.read(self._out, size - got)
        chunks.append(chunk)
        got += len(chunk)
      elif self._proc.poll() is not None:
        raise self._failure("exited")
      elif time.monotonic() > deadline:
        raise self._failure(f"no reply in {REPLY_TIMEOUT_S:.0f} s")
    return b"".join(chunks)

  def _status(self) -> None:
    (status,) = struct.unpack("<I", self._receive(4))
    if status != 0:
      raise self._failure("step failed")

  def close(self) -> None:
    """Stops QEMU (the next call starts it again)."""
    if self._proc is not None:
      if self._proc.poll() is None:
        try:
          os.write(self._in, struct.pack("<I", QUIT))
          self._proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
          self._proc.kill()
          self._proc.wait()
      self._read_marks()
      self._read_profile()
      os.close(self._in)
      os.close(self._out)
      self._log.close()
      self._proc = None
    if self._tmp is not None:
      self._tmp.cleanup()
      self._tmp = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def __del__(self):
    try:
      self.close()
    except Exception:  # Interpreter shutdown: nothing left to report to.
      pass

  # ------------------------------------------------------------------ protocol

  def _set_state(self, state: Sequence[np.ndarray]) -> None:
    if len(state) != len(self.meta["state"]):
      raise ExportError(f"expected {len(self.meta['state'])} state arrays, got {len(state)}")
    payload = b""
    for value, spec in zip(state, self.meta["state"]):
      array = np.asarray(value, dtype=spec["dtype"])
      if list(array.shape) != spec["shape"]:
        raise ExportError(f"state {spec['name']}: shape {list(array.shape)}, the module needs "
                          f"{spec['shape']}")
      payload += np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
    self._send(SET_STATE, payload)
    self._status()

  def _get_state(self) -> list[np.ndarray]:
    self._send(GET_STATE)
    self._status()
    return [self._array(spec) for spec in self.meta["state"]]

  def _array(self, spec: dict) -> np.ndarray:
    dtype = np.dtype(spec["dtype"]).newbyteorder("<")
    count = int(np.prod(spec["shape"], dtype=np.int64))
    return np.frombuffer(self._receive(count * dtype.itemsize), dtype).astype(
        spec["dtype"]).reshape(spec["shape"])

  def _hop(self, samples: np.ndarray) -> list[np.ndarray]:
    samples = np.asarray(samples, np.float32)
    if samples.shape != (self.hop_size,):
      raise ExportError(f"input samples: shape {list(samples.shape)}, the module needs "
                        f"[{self.hop_size}]")
    self._send(STEP, samples.astype("<f4").tobytes())
    self._status()
    return [self._array(spec) for spec in self.meta["outputs"][:self.num_outputs]]

  def memory(self) -> dict[str, int]:
    """Heap and stack high-water marks (bytes) of the running firmware so far."""
    self._send(INFO)
    self._status()
    heap, stack = struct.unpack("<II", self._receive(8))
    return {"heap_high_water": heap, "stack_high_water": stack}

  def _read_marks(self) -> None:
    """Per-step instruction counts from the plugin's marks (two per step: before, after)."""
    if not (self.count_instructions and self._tmp):
      return
    path = pathlib.Path(self._tmp.name) / "marks.txt"
    lines = path.read_text().split() if path.is_file() else []
    marks = [int(x) for x in lines if x.isdigit()]
    self.hop_instructions += [b - a for a, b in zip(marks[0::2], marks[1::2])]

  def step(self, state: Sequence[np.ndarray], samples: np.ndarray
           ) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """One hop: `(new_state, outputs)` as numpy, like the JAX step (state as a flat list)."""
    self._set_state(state)
    outputs = self._hop(samples)
    return self._get_state(), dict(zip(self.output_names, outputs))

  def run(self, audio: np.ndarray, state: Sequence[np.ndarray] | None = None
          ) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Steps over `audio` (length a multiple of the hop); outputs stacked `(steps, ...)`."""
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1 or audio.size % self.hop_size:
      raise ExportError(f"audio must be 1-D with a length that is a multiple of "
                        f"{self.hop_size}; got shape {audio.shape}")
    self._set_state(self.initial_state() if state is None else list(state))
    collected = [self._hop(hop) for hop in audio.reshape(-1, self.hop_size)]
    specs = self.meta["outputs"][:self.num_outputs]
    stacked = {name: (np.stack([c[i] for c in collected]) if collected else
                      np.zeros((0, *specs[i]["shape"]), specs[i]["dtype"]))
               for i, name in enumerate(self.output_names)}
    return self._get_state(), stacked

  def instructions(self) -> list[int]:
    """Exact guest instructions of every step so far (stops QEMU to flush the plugin's file)."""
    if not self.count_instructions:
      raise ExportError("FirmwareStep(..., count_instructions=True) counts instructions")
    self.close()
    return list(self.hop_instructions)

  def function_profile(self) -> list[tuple[str, int]]:
    """(function, instructions) executed inside the steps so far, most first (stops QEMU)."""
    if not self.profile:
      raise ExportError("FirmwareStep(..., profile=True) profiles the steps")
    self.close()
    starts, names = _functions(self.dir / self.info["elf"])
    totals: dict[str, int] = {}
    for address, executed in self._profile_counts.items():
      i = int(np.searchsorted(starts, address, side="right")) - 1
      name = names[i] if i >= 0 else "?"
      totals[name] = totals.get(name, 0) + executed
    return sorted(totals.items(), key=lambda item: -item[1])

  def _read_profile(self) -> None:
    """Adds the plugin's per-address counts of the QEMU run that just ended."""
    path = pathlib.Path(self._tmp.name) / "profile.txt" if self.profile and self._tmp else None
    if path and path.is_file():
      for line in path.read_text().splitlines():
        address, executed = (int(x) for x in line.split())
        self._profile_counts[address] = self._profile_counts.get(address, 0) + executed


def _text_range(elf: pathlib.Path) -> tuple[int, int]:
  """(lowest address, bytes) spanned by the ELF's executable sections."""
  from elftools.elf.constants import SH_FLAGS
  from elftools.elf.elffile import ELFFile
  with open(elf, "rb") as f:
    spans = [(s["sh_addr"], s["sh_addr"] + s["sh_size"]) for s in ELFFile(f).iter_sections()
             if s["sh_flags"] & SH_FLAGS.SHF_EXECINSTR and s["sh_size"]]
  low = min(a for a, _ in spans)
  return low, max(b for _, b in spans) - low


def _functions(elf: pathlib.Path) -> tuple[np.ndarray, list[str]]:
  """Function start addresses (sorted, Thumb bit cleared) and names from the ELF's symbols."""
  from elftools.elf.elffile import ELFFile
  with open(elf, "rb") as f:
    table = ELFFile(f).get_section_by_name(".symtab")
    found = sorted({(int(sym["st_value"]) & ~1, sym.name) for sym in table.iter_symbols()
                    if sym["st_info"]["type"] == "STT_FUNC" and sym.name} if table else set())
  return np.asarray([a for a, _ in found], np.int64), [n for _, n in found]


def is_firmware_dir(path: str | os.PathLike) -> bool:
  return (pathlib.Path(path) / FIRMWARE_FILE).is_file()
