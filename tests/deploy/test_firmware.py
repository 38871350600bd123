"""Firmware for the emulated boards: built, run under QEMU, same scores as the JAX step.

The Cortex-M4 firmware runs in the default suite: it needs Debian's
gcc-arm-none-eabi, libnewlib-arm-none-eabi and qemu-system-arm, CMake >= 3.26 and
the IREE runtime sources (../shared/vendor or KWS_IREE_SOURCE); without them the
tests skip and say which is missing. The runtime build is cached outside the repo,
so only the first run on a machine pays for it.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pytest
from test_iree import assert_close, jax_reference

from kws_jax import errors
from kws_jax.deploy import firmware, firmware_runner, iree_compile, iree_runtime_build
from kws_jax.errors import ExportError
from kws_jax.streameval import runners

_BUILT: dict[str, pathlib.Path] = {}


def _missing_tools(target: str) -> str | None:
  try:
    _, board = firmware.load_board(target)
  except ExportError as e:
    return str(e)
  for tool, package in ((board["compiler"], " ".join(board["debian_packages"])),
                        (board["qemu"][0], board["qemu_debian_package"])):
    if shutil.which(tool) is None:
      return f"{tool} not installed (Debian: {package})"
  try:
    iree_runtime_build.cmake_tool()
  except ExportError as e:
    return str(e)
  if iree_runtime_build.default_iree_source() is None:
    return "no IREE runtime sources (../shared/vendor/iree-runtime-src-*.tar.xz or KWS_IREE_SOURCE)"
  return None


@pytest.fixture(scope="session")
def built_firmware(compiled, tmp_path_factory):
  """built_firmware(target) -> firmware dir of the tiny GRU export, built once per session."""
  def get(target: str) -> pathlib.Path:
    reason = _missing_tools(target)
    if reason:
      pytest.skip(reason)
    if target not in _BUILT:
      out = tmp_path_factory.mktemp(f"firmware_{target}")
      shutil.copytree(compiled(target), out, dirs_exist_ok=True)
      firmware.build_firmware(out, target)
      _BUILT[target] = out
    return _BUILT[target]
  return get


def _check_parity(fw_dir, trained_gru, test_clip):
  step = firmware_runner.FirmwareStep(fw_dir)
  _, ref_state, ref_outputs = jax_reference(trained_gru, test_clip)
  assert ref_outputs["scores"].shape[0] == 100
  state, outputs = step.run(test_clip)
  assert_close(state, outputs, ref_state, ref_outputs, 1e-4)
  assert np.ptp(outputs["scores"], axis=0).max() > 1e-3   # the scores move over the clip
  # step() carries the state in and out explicitly: 3 chained hops equal run()'s first 3.
  hop = step.hop_size
  state = step.initial_state()
  for i in range(3):
    state, out = step.step(state, test_clip[i * hop:(i + 1) * hop])
    np.testing.assert_allclose(out["scores"], outputs["scores"][i], atol=1e-6, rtol=0)
  step.close()


def test_cortex_m4_firmware_100_hops_match_jax(built_firmware, trained_gru, test_clip):
  fw_dir = built_firmware("cortex-m4")
  info = json.loads((fw_dir / firmware.FIRMWARE_FILE).read_text())
  sizes = info["sizes"]
  # Flash and RAM as the build reported them: plausible, and within the board's memory.
  assert 100_000 < sizes["flash_bytes"] < 4 << 20
  assert 10_000 < sizes["heap_high_water"] < 4 << 20 and 0 < sizes["stack_high_water"] < 64 << 10
  _check_parity(fw_dir, trained_gru, test_clip)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["cortex-m55", "riscv32"])
def test_other_firmware_100_hops_match_jax(built_firmware, trained_gru, test_clip, target):
  _check_parity(built_firmware(target), trained_gru, test_clip)


def test_instruction_counts_are_exact_and_repeatable(built_firmware, test_clip):
  fw_dir = built_firmware("cortex-m4")
  counts = []
  for _ in range(2):
    step = firmware_runner.FirmwareStep(fw_dir, count_instructions=True)
    step.run(test_clip[:4 * step.hop_size])
    counts.append(step.instructions())
  assert len(counts[0]) == 4
  assert counts[0] == counts[1]   # the same audio takes the same instructions, to the one
  assert all(10_000 < c < 50_000_000 for c in counts[0])


def test_instruction_bench_compares_with_a_reference_runner(built_firmware, compiled, test_clip):
  from kws_jax.bench import firmware_instructions
  r = firmware_instructions.measure(str(built_firmware("cortex-m4")), test_clip, 12,
                                    against=str(compiled("host-cpu")))
  diff = r["max_abs_difference"]
  assert set(diff) == {"logits", "scores", "state"}
  assert max(diff.values()) < 1e-4 and r["hops"] == 12


def test_function_profile_accounts_for_the_steps_instructions(built_firmware, test_clip):
  fw_dir = built_firmware("cortex-m4")
  step = firmware_runner.FirmwareStep(fw_dir, profile=True)
  step.run(test_clip[:3 * step.hop_size])
  profile = step.function_profile()
  total = sum(step.instructions())
  names = [name for name, _ in profile]
  # Every instruction inside the steps is attributed to a function (give or take the two
  # mark instructions of each step), and the step's own entry point is among them.
  assert abs(sum(count for _, count in profile) - total) <= 2 * 3
  assert "kws_runtime_step" in names and any("dispatch" in n for n in names), names[:10]
  assert "?" not in names
  assert [c for _, c in profile] == sorted((c for _, c in profile), reverse=True)


def test_stream_eval_takes_a_firmware_dir(built_firmware, trained_gru, test_clip):
  from kws_jax.deploy import streaming_step as streaming
  step = streaming.make_step(trained_gru, vad=False, smoothing=False)
  jax_runner = runners.StreamRunner(step, step.label_names, step.hop_size, step.sample_rate)
  fw = runners.iree_runner(str(built_firmware("cortex-m4")), "never")
  assert isinstance(fw.step, firmware_runner.FirmwareStep)
  want = jax_runner.posteriors(test_clip[:16000], [40])
  got = fw.posteriors(test_clip[:16000], [40])
  np.testing.assert_allclose(got.scores, want.scores, atol=1e-4, rtol=0)
  fw.step.close()


# ------------------------------------------------------------------ one-line errors

def _cli_error(argv, capsys) -> str:
  with pytest.raises(SystemExit) as exit_info:
    errors.run_cli(iree_compile.main, argv)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: ") and "\n" not in err, err
  return err


def test_bad_iree_source_is_a_one_line_error(compiled, tmp_path, capsys, monkeypatch):
  monkeypatch.setenv("KWS_CACHE_DIR", str(tmp_path / "cache"))
  bad = tmp_path / "not-iree"
  bad.mkdir()
  (bad / "README").write_text("no sources here")
  with pytest.raises(ExportError, match=r"not-iree: not an IREE source tree .*--iree-source"):
    iree_runtime_build.prepared_source(bad)
  if shutil.which("arm-none-eabi-gcc") is None:
    pytest.skip("the CLI checks the cross compiler first: arm-none-eabi-gcc not installed")
  out = tmp_path / "m4"
  shutil.copytree(compiled("cortex-m4"), out)
  err = _cli_error([str(out), "--target", "cortex-m4", "--firmware", "--iree-source", str(bad)],
                   capsys)
  assert "not an IREE source tree" in err
  err = _cli_error([str(out), "--target", "cortex-m4", "--firmware", "--iree-source",
                    str(tmp_path / "nowhere")], capsys)
  assert "no such IREE source dir or tarball" in err


def test_cached_sources_get_the_fixes_and_overridable_sizes(tmp_path, monkeypatch):
  monkeypatch.setenv("KWS_CACHE_DIR", str(tmp_path / "cache"))
  src = tmp_path / "iree"
  files = {
      "runtime/src/iree/runtime/api.h": "",
      "CMakeLists.txt": "",
      "third_party/flatcc/README": "",
      iree_runtime_build._REF_HEADER: f"// ref\n{iree_runtime_build._REF_FIELD}\n",
      "runtime/src/iree/hal/topology.h": "#define IREE_HAL_TOPOLOGY_MAX_DEVICE_COUNT 32\n",
      "runtime/src/iree/vm/stack.h": "#define IREE_VM_STACK_DEFAULT_SIZE (8 * 1024)\n",
      "runtime/src/iree/hal/drivers/local_sync/sync_device.c":
          "void f(void) {\n  if (params->arena_block_size < 4096) {\n  }\n}\n",
  }
  for name, text in files.items():
    (src / name).parent.mkdir(parents=True, exist_ok=True)
    (src / name).write_text(text)
  root = iree_runtime_build.prepared_source(src)
  assert "iree_alignas(8) void* ptr;" in (root / iree_runtime_build._REF_HEADER).read_text()
  for name, macro in [("runtime/src/iree/hal/topology.h", "IREE_HAL_TOPOLOGY_MAX_DEVICE_COUNT"),
                      ("runtime/src/iree/vm/stack.h", "IREE_VM_STACK_DEFAULT_SIZE"),
                      ("runtime/src/iree/hal/drivers/local_sync/sync_device.c",
                       "IREE_HAL_SYNC_DEVICE_MIN_ARENA_BLOCK_SIZE")]:
    assert f"#ifndef {macro}\n#define {macro} " in (root / name).read_text(), name
  # iree_bare_metal.h (force-included into every runtime file) sets each of them.
  header = (iree_compile.targets_dir() / "common" / "iree_bare_metal.h").read_text()
  for macro in ("IREE_HAL_TOPOLOGY_MAX_DEVICE_COUNT 1", "IREE_VM_STACK_DEFAULT_SIZE",
                "IREE_HAL_SYNC_DEVICE_MIN_ARENA_BLOCK_SIZE 1024"):
    assert f"#define {macro}" in header


def test_missing_cross_compiler_names_the_debian_packages(compiled, tmp_path, capsys, monkeypatch):
  monkeypatch.setenv("PATH", str(tmp_path))   # no arm-none-eabi-gcc on it
  out = tmp_path / "m4"
  shutil.copytree(compiled("cortex-m4"), out)
  err = _cli_error([str(out), "--target", "cortex-m4", "--firmware"], capsys)
  assert "arm-none-eabi-gcc not found: install Debian's gcc-arm-none-eabi libnewlib-arm-none-eabi" in err


def test_dir_compiled_for_another_target_is_refused(compiled, capsys):
  err = _cli_error([str(compiled("cortex-m55")), "--target", "cortex-m4", "--firmware"], capsys)
  assert "was compiled for cortex-m55, not cortex-m4" in err
  err = _cli_error([str(compiled("host-cpu")), "--target", "host-cpu", "--firmware"], capsys)
  assert "target host-cpu has no firmware build" in err
  with pytest.raises(ExportError, match="was compiled for host-cpu, not cortex-m4"):
    firmware.build_firmware(compiled("host-cpu"), "cortex-m4")


def test_firmware_runner_refuses_a_dir_without_firmware(compiled):
  with pytest.raises(ExportError, match="no firmware.json; build the firmware"):
    firmware_runner.FirmwareStep(compiled("cortex-m4"))


@pytest.fixture(scope="session")
def int8_dirs(trained_gru, tmp_path_factory):
  """(host-cpu dir, cortex-m4 dir) of the tiny GRU exported with int8 weights."""
  from kws_jax.deploy import stablehlo_export as export
  exported = tmp_path_factory.mktemp("export_int8")
  export.export_trained(trained_gru, exported, quantize="int8", chunk_hops=0)
  dirs = []
  for target in ("host-cpu", "cortex-m4"):
    out = tmp_path_factory.mktemp(f"int8_{target}")
    iree_compile.compile_export(exported, target, out)
    dirs.append(out)
  return dirs


@pytest.mark.slow
def test_int8_cortex_m4_firmware_matches_the_int8_host_module(int8_dirs, test_clip):
  from kws_jax.deploy import iree_runner
  reason = _missing_tools("cortex-m4")
  if reason:
    pytest.skip(reason)
  host_dir, m4_dir = int8_dirs
  firmware.build_firmware(m4_dir, "cortex-m4")
  step = firmware_runner.FirmwareStep(m4_dir)
  audio = test_clip[:30 * step.hop_size]
  _, host = iree_runner.IreeStep(host_dir, use_chunk=False).run(audio)
  _, got = step.run(audio)
  step.close()
  # Same int8 products (exact in int32); float parts may round differently per core.
  np.testing.assert_allclose(got["scores"], host["scores"], atol=1e-5, rtol=0)
