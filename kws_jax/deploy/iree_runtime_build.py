"""The IREE runtime for bare-metal firmware: unpacked, patched and built once per target.

The runtime is built from IREE's sources (not on PyPI or Debian; this project ships
none): a source tarball such as `../shared/vendor/iree-runtime-src-<commit>.tar.xz`,
or an IREE checkout. Everything goes into a cache outside the repository
(`~/.cache/kws_jax/firmware`, `KWS_CACHE_DIR` overrides), keyed by the source's hash
and, for the build, by the target and the board code, so that the second firmware
build of a target only compiles and links the model.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from typing import Any

import iree.runtime

from kws_jax.deploy import iree_compile
from kws_jax.errors import ExportError

CMAKE_MIN = (3, 26)
PROBE = "kws_link_probe"
# The vm-c (EmitC) output of iree-compile aligns iree_vm_ref_t to 8 bytes; the
# runtime's struct has its natural 4-byte alignment on 32-bit targets, so a ref
# argument of a native call lands 4 bytes off ("ref type mismatch; while invoking
# native function hal.fence.await"). Aligning the field in the (cached) copy of the
# runtime makes both agree; it changes nothing on 64-bit targets.
_REF_FIELD = ("typedef struct iree_vm_ref_t {\n"
              "  // Pointer to the object. Type is resolved based on the |type| field.\n"
              "  // Will be NULL if the reference points to nothing.\n  void* ptr;")
_REF_FIELD_FIXED = _REF_FIELD.replace("  void* ptr;", "  iree_alignas(8) void* ptr;")
_REF_HEADER = "runtime/src/iree/vm/ref.h"
# Sizes fixed in IREE's sources that cost a microcontroller RAM, made overridable
# (#ifndef) so that targets/common/iree_bare_metal.h can set them: the device
# topology's 32 x 32 edge table (16 KB of heap and as much stack while it is built,
# for one device), the VM invocation's 8 KiB inline stack (zeroed every call; the
# EmitC module's frames are a few hundred bytes, and the stack grows on the heap if
# ever needed) and the local-sync device's 4 KiB minimum arena block (every memoized
# command buffer's resource set takes a block: 36 KB of heap for the streaming
# DS-CNN; arenas allocate anything larger than a block by itself). Skipped where a
# source spells them differently: only RAM is at stake.
_OVERRIDABLE = (("runtime/src/iree/hal/topology.h", "IREE_HAL_TOPOLOGY_MAX_DEVICE_COUNT", "32"),
                ("runtime/src/iree/vm/stack.h", "IREE_VM_STACK_DEFAULT_SIZE", "(8 * 1024)"))
_MIN_BLOCK = "IREE_HAL_SYNC_DEVICE_MIN_ARENA_BLOCK_SIZE"
_REPLACEMENTS = (("runtime/src/iree/hal/drivers/local_sync/sync_device.c",
                  "  if (params->arena_block_size < 4096) {\n",
                  f"#ifndef {_MIN_BLOCK}\n#define {_MIN_BLOCK} 4096\n#endif\n"
                  f"  if (params->arena_block_size < {_MIN_BLOCK}) {{\n"),)
# Bumped whenever _patch changes, so that cached sources are patched again.
_PATCH_VERSION = 3
# What IREE's runtime CMake reads besides runtime/ (a full checkout also has the
# compiler's sources, which a runtime-only configure never opens).
_KEEP_WHOLE = ("CMakeLists.txt", "LICENSE", "build_tools", "runtime", "third_party/flatcc",
               "third_party/dlmalloc")
_CMAKE_ONLY = ("compiler", "tests", "tools")
# Files of targets/ that the runtime build does not compile (each model's firmware
# build compiles them), so editing them does not rebuild the runtime.
_MODEL_STAGE = ("kws_runtime.c", "kws_runtime.h", "main.c", "kws_firmware.cmake",
                "hostlink_main.c", "insn_count_plugin.c", "target.json")


def cache_root() -> pathlib.Path:
  env = os.environ.get("KWS_CACHE_DIR")
  return pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "kws_jax" / "firmware"


def default_iree_source() -> pathlib.Path | None:
  """`KWS_IREE_SOURCE`, else the newest runtime tarball in ../shared/vendor beside the checkout."""
  env = os.environ.get("KWS_IREE_SOURCE")
  if env:
    return pathlib.Path(env)
  vendor = iree_compile.targets_dir().parent.parent / "shared" / "vendor"
  found = sorted(vendor.glob("iree-runtime-src-*.tar.*")) if vendor.is_dir() else []
  return found[-1] if found else None


def file_hash(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _is_source_tree(root: pathlib.Path) -> bool:
  return ((root / "runtime/src/iree/runtime/api.h").is_file() and (root / "CMakeLists.txt").is_file()
          and (root / "third_party/flatcc").is_dir())


def _not_iree(path: pathlib.Path, why: str) -> ExportError:
  return ExportError(f"{path}: not an IREE source tree ({why}); pass --iree-source DIR|TARBALL "
                     f"with IREE's runtime/ and third_party/flatcc (e.g. "
                     f"../shared/vendor/iree-runtime-src-*.tar.xz)")


def prepared_source(source: str | os.PathLike | None) -> pathlib.Path:
  """A patched copy of the IREE sources in the cache (made once per source); returns its root."""
  if source is None:
    source = default_iree_source()
    if source is None:
      raise ExportError("no IREE runtime sources: pass --iree-source DIR|TARBALL (an IREE checkout "
                        "or ../shared/vendor/iree-runtime-src-*.tar.xz), or set KWS_IREE_SOURCE")
  path = pathlib.Path(source).expanduser().resolve()
  if not path.exists():
    raise ExportError(f"{path}: no such IREE source dir or tarball (--iree-source)")
  if path.is_file():
    if not tarfile.is_tarfile(path):
      raise _not_iree(path, "not a directory or a tar archive")
    key = file_hash(path)[:12]
  else:
    if not _is_source_tree(path):
      raise _not_iree(path, "no runtime/src/iree/runtime/api.h or third_party/flatcc")
    head = path / ".git" / "HEAD"
    stamp = head.read_text() if head.is_file() else str((path / _REF_HEADER).stat().st_mtime)
    key = hashlib.sha256(f"{path}\n{stamp}".encode()).hexdigest()[:12]
  dest = cache_root() / f"src-{key}-p{_PATCH_VERSION}"
  with _locked(dest.with_suffix(".lock")):
    if not (dest / ".kws_ready").is_file():
      _unpack(path, dest)
  return dest


def _unpack(path: pathlib.Path, dest: pathlib.Path) -> None:
  shutil.rmtree(dest, ignore_errors=True)
  tmp = pathlib.Path(tempfile.mkdtemp(dir=dest.parent, prefix=dest.name + ".tmp"))
  try:
    if path.is_file():
      with tarfile.open(path) as tar:
        tar.extractall(tmp, filter="data")
      roots = [p for p in tmp.iterdir() if _is_source_tree(p)] + ([tmp] if _is_source_tree(tmp) else [])
      if not roots:
        raise _not_iree(path, "the archive has no runtime/src/iree/runtime/api.h or third_party/flatcc")
      root = roots[0]
    else:
      root = tmp / "iree"
      _copy_runtime_subset(path, root)
    _patch(root, path)
    (root / ".kws_ready").write_text(f"{path}\n")
    root.rename(dest)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def _copy_runtime_subset(src: pathlib.Path, dst: pathlib.Path) -> None:
  skip_git = shutil.ignore_patterns(".git")
  for name in _KEEP_WHOLE:
    if (src / name).is_dir():
      shutil.copytree(src / name, dst / name, ignore=skip_git)
    elif (src / name).is_file():
      dst.mkdir(parents=True, exist_ok=True)
      shutil.copyfile(src / name, dst / name)
  for name in _CMAKE_ONLY:
    for file in (src / name).rglob("*") if (src / name).is_dir() else []:
      if file.is_file() and (file.name == "CMakeLists.txt" or file.suffix == ".cmake"):
        (dst / file.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, dst / file.relative_to(src))


def _patch(root: pathlib.Path, origin: pathlib.Path) -> None:
  header = root / _REF_HEADER
  text = header.read_text()
  if _REF_FIELD_FIXED not in text:
    if _REF_FIELD not in text:
      raise ExportError(f"{origin}: this IREE version's iree_vm_ref_t (in {_REF_HEADER}) is not "
                        f"the one kws_jax knows how to fix for 32-bit EmitC; use the runtime "
                        f"source matching iree-base-compiler (BUILD.md section 5)")
    header.write_text(text.replace(_REF_FIELD, _REF_FIELD_FIXED))
  replacements = [(name, f"#define {macro} {value}\n", f"#ifndef {macro}\n#define {macro} "
                   f"{value}\n#endif\n") for name, macro, value in _OVERRIDABLE]
  for name, old, new in replacements + list(_REPLACEMENTS):
    path = root / name
    text = path.read_text() if path.is_file() else ""
    if old in text:
      path.write_text(text.replace(old, new))


class _locked:
  """An exclusive file lock: two builds of one cache entry wait for each other."""

  def __init__(self, path: pathlib.Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    self.path = path

  def __enter__(self):
    self.file = open(self.path, "w")
    fcntl.flock(self.file, fcntl.LOCK_EX)
    return self

  def __exit__(self, *exc):
    fcntl.flock(self.file, fcntl.LOCK_UN)
    self.file.close()


def cmake_tool() -> str:
  """A CMake >= 3.26 (IREE's minimum; Debian 12 has 3.25): the venv's (pip cmake) or PATH's."""
  candidates = [pathlib.Path(sys.executable).parent / "cmake", shutil.which("cmake")]
  for tool in candidates:
    if tool and pathlib.Path(tool).is_file():
      out = subprocess.run([str(tool), "--version"], capture_output=True, text=True).stdout
      match = re.search(r"(\d+)\.(\d+)", out)
      if match and tuple(map(int, match.groups())) >= CMAKE_MIN:
        return str(tool)
  raise ExportError("the IREE runtime build needs CMake >= 3.26 (Debian 12 has 3.25): "
                    "pip install cmake==3.29.6")


def board_hash(target: dict[str, Any]) -> str:
  """Hash of the code the runtime build compiles from targets/: a change rebuilds."""
  root = iree_compile.targets_dir()
  # The build refers to these files by path (the forced include), so the path counts too.
  digest = hashlib.sha256(str(root.resolve()).encode())
  for folder in ("common", "emulated", pathlib.Path(target["dir"]).name):
    for file in sorted((root / folder).rglob("*")):
      if file.is_file() and file.name not in _MODEL_STAGE:
        digest.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes())
  return digest.hexdigest()[:12]


def iree_host_bin_dir() -> str:
  """Where iree-flatcc-cli is (the runtime wheel), which the runtime's CMake needs for schemas."""
  return str(pathlib.Path(iree.runtime.__file__).resolve().parents[1] / "_runtime_libs")


def built_runtime(target: dict[str, Any], firmware: dict[str, Any], source: pathlib.Path,
                  log=print) -> pathlib.Path:
  """The runtime build dir for `target` (configured and built on first use)."""
  tdir = pathlib.Path(target["dir"])
  build = cache_root() / f"runtime-{target['name']}-{source.name[4:]}-{board_hash(target)}"
  with _locked(build.with_suffix(".lock")):
    if (build / ".kws_ready").is_file():
      return build
    cmake = cmake_tool()
    log(f"building the IREE runtime for {target['name']} (once; cached in {build}) ...")
    resolve = lambda p: str((tdir / p).resolve())
    configure = [cmake, "-G", "Unix Makefiles", "-S", str(iree_compile.targets_dir() / "common" / "runtime"),
                 "-B", str(build), f"-DCMAKE_TOOLCHAIN_FILE={tdir / 'toolchain.cmake'}",
                 "-DCMAKE_BUILD_TYPE=MinSizeRel", f"-DIREE_SOURCE_DIR={source}",
                 f"-DIREE_HOST_BIN_DIR={iree_host_bin_dir()}",
                 "-DKWS_BOARD_SOURCES=" + ";".join(resolve(p) for p in firmware["board_sources"]),
                 "-DKWS_LINKER_SCRIPT=" + (resolve(firmware["linker_script"])
                                           if firmware.get("linker_script") else ""),
                 "-DKWS_LINK_DIRS=" + ";".join(resolve(p) for p in firmware.get("link_dirs", [])),
                 "-DKWS_LINK_FLAGS=" + " ".join(firmware.get("link_flags", []))]
    steps = [configure, [cmake, "--build", str(build), "--target", PROBE, "-j2"]]
    build.mkdir(parents=True, exist_ok=True)
    log_path = build / "kws_build.log"
    with open(log_path, "w") as out:
      for command in steps:
        out.write(" ".join(command) + "\n")
        out.flush()
        proc = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
          raise ExportError(f"IREE runtime build failed for {target['name']}: "
                            f"{_first_error(log_path)} (full log in {log_path})")
    (build / ".kws_ready").write_text("ok\n")
  return build


def _first_error(log_path: pathlib.Path) -> str:
  lines = log_path.read_text(errors="replace").splitlines()
  errors = ([l.strip() for l in lines if "error:" in l]
            or [l.strip() for l in lines if "error" in l.lower() and "Werror" not in l])
  return (errors or lines[-1:] or ["no message"])[0][:300]


def probe_flags(build: pathlib.Path) -> tuple[list[str], list[str]]:
  """(compile flags, link command) of the probe, as CMake wrote them for its own files."""
  probe_dir = build / "CMakeFiles" / f"{PROBE}.dir"
  flags: dict[str, str] = {}
  for line in (probe_dir / "flags.make").read_text().splitlines():
    key, sep, value = line.partition(" = ")
    if sep and not line.startswith("#"):
      flags[key.strip()] = value.strip()
  compile_flags = shlex.split(" ".join(flags.get(k, "") for k in ("C_DEFINES", "C_INCLUDES", "C_FLAGS")))
  link = shlex.split((probe_dir / "link.txt").read_text().strip().splitlines()[0])
  return compile_flags, link
