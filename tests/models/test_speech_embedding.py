"""Google's speech embedding in Flax against embedding_model.onnx (onnxruntime), and the
keyword model's streaming step against its full window.

Tolerance: 1e-3 absolute on embeddings of magnitude up to ~50 (3e-5 measured: float32
convolutions summed in a different order).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from onnx_reference import onnx_features, session  # skips without onnxruntime

from kws_jax import audio as kaudio
from kws_jax import models
from kws_jax.models import onnx_import, speech_embedding
from kws_jax.ops import frontend

TOL = 1e-3


@pytest.fixture(scope="module")
def sessions():
  return {name: session(name) for name in (onnx_import.MELSPECTROGRAM_FILE,
                                           onnx_import.EMBEDDING_FILE)}


@pytest.fixture(scope="module")
def network():
  net = speech_embedding.SpeechEmbedding()
  variables = net.init(jax.random.key(0), jnp.zeros((1, 76, 32)))
  return jax.jit(net.apply), variables


def onnx_embeddings(sessions, clip: np.ndarray) -> np.ndarray:
  """openWakeWord's way: features of the clip, then one 76-frame window every 8 frames."""
  feats = onnx_features(sessions[onnx_import.MELSPECTROGRAM_FILE], clip)
  windows = np.stack([feats[i:i + 76] for i in range(0, len(feats) - 75, 8)])
  out = sessions[onnx_import.EMBEDDING_FILE].run(None, {"input_1": windows[..., None]})[0]
  return feats, out[:, 0, 0]


def test_graph_structure_is_the_one_the_flax_network_runs():
  ops = [op for op in onnx_import.embedding_graph_ops() if op not in ("Reshape", "LeakyRelu",
                                                                      "Max")]
  expected = ["Conv" if layer[0] == "conv" else "MaxPool" for layer in speech_embedding.LAYERS]
  assert ops == expected
  convs = onnx_import.embedding_convolutions()
  assert [c.kernel.shape[:2] for c in convs] == [
      layer[2] for layer in speech_embedding.LAYERS if layer[0] == "conv"]
  # The file's 328,137 stored numbers less its two reshape shapes (4 each) and the -0.4.
  assert sum(c.kernel.size + (c.bias.size if c.bias is not None else 0) for c in convs) == 328128


def test_embedding_matches_onnx_on_synthetic_speechlike_audio(sessions, network):
  apply, variables = network
  rng = np.random.default_rng(1)
  t = np.arange(24000) / 16000
  clip = (0.2 * np.sin(2 * np.pi * (150 + 80 * np.sin(6 * t)) * t) * (1 + np.sin(9 * t))
          + 0.02 * rng.standard_normal(t.shape)).astype(np.float32)
  feats, ref = onnx_embeddings(sessions, clip)
  # One pass over the whole sequence gives every sliding window's embedding.
  ours = np.asarray(apply(variables, feats[None].astype(np.float32)))[0]
  assert ours.shape == ref.shape == (9, 96)
  assert np.abs(ref).max() > 1.0
  np.testing.assert_allclose(ours, ref, atol=TOL, rtol=0)


@pytest.mark.shared_data
def test_embedding_of_real_clips_matches_onnx_end_to_end(shared_data, sessions, network):
  apply, variables = network
  params = frontend.make_params(frontend.get_config("speech_embedding", top_db_mode="clip"))
  for path in sorted((shared_data / "sc_v2_test12_dev").glob("*/*.wav"))[::900][:4]:
    clip = kaudio.read_audio(str(path), 16000)
    clip = np.pad(clip, (4000, 4000))
    _, ref = onnx_embeddings(sessions, clip)
    ours = np.asarray(apply(variables, frontend.featurize(params, clip)[None]))[0]
    np.testing.assert_allclose(ours, ref, atol=TOL, rtol=0)


def test_streaming_embedding_equals_the_window_network_after_76_frames(network):
  """8 frames at a time through the cache = the 76-frame windows of the batch network."""
  apply, variables = network
  frames = jax.random.normal(jax.random.key(5), (2, 8 * 14, 32)) * 2 + 4
  cache = speech_embedding.initial_cache(2)
  stream = jax.jit(lambda x, c: apply(variables, x, c))
  streamed = []
  for start in range(0, frames.shape[1], 8):
    out, cache = stream(frames[:, start:start + 8], cache)
    streamed.append(np.asarray(out[:, 0]))
  # Chunk j ends at frame 8 j + 8; the window ending there starts at 8 j - 68, so the
  # windows of frames[:, 4:] (starting at 4, 12, ...) are those of chunks 9, 10, ...
  window = np.asarray(apply(variables, frames[:, 4:]))
  assert window.shape[1] == len(streamed) - 9
  for k in range(window.shape[1]):
    np.testing.assert_allclose(streamed[9 + k], window[:, k], atol=1e-4, rtol=1e-5)
  # Chunk 8's window would start at frame -4: warm-up, from a zero cache rather than
  # zero frames (the old step's ring), so it is neither (and the test can fail).
  padded = np.asarray(apply(variables, jnp.pad(frames[:, :72], ((0, 0), (4, 0), (0, 0)))))
  assert np.abs(streamed[8] - padded[:, 0]).max() > 1e-3   # 5e-3 measured
  # 16 frames at once give the same two embeddings as 8 and 8.
  two, _ = apply(variables, frames[:, :16], speech_embedding.initial_cache(2))
  first, cache = apply(variables, frames[:, :8], speech_embedding.initial_cache(2))
  second, _ = apply(variables, frames[:, 8:16], cache)
  np.testing.assert_allclose(np.asarray(two), np.concatenate([first, second], axis=1),
                             atol=1e-5)
  with pytest.raises(ValueError, match="multiple of 8 new frames"):
    apply(variables, frames[:, :12], speech_embedding.initial_cache(2))


@pytest.mark.parametrize("head", ["flatten", pytest.param("pool", marks=pytest.mark.slow)])
def test_scanning_step_equals_full_window(head):
  # 93 frames: two embeddings (ending at frames 85 and 93), phase 93 % 8 = 5.
  model = models.create("speech_embedding", num_classes=4, num_frames=93, num_features=32,
                        head=head)
  x = jax.random.normal(jax.random.key(2), (2, 93, 32)) * 2 + 4
  variables = model.init(jax.random.key(3), x)
  full = model.apply(variables, x, train=False)

  @jax.jit
  def scan(x):
    state = model.apply(variables, 2, method="initial_state")
    def body(s, frame):
      return model.apply(variables, s, frame, method="step")
    return jax.lax.scan(body, state, jnp.swapaxes(x, 0, 1))[1]
  logits = np.asarray(scan(x))
  np.testing.assert_allclose(logits[-1], np.asarray(full), atol=1e-4, rtol=1e-4)
  # One frame earlier the embeddings are not those of the window: the test can fail.
  assert np.abs(logits[-9] - np.asarray(full)).max() > 1e-3


def test_context_frames_pad_with_the_clip_floor_and_scanning_the_padded_stream_agrees():
  # 81 clip frames + 6 a side = a 93-frame window (3 embeddings).
  model = models.create("speech_embedding", num_classes=4, num_frames=81, num_features=32,
                        context_frames=6)
  assert (model.window_frames, model.used_embeddings) == (93, 3)
  x = jax.random.normal(jax.random.key(4), (2, 81, 32)) * 2 + 4
  variables = model.init(jax.random.key(3), x)
  full = np.asarray(model.apply(variables, x, train=False))
  floor = np.asarray(x).min(axis=(1, 2), keepdims=True)
  pad = np.broadcast_to(floor, (2, 6, 32))
  padded = np.concatenate([pad, np.asarray(x), pad], axis=1)
  bare = models.create("speech_embedding", num_classes=4, num_frames=93, num_features=32)
  np.testing.assert_allclose(np.asarray(bare.apply(variables, padded, train=False)), full,
                             atol=1e-5, rtol=1e-5)

  def body(s, frame):
    return model.apply(variables, s, frame, method="step")
  state = model.apply(variables, 2, method="initial_state")
  logits = np.asarray(jax.jit(lambda p: jax.lax.scan(body, state, jnp.swapaxes(p, 0, 1))[1])(
      padded))
  np.testing.assert_allclose(logits[-1], full, atol=1e-4, rtol=1e-4)
  with pytest.raises(ValueError, match="context_frames=-1"):
    models.create("speech_embedding", num_classes=4, num_frames=81, num_features=32,
                  context_frames=-1).init(jax.random.key(0), x)


@pytest.mark.slow  # op-by-op gradients through 20 convolutions: ~90 s on 2 loaded cores
def test_init_loads_the_pretrained_network_and_freezing_stops_its_gradient():
  model = models.create("speech_embedding", num_classes=3, num_frames=76, num_features=32)
  x = jnp.ones((1, 76, 32))
  variables = model.init(jax.random.key(0), x)
  kernel = variables["params"]["embedding"]["conv_0"]["kernel"]
  np.testing.assert_array_equal(np.asarray(kernel), onnx_import.embedding_convolutions()[0].kernel)
  grads = jax.grad(lambda p: model.apply({"params": p}, x).sum())(variables["params"])
  assert not np.any(np.asarray(grads["embedding"]["conv_0"]["kernel"]))
  tuned = models.create("speech_embedding", num_classes=3, num_frames=76, num_features=32,
                        finetune=True)
  grads = jax.grad(lambda p: tuned.apply({"params": p}, x).sum())(variables["params"])
  assert np.any(np.asarray(grads["embedding"]["conv_0"]["kernel"]))


def test_too_short_window_is_a_one_line_error():
  model = models.create("speech_embedding", num_classes=3, num_frames=60, num_features=32)
  with pytest.raises(ValueError, match="holds 0 embeddings"):
    model.init(jax.random.key(0), jnp.ones((1, 60, 32)))


def test_macs_per_second_counts_one_streamed_embedding_every_8_hops():
  model = models.create("speech_embedding", num_classes=12, num_frames=97, num_features=32)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 97, 32)))
  per_second = models.macs_per_second(model, variables, 0.01)
  # 41,955,840 MACs per 76-frame window (the 42 M), a window every 8 hops of 10 ms.
  window = models.count_macs(
      lambda x: speech_embedding.SpeechEmbedding().apply(
          {"params": variables["params"]["embedding"]}, x), jnp.zeros((1, 76, 32)))
  assert window == 41_955_840
  # The step streams 8 new frames through the network (streaming_embedding_equals_...):
  # each convolution computes 8 / 4 / 2 / 1 new columns instead of the window's.
  streamed = models.count_macs(
      lambda x: speech_embedding.SpeechEmbedding().apply(
          {"params": variables["params"]["embedding"]}, x, speech_embedding.initial_cache(1)),
      jnp.zeros((1, 8, 32)))
  assert window / 8 < streamed < window / 5
  assert streamed // 8 * 100 < per_second < streamed // 8 * 100 * 1.05
  # Counting the cond's costly branch every step would be 8 times as much.
  assert models.step_macs(model, variables) > 7 * per_second / 100
