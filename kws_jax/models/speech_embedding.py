"""Google's speech embedding (Lin et al., ICASSP 2020) with a small keyword head.

`SpeechEmbedding` is the network of openWakeWord's `embedding_model.onnx`: 76 x 32
log-mel frames (the `speech_embedding` front-end preset, 775 ms) -> one 96-dim
embedding, through 20 convolutions (3x3, then alternating 1x3 / 3x1) with
LeakyReLU(0.2) followed by max(x, -0.4), and 5 max-pools. Every time axis operation is
'valid' with a total time stride of 8 (three 2x2 pools), so the network run over a
longer sequence of T frames gives exactly the embeddings of the windows starting at
frames 0, 8, 16, ...: openWakeWord's sliding window (one embedding every 80 ms) for
about (T - 76) / 76 + 1 windows' cost instead of one whole window per embedding.
Weights are imported from the ONNX file at init (`onnx_import`), so `model.init`
already returns the pretrained network; frozen unless `finetune=True` (then the
trainer's `train.embedding_learning_rate` applies to it).

`SpeechEmbeddingKws` (registered as `speech_embedding`): the last `num_embeddings`
embeddings of the window (openWakeWord's classifiers use 16 over 1.28 s; a 1.5 s clip
holds 9), then a head:
  flatten  LayerNorm per embedding -> concat -> Dense(hidden) -> ReLU -> dropout ->
           Dense(hidden) -> ReLU -> Dense(classes) (openWakeWord's DNN, position aware);
  pool     LayerNorm -> mean and max over the embeddings -> the same MLP (position free).
Streaming `step`: the last 8 frames, the streaming embedding's cache and a ring of
`num_embeddings` embeddings; on the steps where the full window would have an embedding
(every 8 frames, in phase with the window's end) a lax.cond streams the 8 frames through
the network (only the columns they add) and reruns the head; other steps return the held
logits. After
window_frames steps from `initial_state` (num_frames plus twice `context_frames`) it returns
the logits of the window with its context.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from kws_jax.models import onnx_import
from kws_jax.models.common import Array, check_frame, check_window, push_frame, update_when_due
from kws_jax.models.macs import count_macs

WINDOW_FRAMES = 76        # frames per embedding (775 ms of 10 ms hops)
EMBEDDING_HOP = 8         # frames between embeddings (the network's time stride)
EMBEDDING_DIM = 96
NUM_MELS = 32
# ("conv", out_channels, (kh, kw)) with ONNX's pads; ("pool", (ph, pw)).
LAYERS: tuple = (
    ("conv", 24, (3, 3)), ("conv", 24, (1, 3)), ("conv", 24, (3, 1)), ("pool", (2, 2)),
    ("conv", 48, (1, 3)), ("conv", 48, (3, 1)), ("conv", 48, (1, 3)), ("conv", 48, (3, 1)),
    ("pool", (1, 2)),
    ("conv", 72, (1, 3)), ("conv", 72, (3, 1)), ("conv", 72, (1, 3)), ("conv", 72, (3, 1)),
    ("pool", (2, 2)),
    ("conv", 96, (1, 3)), ("conv", 96, (3, 1)), ("conv", 96, (1, 3)), ("conv", 96, (3, 1)),
    ("pool", (1, 2)),
    ("conv", 96, (1, 3)), ("conv", 96, (3, 1)), ("conv", 96, (1, 3)), ("conv", 96, (3, 1)),
    ("pool", (2, 2)),
    ("conv", 96, (3, 1)),
)


def num_embeddings_in(num_frames: int) -> int:
  """Embeddings (one every 8 frames) whose 76-frame windows fit in num_frames."""
  return max(0, (num_frames - WINDOW_FRAMES) // EMBEDDING_HOP + 1)


def _pretrained(array: np.ndarray):
  def init(key, shape, dtype=jnp.float32):
    del key
    if tuple(shape) != array.shape:
      raise ValueError(f"pretrained array has shape {array.shape}, the layer wants {shape}")
    return jnp.asarray(array, dtype)
  return init


class _MatmulConv(nn.Module):
  """A convolution (padded by `pads`, then 'valid') as shifted slices and one matmul.

  Same parameters (`kernel` (kh, kw, in, out), `bias`) as nn.Conv. Why by hand: IREE's
  llvm-cpu code for these small-channel convolutions ran the 76-frame window in 25.6 ms
  per embedding (one thread), onnxruntime in 1.7 ms; as matmuls IREE takes 1.9 ms
  (data tiling) and XLA's CPU forward pass is ~10 % faster too (BENCHMARKS.md section 10).
  """

  features: int
  kernel_size: tuple[int, int]
  pads: tuple[int, int, int, int]   # ONNX order: top, left, bottom, right
  kernel_init: object
  bias_init: object = None          # None: no bias

  @nn.compact
  def __call__(self, y: Array) -> Array:
    kh, kw = self.kernel_size
    cin = y.shape[-1]
    kernel = self.param("kernel", self.kernel_init, (kh, kw, cin, self.features))
    top, left, bottom, right = self.pads
    y = jnp.pad(y, ((0, 0), (top, bottom), (left, right), (0, 0)))
    rows, cols = y.shape[1] - kh + 1, y.shape[2] - kw + 1
    patches = jnp.concatenate([y[:, a:a + rows, b:b + cols] for a in range(kh)
                               for b in range(kw)], axis=-1)   # (kh, kw, in) order = kernel's
    out = jnp.dot(patches, kernel.reshape(kh * kw * cin, self.features),
                  precision=jax.lax.Precision.HIGHEST)
    if self.bias_init is not None:
      out = out + self.param("bias", self.bias_init, (self.features,))
    return out


class SpeechEmbedding(nn.Module):
  """(B, T, 32) speech_embedding frames -> (B, (T - 76) // 8 + 1, 96) embeddings.

  With `cache` (streaming, kws_streaming's external-state mode): `frames` are the 8 new
  frames since the last embedding (8 k frames for k embeddings) and `cache` holds the last
  2 input columns of each time-3 convolution (`initial_cache`); returns (B, 1, 96) (or
  (B, k, 96)) and the new cache. Each layer
  then computes only the columns the 8 frames add (8, 4, 2, 1 at time strides 1, 2, 4, 8),
  exactly the window network's newest embedding once 76 frames have streamed in: ~7x fewer
  MACs than rerunning the 76-frame window (tests/models/test_speech_embedding.py).
  """

  @nn.compact
  def __call__(self, frames: Array, cache: tuple[Array, ...] | None = None):
    weights = onnx_import.embedding_convolutions()
    num_convs = sum(1 for layer in LAYERS if layer[0] == "conv")
    if len(weights) != num_convs:
      raise ValueError(f"{onnx_import.EMBEDDING_FILE} has {len(weights)} convolutions, "
                       f"the network {num_convs}")
    if cache is not None and (frames.shape[1] % EMBEDDING_HOP or not frames.shape[1]):
      raise ValueError(f"streaming SpeechEmbedding takes a multiple of {EMBEDDING_HOP} new "
                       f"frames (one embedding each), got {frames.shape[1]}")
    y = frames.astype(jnp.float32)[..., None]
    index, new_cache = 0, []
    for layer in LAYERS:
      if layer[0] == "pool":
        y = nn.max_pool(y, layer[1], strides=layer[1], padding="VALID")
        continue
      w = weights[index]
      if cache is not None and w.kernel.shape[0] > 1:
        # The time axis is 'valid' (pads top/bottom 0, checked by _cache_shapes): prepend
        # the columns this convolution saw last time.
        y = jnp.concatenate([cache[len(new_cache)], y], axis=1)
        new_cache.append(y[:, y.shape[1] - (w.kernel.shape[0] - 1):])
      y = _MatmulConv(layer[1], layer[2], w.pads, kernel_init=_pretrained(w.kernel),
                      bias_init=(_pretrained(w.bias) if w.bias is not None else None),
                      name=f"conv_{index}")(y)
      index += 1
      if index < num_convs:
        y = jnp.maximum(nn.leaky_relu(y, 0.2), -0.4)
    embeddings = y[:, :, 0, :]                             # (B, E, 96): frequency axis is 1
    return embeddings if cache is None else (embeddings, tuple(new_cache))


def _cache_shapes() -> list[tuple[int, int, int]]:
  """(columns, width, channels) of each time-3 convolution's streaming cache."""
  shapes, width, index = [], NUM_MELS, 0
  weights = onnx_import.embedding_convolutions()
  for layer in LAYERS:
    if layer[0] == "pool":
      width //= layer[1][1]
      continue
    w = weights[index]
    kh, kw, cin, _ = w.kernel.shape
    top, left, bottom, right = w.pads
    if top or bottom:
      raise ValueError(f"{onnx_import.EMBEDDING_FILE}: convolution {index} pads the time axis; "
                       "the streaming embedding assumes 'valid' time convolutions")
    if kh > 1:
      shapes.append((kh - 1, width, cin))
    width += left + right - kw + 1
    index += 1
  return shapes


def initial_cache(batch_size: int) -> tuple[Array, ...]:
  """Zero streaming cache: the first 76 streamed frames' embeddings are warm-up."""
  return tuple(jnp.zeros((batch_size, *shape), jnp.float32) for shape in _cache_shapes())


class SpeechEmbeddingKws(nn.Module):
  """Frozen speech embedding + head (see module docstring)."""

  num_classes: int
  num_frames: int
  num_features: int
  num_embeddings: int = 0     # 0: every embedding that fits in the window
  head: str = "flatten"       # "flatten" or "pool"
  hidden: int = 128
  dropout: float = 0.3
  finetune: bool = False      # train the embedding too (train.embedding_learning_rate)
  # Silence frames around each clip (25 = 250 ms a side): the windows then see the word
  # whole and at several positions. A linear probe on split sc12-fold2 went from 75 % (1 s
  # clips, 3 embeddings) to 89 % (0.25 s a side, 9 embeddings). A streaming step needs none:
  # its window is just this much longer and the stream supplies the context.
  context_frames: int = 0

  def setup(self):
    if self.num_features != NUM_MELS:
      raise ValueError(f"speech_embedding takes {NUM_MELS} mel bands (features.preset="
                       f"'speech_embedding'), got {self.num_features} features")
    if self.context_frames < 0:
      raise ValueError(f"speech_embedding: context_frames={self.context_frames} must be >= 0")
    fit = num_embeddings_in(self.window_frames)
    if fit < 1 or self.num_embeddings > fit:
      raise ValueError(f"speech_embedding: a window of {self.window_frames} frames holds {fit} "
                       f"embeddings (76 frames + 8 per further one); num_embeddings="
                       f"{self.num_embeddings} (lengthen data.clip_duration_ms)")
    if self.head not in ("flatten", "pool"):
      raise ValueError(f"speech_embedding head must be 'flatten' or 'pool', not {self.head!r}")
    self.embedding = SpeechEmbedding()
    self.norm = nn.LayerNorm()
    self.hidden_0 = nn.Dense(self.hidden)
    self.hidden_1 = nn.Dense(self.hidden)
    self.out = nn.Dense(self.num_classes)
    self.drop = nn.Dropout(self.dropout)

  @property
  def window_frames(self) -> int:
    """Frames the network looks at: the clip's and the context on both sides."""
    return self.num_frames + 2 * self.context_frames

  @property
  def used_embeddings(self) -> int:
    return self.num_embeddings or num_embeddings_in(self.window_frames)

  @property
  def used_frames(self) -> int:
    return WINDOW_FRAMES + EMBEDDING_HOP * (self.used_embeddings - 1)

  def embed(self, frames: Array) -> Array:
    embeddings = self.embedding(frames)
    return embeddings if self.finetune else jax.lax.stop_gradient(embeddings)

  def classify(self, embeddings: Array, train: bool) -> Array:
    """(B, N, 96) embeddings -> (B, C) logits."""
    y = self.norm(embeddings)
    if self.head == "pool":
      y = jnp.concatenate([jnp.mean(y, axis=1), jnp.max(y, axis=1)], axis=-1)
    else:
      y = y.reshape(y.shape[0], -1)
    y = self.drop(nn.relu(self.hidden_0(y)), deterministic=not train)
    y = self.drop(nn.relu(self.hidden_1(y)), deterministic=not train)
    return self.out(y)

  def __call__(self, x: Array, train: bool = False) -> Array:
    check_window(type(self).__name__, x, self.num_frames, self.num_features)
    if self.context_frames:
      # The clip's own floor (its quietest value) stands for the silence around it: what
      # zero-padded audio gives with top_db_mode="clip".
      floor = jnp.min(x, axis=(1, 2), keepdims=True)
      pad = jnp.broadcast_to(floor, (x.shape[0], self.context_frames, x.shape[2]))
      x = jnp.concatenate([pad, x, pad], axis=1)
    # The last embedding ends at the window's last frame; earlier frames are not needed.
    return self.classify(self.embed(x[:, self.window_frames - self.used_frames:]), train)

  def average_step_macs(self, variables) -> int:
    """MACs of a streaming step on average: a streamed embedding and the head every 8 steps."""
    chunk = jax.ShapeDtypeStruct((1, EMBEDDING_HOP, NUM_MELS), jnp.float32)
    cache = jax.eval_shape(lambda: initial_cache(1))
    embedding = count_macs(
        lambda v, x, c: self.apply(v, x, c, method=lambda m, y, z: m.embedding(y, z)),
        variables, chunk, cache)
    embeddings = jax.ShapeDtypeStruct((1, self.used_embeddings, EMBEDDING_DIM), jnp.float32)
    head = count_macs(lambda v, e: self.apply(v, e, False, method=lambda m, y, t: m.classify(y, t)),
                      variables, embeddings)
    return (embedding + head) // EMBEDDING_HOP

  def initial_state(self, batch_size: int) -> dict[str, Array]:
    embeddings = jnp.zeros((batch_size, self.used_embeddings, EMBEDDING_DIM), jnp.float32)
    return {"frames": jnp.zeros((batch_size, EMBEDDING_HOP, NUM_MELS), jnp.float32),
            "cache": initial_cache(batch_size),
            "embeddings": embeddings,
            "logits": self.classify(embeddings, train=False).astype(jnp.float32),
            "phase": jnp.zeros((), jnp.int32)}

  def step(self, state: dict[str, Array], frame: Array) -> tuple[dict[str, Array], Array]:
    check_frame(type(self).__name__, frame, self.num_features)
    frames = push_frame(state["frames"], frame.astype(jnp.float32))
    phase = (state["phase"] + 1) % EMBEDDING_HOP
    # The full window has an embedding ending at its last frame, hence every 8 frames in
    # phase with it; the embeddings, so the logits, change only then.
    due = phase == self.window_frames % EMBEDDING_HOP

    def embed(module, carry):
      cache, embeddings, _ = carry
      new, cache = module.embedding(frames, cache)
      embeddings = push_frame(embeddings, new[:, 0])
      return cache, embeddings, module.classify(embeddings, train=False).astype(jnp.float32)

    held = (state["cache"], state["embeddings"], state["logits"])
    cache, embeddings, logits = update_when_due(due, embed, self, held)  # ~20 k floats held
    return ({"frames": frames, "cache": cache, "embeddings": embeddings, "logits": logits,
             "phase": phase}, logits)
