"""The streaming step equals its parts run as batch ops: featurize -> model steps (-> VAD, smoothing)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from export_helpers import tiny_trained

from kws_jax.deploy import streaming_step as streaming
from kws_jax.ops import frontend, smoothing, vad


def reference_frames(trained, clip):
  """Batch featurizer on the clip with the (window - hop) zeros the stream starts from."""
  cfg = trained.frontend.cfg
  padded = np.concatenate([np.zeros(cfg.window_size - cfg.hop_size, np.float32), clip])
  return np.asarray(frontend.featurize(trained.frontend, padded))


def reference_model(trained, frames, active=None, reset_after_hops=1):
  """Model steps over frames; the state goes back to initial after hop t when `active`
  was 1 at t - reset_after_hops and 0 at every hop since (1: where it falls 1 -> 0)."""
  model, variables = trained.model, trained.variables
  initial = model.apply(variables, 1, method="initial_state")
  step = jax.jit(lambda s, f: model.apply(variables, s, f, method="step"))
  state, logits = initial, []
  for t, frame in enumerate(frames):
    state, out = step(state, jnp.asarray(frame)[None])
    logits.append(np.asarray(out[0]))
    d = reset_after_hops
    if active is not None and t >= d and active[t - d] and not active[t - d + 1:t + 1].any():
      keys = getattr(model, "reset_state_keys", tuple(state))  # RNNs: h and c only
      state = {k: initial[k] if k in keys else v for k, v in state.items()}
  return state, np.stack(logits)


@pytest.mark.parametrize("preset,model,hparams", [
    ("tf_speech_commands", "gru", {"hidden_size": 16, "num_layers": 2}),
    ("ell", "gru", {"hidden_size": 16, "num_layers": 1}),
    ("tf_speech_commands", "dscnn", {}),
])
def test_step_equals_featurize_then_model_steps(preset, model, hparams, test_clip):
  trained = tiny_trained(preset, model, **hparams)
  step = streaming.make_step(trained)
  hops = test_clip.size // step.hop_size
  clip = test_clip[:hops * step.hop_size]
  state, outputs = step.run(clip)
  frames = reference_frames(trained, clip)
  assert frames.shape[0] == hops
  ref_state, ref_logits = reference_model(trained, frames)
  np.testing.assert_allclose(np.asarray(outputs["logits"]), ref_logits, atol=2e-5, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(outputs["scores"]),
                             np.asarray(jax.nn.softmax(ref_logits, axis=-1)), atol=2e-6)
  for got, want in zip(jax.tree.leaves(state["model"]), jax.tree.leaves(ref_state)):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=2e-5, rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(state["frontend"]["buffer"]),
                                clip[-trained.frontend.cfg.window_size:])


@pytest.mark.parametrize("reset_delay_ms,reset_after_hops", [(0.0, 1), (120.0, 13)])
def test_vad_resets_recurrent_state_when_the_voice_ends(test_clip, reset_delay_ms,
                                                        reset_after_hops):
  """ELL's add_vad: where the VAD falls from voice to none (or has stayed off for
  `reset_delay_ms` since), the next hop starts from the initial state."""
  trained = tiny_trained("tf_speech_commands", "gru", vad={}, hidden_size=16, num_layers=1)
  step = streaming.make_step(trained, vad_options={"reset_delay_ms": reset_delay_ms})
  assert step.info["vad_reset_delay_ms"] == reset_delay_ms
  assert "vad" in step.initial_state()
  silence = np.zeros(8000, np.float32)
  clip = np.concatenate([silence, test_clip, silence])
  _, outputs = step.run(clip)
  frames = reference_frames(trained, clip)
  vad_params = vad.params_for_frontend(trained.frontend.cfg)
  active = np.asarray(vad.detect(vad_params, jnp.asarray(frames)))
  np.testing.assert_array_equal(np.asarray(outputs["vad_active"]), active)
  assert active.any() and not active.all(), "the clip should have both speech and silence"
  _, ref_logits = reference_model(trained, frames, active, reset_after_hops)
  np.testing.assert_allclose(np.asarray(outputs["logits"]), ref_logits, atol=2e-5, rtol=1e-5)
  # The reset happens where the delay says, not one hop earlier or later.
  for other in (reset_after_hops - 1, reset_after_hops + 1):
    if other >= 1:
      _, other_logits = reference_model(trained, frames, active, other)
      assert np.abs(other_logits - ref_logits).max() > 1e-4
  # Without the reset the logits differ once speech has ended (the state remembers it).
  _, plain_logits = reference_model(trained, frames)
  assert np.abs(plain_logits - ref_logits).max() > 1e-4


def test_smoothing_outputs_equal_batch_smoothing(test_clip):
  trained = tiny_trained("tf_speech_commands", "gru", smoothing={"average_window_ms": 500.0},
                         hidden_size=16, num_layers=1)
  step = streaming.make_step(trained)
  _, outputs = step.run(test_clip)
  params = smoothing.make_params(len(trained.label_names), 10.0, average_window_ms=500.0)
  _, ref = smoothing.smooth(params, jnp.asarray(outputs["scores"]))
  np.testing.assert_allclose(np.asarray(outputs["smoothed.scores"]), np.asarray(ref.scores),
                             atol=1e-6)
  np.testing.assert_array_equal(np.asarray(outputs["smoothed.label"]), np.asarray(ref.label))
  np.testing.assert_array_equal(np.asarray(outputs["smoothed.is_new_command"]),
                                np.asarray(ref.is_new_command).astype(np.int32))
  assert outputs["smoothed.is_new_command"].dtype == jnp.int32


def test_vad_and_smoothing_can_be_switched_off(trained_gru):
  step = streaming.make_step(trained_gru, vad=False, smoothing=False)
  assert set(step.initial_state()) == {"frontend", "model"}
  on = streaming.make_step(trained_gru, vad=True, smoothing=True)
  assert set(on.initial_state()) == {"frontend", "model", "vad", "vad_silent_hops", "smoothing"}
  _, outputs = jax.eval_shape(on.apply, on.params, on.initial_state(),
                              jax.ShapeDtypeStruct((on.hop_size,), jnp.float32))
  assert {"logits", "scores", "vad_active", "smoothed.label"} <= set(outputs)


def test_run_rejects_partial_hops(trained_gru):
  from kws_jax.errors import ExportError
  step = streaming.make_step(trained_gru)
  with pytest.raises(ExportError, match="multiple of the hop size 160"):
    step.run(np.zeros(1000, np.float32))
