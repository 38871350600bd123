"""The compiled step on IREE matches the JAX step; bare-metal builds are well-formed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import jax
import numpy as np
import pytest
from export_helpers import binutils, vulkan_available

from kws_jax import errors
from kws_jax.configs import loader as config_loader
from kws_jax.deploy import iree_compile, iree_runner
from kws_jax.deploy import stablehlo_export as export
from kws_jax.deploy import streaming_step as streaming
from kws_jax.errors import ExportError
from kws_jax.models import builder
from kws_jax.streameval import runners

BARE_METAL = ["cortex-m4", "cortex-m55", "riscv32"]
# C math functions the firmware's libm provides.
LIBM = {f"{name}{suffix}" for name in ("floor", "ceil", "round", "trunc", "fmax", "fmin", "exp",
                                        "expm1", "log", "log1p", "log10", "log2", "pow", "sqrt",
                                        "sin", "cos", "tan", "tanh", "atan2", "fma", "fmod",
                                        "erf", "cbrt", "rint", "nearbyint")
        for suffix in ("", "f")}


def jax_reference(trained, clip, spectrum=None):
  """Scores/logits of every hop and the final flat state from the JAX step."""
  step = streaming.make_step(trained, spectrum=spectrum)
  hops = clip.size // step.hop_size
  state, outputs = step.run(clip[:hops * step.hop_size])
  return step, [np.asarray(x) for x in jax.tree.leaves(state)], {k: np.asarray(v) for k, v in outputs.items()}


def assert_close(iree_state, iree_outputs, ref_state, ref_outputs, tol):
  assert set(iree_outputs) == set(ref_outputs)
  for name in ref_outputs:
    np.testing.assert_allclose(iree_outputs[name], ref_outputs[name], atol=tol, rtol=0, err_msg=name)
  assert len(iree_state) == len(ref_state)
  for got, want in zip(iree_state, ref_state):
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, atol=tol, rtol=0)


def test_host_cpu_100_steps_match_jax(compiled, trained_gru, test_clip):
  """100 hops as 3 calls of the 30-hop chunk function and 10 single steps."""
  runner = iree_runner.IreeStep(compiled("host-cpu"))
  assert runner.device_name == "local-sync" and runner.chunk_hops == 30
  _, ref_state, ref_outputs = jax_reference(trained_gru, test_clip)
  assert ref_outputs["scores"].shape[0] == 100
  state, outputs = runner.run(test_clip)
  assert_close(state, outputs, ref_state, ref_outputs, 1e-5)
  # The scores are not trivially equal: they move over the clip.
  assert np.ptp(outputs["scores"], axis=0).max() > 1e-3


def test_host_cpu_run_without_chunk_module_matches_jax(compiled, trained_gru, test_clip):
  runner = iree_runner.IreeStep(compiled("host-cpu"), use_chunk=False)
  assert runner.chunk_hops == 0
  _, ref_state, ref_outputs = jax_reference(trained_gru, test_clip[:2400])
  state, outputs = runner.run(test_clip[:2400])
  assert_close(state, outputs, ref_state, ref_outputs, 1e-5)


def test_host_cpu_step_by_step_states(compiled, trained_gru, test_clip):
  """Chaining `step` (numpy state in and out each hop) tracks the JAX state at every hop."""
  runner = iree_runner.IreeStep(compiled("host-cpu"))
  step = streaming.make_step(trained_gru)
  apply = jax.jit(step.apply)
  jax_state, state = step.initial_state(), runner.initial_state()
  for chunk in test_clip.reshape(-1, step.hop_size)[:8]:
    jax_state, jax_out = apply(step.params, jax_state, chunk)
    state, out = runner.step(state, chunk)
    assert_close(state, out, [np.asarray(x) for x in jax.tree.leaves(jax_state)],
                 {k: np.asarray(v) for k, v in jax_out.items()}, 1e-5)


def _tool_chain(compiled_dir, clip, hop, steps):
  state = iree_runner.IreeStep(compiled_dir).initial_state()
  outputs = []
  for chunk in clip.reshape(-1, hop)[:steps]:
    state, out = iree_runner.run_module_tool(compiled_dir, state, chunk)
    outputs.append(out)
  return state, {k: np.stack([o[k] for o in outputs]) for k in outputs[0]}


def test_iree_run_module_10_steps_match_jax(compiled, trained_gru, test_clip):
  step, _, _ = jax_reference(trained_gru, test_clip)
  clip = test_clip[:10 * step.hop_size]
  ref_state, ref_out = step.run(clip)
  state, outputs = _tool_chain(compiled("host-cpu"), clip, step.hop_size, 10)
  assert_close(state, outputs, [np.asarray(x) for x in jax.tree.leaves(ref_state)],
               {k: np.asarray(v) for k, v in ref_out.items()}, 1e-5)


@pytest.mark.slow
def test_iree_run_module_100_steps_match_jax(compiled, trained_gru, test_clip):
  step, ref_state, ref_outputs = jax_reference(trained_gru, test_clip)
  state, outputs = _tool_chain(compiled("host-cpu"), test_clip, step.hop_size, 100)
  assert_close(state, outputs, ref_state, ref_outputs, 1e-5)


@pytest.mark.skipif(not vulkan_available(), reason="no Vulkan device (apt-get install libvulkan1 "
                    "mesa-vulkan-drivers for Mesa's lavapipe)")
@pytest.mark.without_tensorflow
def test_vulkan_100_steps_match_jax(compiled, trained_gru, test_clip):
  report = json.loads((compiled("vulkan") / iree_compile.COMPILE_FILE).read_text())
  assert report["variant"] == "dft"  # IREE's FFT is not used on Vulkan.
  runner = iree_runner.IreeStep(compiled("vulkan"))
  _, ref_state, ref_outputs = jax_reference(trained_gru, test_clip, spectrum="dft")
  state, outputs = runner.run(test_clip)
  assert_close(state, outputs, ref_state, ref_outputs, 1e-4)


@pytest.mark.parametrize("target", BARE_METAL)
def test_bare_metal_static_library(compiled, target):
  out = compiled(target)
  meta = export.load_meta(out)
  for name in (iree_compile.STATIC_OBJECT_FILE, iree_compile.STATIC_HEADER_FILE,
               iree_compile.EMITC_FILE, iree_compile.IO_HEADER_FILE):
    assert (out / name).stat().st_size > 0, name
  assert iree_compile.LIBRARY_QUERY_SYMBOL in (out / iree_compile.STATIC_HEADER_FILE).read_text()
  emitc = (out / iree_compile.EMITC_FILE).read_text()
  assert f"iree_status_t {iree_compile.EMITC_CREATE_SYMBOL}(" in emitc
  io_header = (out / iree_compile.IO_HEADER_FILE).read_text()
  assert f"#define KWS_HOP_SIZE {meta['hop_size']}" in io_header
  assert io_header.count("_init[") == len(meta["state"])
  sizes = json.loads((out / iree_compile.SIZE_REPORT_FILE).read_text())
  target_info = iree_compile.load_target(target)
  assert sizes["machine"] == target_info["elf_machine"]
  assert sizes["exported"] == [iree_compile.LIBRARY_QUERY_SYMBOL]
  assert sizes["code_bytes"] > 1000 and sizes["rodata_bytes"] > 0
  # The constant pool holds at least the model's float weights.
  assert sizes["weights_bytes"] >= meta["weight_bytes"]
  assert sizes["total_flash_bytes"] == (sizes["code_bytes"] + sizes["rodata_bytes"]
                                        + sizes["weights_bytes"])
  for symbol in sizes["undefined"]:
    assert symbol.startswith(("iree_", "__")) or symbol in LIBM, symbol
  print(f"{target}: code {sizes['code_bytes']} B, rodata {sizes['rodata_bytes']} B, "
        f"weights {sizes['weights_bytes']} B, undefined {sizes['undefined']}")


@pytest.mark.parametrize("target", BARE_METAL)
def test_bare_metal_object_with_cross_binutils(compiled, target):
  """The cross toolchain's own tools read the object as built for the right core."""
  prefix = iree_compile.load_target(target)["binutils_prefix"]
  nm, readelf = binutils(prefix, "nm"), binutils(prefix, "readelf")
  if not (nm and readelf):
    pytest.skip(f"{prefix}nm/readelf not installed (Debian binutils-arm-none-eabi, "
                "binutils-riscv64-unknown-elf)")
  obj = compiled(target) / iree_compile.STATIC_OBJECT_FILE
  symbols = subprocess.run([nm, str(obj)], capture_output=True, text=True, check=True).stdout
  defined = {line.split()[-1] for line in symbols.splitlines() if re.match(r"^[0-9a-f]+ T ", line)}
  undefined = {line.split()[-1] for line in symbols.splitlines() if line.strip().startswith("U ")}
  assert iree_compile.LIBRARY_QUERY_SYMBOL in defined
  sizes = json.loads((compiled(target) / iree_compile.SIZE_REPORT_FILE).read_text())
  assert undefined == set(sizes["undefined"])
  attributes = subprocess.run([readelf, "-h", "-A", str(obj)], capture_output=True, text=True,
                              check=True).stdout
  expected = {"cortex-m4": ["Tag_CPU_name: \"cortex-m4\"", "Tag_ABI_HardFP_use: SP only",
                            "Tag_ABI_VFP_args: VFP registers"],
              "cortex-m55": ["Tag_CPU_name: \"cortex-m55\"", "Tag_MVE_arch: MVE Integer and FP",
                             "Tag_ABI_VFP_args: VFP registers"],
              "riscv32": ["ELF32", "single-float ABI"]}[target]
  for text in expected:
    assert text in attributes, text


def test_missing_target_is_a_clear_error(toy_export, tmp_path):
  with pytest.raises(ExportError, match=r"unknown target 'cortex-m99'; known targets: .*cortex-m4"):
    iree_compile.compile_export(toy_export, "cortex-m99", tmp_path / "out")


def test_cli_errors_are_one_line(toy_export, tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    errors.run_cli(iree_compile.main, [str(toy_export), "--target", "nope", "--out", str(tmp_path)])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: unknown target 'nope'") and "\n" not in err
  with pytest.raises(SystemExit) as exit_info:
    errors.run_cli(iree_compile.main, [str(tmp_path / "missing"), "--target", "host-cpu",
                                      "--out", str(tmp_path / "o")])
  assert exit_info.value.code == 2
  assert "not a kws_jax export dir" in capsys.readouterr().err


def test_compiled_dir_from_another_version_is_refused(compiled, tmp_path):
  copy = tmp_path / "old"
  shutil.copytree(compiled("host-cpu"), copy)
  meta = json.loads((copy / export.META_FILE).read_text())
  meta["kws_jax_version"], meta["format_version"] = "0.0.1", 0
  (copy / export.META_FILE).write_text(json.dumps(meta))
  with pytest.raises(ExportError, match=r"exported by kws_jax 0\.0\.1 .*export it again"):
    iree_runner.IreeStep(copy)


def test_replaced_vmfb_is_refused(compiled, tmp_path):
  copy = tmp_path / "swapped"
  shutil.copytree(compiled("host-cpu"), copy)
  shutil.copyfile(compiled("vulkan") / iree_compile.VMFB_FILE, copy / iree_compile.VMFB_FILE)
  with pytest.raises(ExportError, match="does not match compile.json"):
    iree_runner.IreeStep(copy)


def test_vmfb_with_another_signature_is_refused(compiled, tmp_path):
  """A vmfb whose hashes were re-recorded but that takes other inputs still fails clearly.

  The 30-hop chunk module stands in: its `main` takes (30, hop) samples, not (hop,).
  """
  copy = tmp_path / "forged"
  shutil.copytree(compiled("host-cpu"), copy)
  shutil.copyfile(copy / iree_compile.CHUNK_VMFB_FILE, copy / iree_compile.VMFB_FILE)
  report = json.loads((copy / iree_compile.COMPILE_FILE).read_text())
  report["files"][iree_compile.VMFB_FILE]["sha256"] = iree_compile._sha256(copy / iree_compile.VMFB_FILE)
  (copy / iree_compile.COMPILE_FILE).write_text(json.dumps(report))
  with pytest.raises(ExportError, match="does not match its meta.json"):
    iree_runner.IreeStep(copy)


@pytest.mark.without_tensorflow
def test_vulkan_module_on_cpu_device_is_refused(compiled):
  with pytest.raises(ExportError, match="cannot run on device 'local-sync'"):
    iree_runner.IreeStep(compiled("vulkan"), device="local-sync")


def test_bare_metal_dir_cannot_run_on_host(compiled):
  with pytest.raises(ExportError, match="bare-metal target"):
    iree_runner.IreeStep(compiled("cortex-m4"))


def test_io_header_compiles_as_c(compiled, tmp_path):
  """kws_step_io.h is valid C whose arrays match meta.json (host compiler, no IREE headers)."""
  import shutil as sh
  cc = sh.which("cc") or sh.which("gcc")
  if cc is None:
    pytest.skip("no C compiler")
  out = compiled("cortex-m4")
  meta = export.load_meta(out)
  checks = "\n".join(
      f"_Static_assert(sizeof(kws_state{i}_init) / sizeof(kws_state{i}_init[0]) == "
      f"{max(int(np.prod(s['shape'])), 1)}, \"state {i}\");\n"
      f"_Static_assert(KWS_STATE{i}_RANK == {len(s['shape'])}, \"rank {i}\");"
      for i, s in enumerate(meta["state"]))
  source = tmp_path / "check.c"
  source.write_text(
      "#define IREE_HAL_ELEMENT_TYPE_FLOAT_32 1\n#define IREE_HAL_ELEMENT_TYPE_SINT_32 2\n"
      '#include "kws_step_io.h"\n' + checks + "\n"
      "#define COUNT(i) + 1\n"
      "int main(void) { return (0 KWS_FOR_EACH_STATE(COUNT)) == KWS_NUM_STATE && "
      "KWS_SCORES_OUTPUT == 1 ? 0 : 1; }\n")
  binary = tmp_path / "check"
  subprocess.run([cc, "-std=c11", "-Wall", "-Werror", "-Wno-unused-const-variable",
                  f"-I{out}", str(source), "-o", str(binary)], check=True, capture_output=True)
  assert subprocess.run([str(binary)]).returncode == 0


@pytest.fixture(scope="session")
def quickstart_export(tmp_path_factory, repo_root):
  """experiments/quickstart_dscnn.py with random weights, exported (skips while it is absent)."""
  import types

  import jax.random

  path = repo_root / "experiments" / "quickstart_dscnn.py"
  if not path.is_file():
    pytest.skip("experiments/quickstart_dscnn.py not present")
  config = config_loader.load_experiment(path)
  words = config.data.wanted_words
  words = words.split(",") if isinstance(words, str) else list(words)
  labels = ["_silence_", "_unknown_", *[w.strip() for w in words]]
  clip_samples = int(config.data.sample_rate * config.data.clip_duration_ms / 1000)
  frontend_params, model, frames, features = builder.build(config, len(labels), clip_samples)
  variables = builder.init_variables(model, frames, features, jax.random.key(0))
  bundle = types.SimpleNamespace(config=config, label_names=labels, frontend=frontend_params,
                                 model=model, variables=variables)
  out = tmp_path_factory.mktemp("quickstart_export")
  export.export_trained(bundle, out)
  return out


@pytest.mark.parametrize("target", BARE_METAL)
def test_quickstart_compiles_for_bare_metal(quickstart_export, tmp_path, target):
  report = iree_compile.compile_export(quickstart_export, target, tmp_path / target)
  sizes = report["sizes"]
  assert sizes["exported"] == [iree_compile.LIBRARY_QUERY_SYMBOL]
  for symbol in sizes["undefined"]:
    assert symbol.startswith(("iree_", "__")) or symbol in LIBM, symbol
  print(f"quickstart {target}: code {sizes['code_bytes']} B, rodata {sizes['rodata_bytes']} B, "
        f"weights {sizes['weights_bytes']} B")


def test_stream_evaluator_gets_the_same_posteriors_from_iree_and_jax(compiled, trained_gru,
                                                                     test_clip):
  """kws_jax.stream's runner over 1.5 s with a reset: chunk calls, single hops and resets."""
  audio = np.concatenate([test_clip, test_clip[:8000]])
  step = streaming.make_step(trained_gru, vad=False, smoothing=False)
  jax_runner = runners.StreamRunner(step, step.label_names, step.hop_size, step.sample_rate)
  iree = runners.iree_runner(str(compiled("host-cpu")), "never")
  assert iree.step.chunk_hops == 30
  reset_hops = [65]  # segments of 65 and 85 hops: both end in a partial chunk
  want = jax_runner.posteriors(audio, reset_hops)
  got = iree.posteriors(audio, reset_hops)
  assert got.scores.shape == want.scores.shape == (150, len(trained_gru.label_names))
  np.testing.assert_allclose(got.scores, want.scores, atol=1e-5, rtol=0)


def test_vad_and_smoothing_step_on_host_cpu_matches_jax(tmp_path, test_clip):
  """Scalar states (VAD tracker, silent-hop counter, smoothing) go in and out of IREE intact:
  chunk calls, single numpy-state steps and iree-run-module all track the JAX step."""
  from export_helpers import tiny_trained
  trained = tiny_trained("tf_speech_commands", "gru", vad={"reset_delay_ms": 50.0},
                         smoothing={}, hidden_size=8, num_layers=1)
  export.export_trained(trained, tmp_path / "export", chunk_hops=20)
  iree_compile.compile_export(tmp_path / "export", "host-cpu", tmp_path / "cpu")
  silence = np.zeros(3200, np.float32)
  clip = np.concatenate([silence, test_clip[:8000], silence])  # 0.9 s = 90 hops
  step, ref_state, ref_outputs = jax_reference(trained, clip)
  assert {"vad_active", "smoothed.scores"} <= set(ref_outputs)
  assert ref_outputs["vad_active"].any() and not ref_outputs["vad_active"].all()
  runner = iree_runner.IreeStep(tmp_path / "cpu")
  state, outputs = runner.run(clip)
  assert_close(state, outputs, ref_state, ref_outputs, 1e-5)
  # Numpy state in and out (the scalars must keep shape ()), then the command line tool.
  hops = clip.reshape(-1, step.hop_size)
  n = hops.shape[0]
  state, _ = runner.run(clip[:(n - 4) * step.hop_size])
  for chunk in hops[n - 4:n - 2]:
    state, _ = runner.step(state, chunk)
  state, tool_out = iree_runner.run_module_tool(tmp_path / "cpu", state, hops[n - 2])
  state, last = runner.step(state, hops[n - 1])
  assert all(s.shape == r.shape for s, r in zip(state, ref_state))
  assert_close(state, {k: v[None] for k, v in last.items()}, ref_state,
               {k: v[-1:] for k, v in ref_outputs.items()}, 1e-5)
  np.testing.assert_allclose(tool_out["scores"], ref_outputs["scores"][n - 2], atol=1e-5, rtol=0)
