"""dscnn_streaming exported: the IREE host module (scanned chunk) and the Cortex-M4 firmware
under QEMU give the JAX step's scores (`-m slow`: the Cortex-M55 and RISC-V firmware too).

The step holds caches of each layer's last input columns and computes a column every
second hop under a lax.cond; the scanned chunk function is where IREE 3.13 once
miscompiled such a cond (see speech_embedding.SpeechEmbeddingKws.step).
"""

from __future__ import annotations

import numpy as np
import pytest
from export_helpers import tiny_trained
from test_firmware import _missing_tools
from test_iree import assert_close, jax_reference

from kws_jax.deploy import firmware, firmware_runner, iree_compile, iree_runner
from kws_jax.deploy import stablehlo_export as export


@pytest.fixture(scope="module")
def streaming_export(tmp_path_factory):
  # MLPerf Tiny's 49 x 10 MFCC (20 ms hop); a narrow 2-block network.
  trained = tiny_trained("tf_speech_commands", "dscnn_streaming",
                         features={"hop_size": 320, "num_mfcc": 10}, filters=8, num_blocks=2)
  out = tmp_path_factory.mktemp("dscnn_streaming") / "export"
  export.export_trained(trained, out, chunk_hops=8)
  return trained, out


def test_host_cpu_chunk_matches_jax(streaming_export, test_clip, tmp_path):
  trained, out = streaming_export
  iree_compile.compile_export(out, "host-cpu", tmp_path / "host-cpu")
  runner = iree_runner.IreeStep(tmp_path / "host-cpu")
  assert runner.chunk_hops == 8
  _, ref_state, ref_outputs = jax_reference(trained, test_clip)
  state, outputs = runner.run(test_clip)
  assert_close(state, outputs, ref_state, ref_outputs, 1e-4)
  assert np.ptp(outputs["scores"], axis=0).max() > 1e-3


@pytest.mark.parametrize("target", ["cortex-m4", pytest.param("cortex-m55", marks=pytest.mark.slow),
                                    pytest.param("riscv32", marks=pytest.mark.slow)])
def test_firmware_matches_jax(streaming_export, test_clip, tmp_path, target):
  reason = _missing_tools(target)
  if reason:
    pytest.skip(reason)
  trained, out = streaming_export
  fw_dir = tmp_path / target
  iree_compile.compile_export(out, target, fw_dir)
  firmware.build_firmware(fw_dir, target)
  step = firmware_runner.FirmwareStep(fw_dir)
  try:
    _, ref_state, ref_outputs = jax_reference(trained, test_clip)
    state, outputs = step.run(test_clip)
  finally:
    step.close()
  assert_close(state, outputs, ref_state, ref_outputs, 1e-4)
