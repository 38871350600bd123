"""StableHLO export: flat signature, meta.json, module checks, version and FFT errors."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from export_helpers import TOY_HOP, make_toy_step

import kws_jax
from kws_jax.deploy import stablehlo_export as export
from kws_jax.deploy import streaming_step as streaming
from kws_jax.errors import ConfigError, ExportError


def test_meta_describes_the_flat_signature(toy_export, trained_gru):
  meta = export.load_meta(toy_export)
  step = streaming.make_step(trained_gru)
  state0 = step.initial_state()
  leaves = jax.tree_util.tree_flatten_with_path(state0)[0]
  assert meta["kws_jax_version"] == kws_jax.__version__
  assert meta["format_version"] == export.EXPORT_FORMAT_VERSION
  assert (meta["sample_rate"], meta["hop_size"]) == (16000, 160)
  assert meta["labels"] == trained_gru.label_names
  assert meta["inputs"][0] == {"name": "samples", "shape": [160], "dtype": "float32"}
  names = [s["name"] for s in meta["state"]]
  assert names == ["state.frontend.buffer", "state.model.h", "state.model.log_probs"]
  assert [s["shape"] for s in meta["state"]] == [list(np.shape(v)) for _, v in leaves]
  assert meta["inputs"][1:] == meta["state"] == meta["outputs"][2:]
  assert [o["name"] for o in meta["outputs"][:2]] == ["logits", "scores"]
  assert meta["outputs"][0]["shape"] == [len(trained_gru.label_names)]
  assert meta["frontend"]["preset"] == "tf_speech_commands"
  assert meta["frontend"]["hop_size"] == 160 and meta["vad"] is None
  assert meta["model"]["name"] == "gru"
  assert meta["default_variant"] == trained_gru.frontend.cfg.spectrum
  assert set(meta["modules"]) == {"dft", "rfft"}
  initial = export.load_initial_state(toy_export)
  for got, (_, want) in zip(initial, leaves):
    np.testing.assert_array_equal(got, np.asarray(want))


def test_module_text_is_straight_line_stablehlo(toy_export):
  meta = export.load_meta(toy_export)
  for variant, module in meta["modules"].items():
    text = (toy_export / module["text"]).read_text()
    assert "stablehlo.while" not in text and "custom_call" not in text, variant
    assert f"func.func public @{export.FUNCTION_NAME}(" in text
    assert f"module @{export.MODULE_NAME}" in text
    assert ("stablehlo.fft" in text) == (variant == "rfft"), variant
    assert module["ops"]["stablehlo.dot_general"] >= 4  # DFT/mel/DCT + GRU products.
    assert (toy_export / module["bytecode"]).read_bytes()[:4] == b"ML\xefR"  # MLIR bytecode


def test_chunk_module_scans_the_step_for_host_runtimes(toy_export):
  """The host-only chunk function loops over hops (one while), with stacked outputs."""
  meta = export.load_meta(toy_export)
  chunk = meta["chunk"]
  assert chunk["hops"] == 30 and list(chunk["modules"]) == [meta["default_variant"]]
  text = (toy_export / chunk["modules"][meta["default_variant"]]["text"]).read_text()
  assert "stablehlo.while" in text and "custom_call" not in text
  assert f"module @{export.CHUNK_MODULE_NAME}" in text
  assert f"tensor<30x{meta['hop_size']}xf32>" in text
  assert f"tensor<30x{len(meta['labels'])}xf32>" in text  # scores of every hop
  export.check_module_text(text, allow_loops=True)
  with pytest.raises(ExportError, match="stablehlo.while"):
    export.check_module_text(text)


@pytest.mark.parametrize("unroll", [False, True])
def test_chunk_function_equals_the_scanned_step(tmp_path, unroll):
  step = make_toy_step("dft")
  audio = np.random.default_rng(0).normal(0, 0.1, 5 * TOY_HOP).astype(np.float32)
  ref_state, ref_out = step.run(audio)
  chunk = jax.jit(export.chunk_function(step, 5, unroll))
  results = chunk(audio.reshape(5, TOY_HOP), *jax.tree.leaves(step.initial_state()))
  names = sorted(ref_out)
  for name, got in zip(names, results[:len(names)]):
    np.testing.assert_allclose(got, ref_out[name], atol=1e-6, rtol=0, err_msg=name)
  for got, want in zip(results[len(names):], jax.tree.leaves(ref_state)):
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
  meta = export.export_step(step, tmp_path, default_variant="dft", chunk_hops=5,
                            chunk_unroll=unroll)
  text = (tmp_path / meta["chunk"]["modules"]["dft"]["text"]).read_text()
  assert ("stablehlo.while" in text) == (not unroll) and meta["chunk"]["unrolled"] == unroll


def test_check_module_text_rejects_loops_custom_calls_and_odd_ffts():
  with pytest.raises(ExportError, match="stablehlo.while.*lax.scan"):
    export.check_module_text("%0 = stablehlo.while(%a) : tensor<f32>")
  with pytest.raises(ExportError, match="custom_call"):
    export.check_module_text('%0 = stablehlo.custom_call @lapack_sgesdd(%a)')
  assert export.fft_lengths("%1 = stablehlo.fft %0, type =  RFFT, length = [512] : ") == [512]
  assert export.fft_lengths('"stablehlo.fft"(%2) <{fft_length = array<i64: 400>, ') == [400]
  with pytest.raises(ExportError, match="length 400, not a power of two"):
    export.check_module_text("%1 = stablehlo.fft %0, type =  RFFT, length = [400] : ")


def test_non_power_of_two_fft_is_a_clear_error(tmp_path):
  """IREE cannot compile a 400-point FFT: the export says so and what to do instead."""
  with pytest.raises(ExportError, match=r"FFT of length 400, not a power of two.*512.*dft"):
    export.export_step(make_toy_step("rfft", n_fft=400), tmp_path / "odd")
  # The same length as a DFT matmul exports fine.
  meta = export.export_step(make_toy_step("dft", n_fft=400), tmp_path / "dft", default_variant="dft")
  assert meta["hop_size"] == TOY_HOP
  # The featurizer itself refuses the rfft spectrum with a non-power-of-two n_fft.
  from kws_jax.ops import frontend
  with pytest.raises(ConfigError, match="power-of-two"):
    frontend.get_config("tf_speech_commands", n_fft=640, spectrum="rfft")


def test_export_dir_from_another_version_is_refused(toy_export, tmp_path):
  meta = json.loads((toy_export / export.META_FILE).read_text())
  meta["kws_jax_version"] = "9.3.0"
  (tmp_path / export.META_FILE).write_text(json.dumps(meta))
  with pytest.raises(ExportError, match=r"exported by kws_jax 9\.3\.0.*this is kws_jax"):
    export.load_meta(tmp_path)
  meta["kws_jax_version"], meta["format_version"] = kws_jax.__version__, 99
  (tmp_path / export.META_FILE).write_text(json.dumps(meta))
  with pytest.raises(ExportError, match="format 99"):
    export.load_meta(tmp_path)
  (tmp_path / export.META_FILE).write_text("{not json")
  with pytest.raises(ExportError, match="unreadable"):
    export.load_meta(tmp_path)
  with pytest.raises(ExportError, match="not a kws_jax export dir"):
    export.load_meta(tmp_path / "nothing")


def test_variants_compute_the_same_step(trained_gru, test_clip):
  """The rfft and dft featurizers give the same scores up to float rounding."""
  dft = streaming.make_step(trained_gru, spectrum="dft")
  rfft = streaming.make_step(trained_gru, spectrum="rfft")
  _, a = dft.run(test_clip)
  _, b = rfft.run(test_clip)
  np.testing.assert_allclose(np.asarray(a["scores"]), np.asarray(b["scores"]), atol=1e-4)


def test_export_cli_refuses_to_overwrite(tmp_path, capsys):
  from kws_jax import errors
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / "x").write_text("keep")
  with pytest.raises(SystemExit) as exit_info:
    errors.run_cli(export.main, ["--workdir", str(tmp_path), "--out", str(tmp_path / "out")])
  assert exit_info.value.code == 2
  assert "exists and is not empty; pass --force" in capsys.readouterr().err
