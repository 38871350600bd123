"""ELL's recurrent keyword spotters: stacked GRU / LSTM and a linear head.

Matches microsoft/ELL tools/utilities/pythonlibs/audio/training/train_classifier.py
(GRUKeywordSpotter / LSTMKeywordSpotter): `num_layers` stacked torch.nn.GRU/LSTM
layers of `hidden_size` units (ELL: 2 x 128), a Linear head on every frame,
log_softmax per frame, and the mean over time as the window's output. The
parameterization (two biases, gate order r,z,n for GRU and i,f,g,o for LSTM,
uniform(+-1/sqrt(hidden)) init) is torch's, so torch weights load 1:1.

Outputs are mean log-probabilities (ELL trains them with NLLLoss). They are
valid logits: softmax cross-entropy on them equals ELL's NLL plus the
(non-positive) log-sum-exp of the averaged log-probabilities.

The cells are written as explicit gate matmuls rather than flax's RNN cells:
the full window projects the input of all frames and all gates with one matmul
and uses lax.scan only for the recurrent part (fast training), and `step` is
the same cell on one frame with no scan (flat graph for export).

Streaming semantics: the recurrent state runs on, never reset (as in ELL's
streaming demo; a VAD may reset it); the state also keeps the last `num_frames`
per-frame log-probabilities, and `step` outputs their mean. So `num_frames`
steps from `initial_state` give exactly the full-window output, and later steps
give the mean over the last window of the running network.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from kws_jax.models.common import Array, check_frame, check_window, push_frame, torch_dense, torch_uniform


def split_gates(x_proj: Array, num_gates: int) -> tuple[Array, ...]:
  """(..., num_gates * H) -> num_gates arrays (..., H), one per gate.

  Split the input projection of all frames BEFORE the time scan: XLA:CPU ran a loop
  body that slices several gates out of the same scanned row with tanh/sigmoid on them
  ~2-3x slower than one that gets each gate as its own scanned array (GRU, batch 64).
  """
  return tuple(jnp.split(x_proj, num_gates, axis=-1))


def _gru_gates(x_gates: tuple[Array, Array, Array], h_proj: Array
               ) -> tuple[Array, Array, Array]:
  """torch.nn.GRU's gates r, z, n from the split input projection and h @ W_h + b_h."""
  hidden = h_proj.shape[-1] // 3
  x_r, x_z, x_n = x_gates
  r = jax.nn.sigmoid(x_r + h_proj[..., :hidden])
  z = jax.nn.sigmoid(x_z + h_proj[..., hidden:2 * hidden])
  n = jnp.tanh(x_n + r * h_proj[..., 2 * hidden:])
  return r, z, n


def gru_cell(x_gates: tuple[Array, Array, Array], h: Array, recurrent_kernel: Array,
             recurrent_bias: Array) -> Array:
  """One torch.nn.GRU step. `x_gates` = x @ W_i + b_i split into gates (r, z, n); returns h."""
  r, z, n = _gru_gates(x_gates, h @ recurrent_kernel + recurrent_bias)
  return (1.0 - z) * n + z * h


def _gru_forward(recurrent_kernel: Array, recurrent_bias: Array, x_proj: Array):
  hidden = recurrent_kernel.shape[0]
  h0 = jnp.zeros_like(x_proj[0, :, :hidden])

  def body(h, x_gates):
    h_proj = h @ recurrent_kernel + recurrent_bias
    r, z, n = _gru_gates(x_gates, h_proj)
    h_new = (1.0 - z) * n + z * h
    return h_new, (h_new, r, z, n, h_proj[..., 2 * hidden:])

  _, (hs, r, z, n, h_proj_n) = jax.lax.scan(body, h0, split_gates(x_proj, 3))
  h_prev = jnp.concatenate([h0[None], hs[:-1]], axis=0)
  return hs, (recurrent_kernel, h_prev, r, z, n, h_proj_n)


@jax.custom_vjp
def gru_recurrence(recurrent_kernel: Array, recurrent_bias: Array, x_proj: Array) -> Array:
  """torch.nn.GRU's recurrence from h0 = 0: x_proj (T, B, 3H) = x @ W_i + b_i -> hs (T, B, H).

  Same values as scanning `gru_cell`, with a hand-written backward: autodiff of the scan
  accumulates the recurrent weight gradient with one small matmul per time step inside the
  loop; here the reverse loop only carries dh, and the weight gradient is one large matmul
  over all steps after it (ELL GRU recipe on 2 CPU cores: ~1.2x faster training steps).
  """
  return _gru_forward(recurrent_kernel, recurrent_bias, x_proj)[0]


def _gru_backward(residuals, d_hs):
  recurrent_kernel, h_prev, r, z, n, h_proj_n = residuals
  kernel_t = recurrent_kernel.T

  def body(dh, step):
    d_out, hp, r, z, n, hpn = step
    dh = dh + d_out
    d_n = dh * (1.0 - z) * (1.0 - n * n)
    d_z = dh * (hp - n) * z * (1.0 - z)
    d_r = d_n * hpn * r * (1.0 - r)
    d_h_proj = jnp.concatenate([d_r, d_z, d_n * r], axis=-1)
    d_x_proj = jnp.concatenate([d_r, d_z, d_n], axis=-1)
    return dh * z + d_h_proj @ kernel_t, (d_x_proj, d_h_proj)

  _, (d_x_proj, d_h_proj) = jax.lax.scan(
      body, jnp.zeros_like(d_hs[0]), (d_hs, h_prev, r, z, n, h_proj_n), reverse=True)
  d_kernel = jnp.einsum("tbh,tbg->hg", h_prev, d_h_proj)  # one GEMM over all steps
  return d_kernel, d_h_proj.sum(axis=(0, 1)), d_x_proj


gru_recurrence.defvjp(_gru_forward, _gru_backward)


def lstm_cell(x_gates: tuple[Array, Array, Array, Array], carry: tuple[Array, Array],
              recurrent_kernel: Array, recurrent_bias: Array) -> tuple[Array, Array]:
  """One torch.nn.LSTM step on carry (h, c); `x_gates` holds gates (i, f, g, o). Returns (h, c)."""
  h, c = carry
  hidden = h.shape[-1]
  h_proj = h @ recurrent_kernel + recurrent_bias
  i, f, g, o = (x + h_proj[..., k * hidden:(k + 1) * hidden] for k, x in enumerate(x_gates))
  c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
  return jax.nn.sigmoid(o) * jnp.tanh(c), c


class RecurrentLayer(nn.Module):
  """One GRU or LSTM layer's parameters (torch layout, kernels transposed to (in, gates*hidden))."""

  in_features: int
  hidden_size: int
  num_gates: int

  def setup(self):
    init = torch_uniform(self.hidden_size)
    gates = self.num_gates * self.hidden_size
    self.input_kernel = self.param("input_kernel", init, (self.in_features, gates))
    self.input_bias = self.param("input_bias", init, (gates,))
    self.recurrent_kernel = self.param("recurrent_kernel", init, (self.hidden_size, gates))
    self.recurrent_bias = self.param("recurrent_bias", init, (gates,))

  def __call__(self) -> tuple[Array, Array, Array, Array]:
    return self.input_kernel, self.input_bias, self.recurrent_kernel, self.recurrent_bias


class _RecurrentKeywordSpotter(nn.Module):
  """Shared body of the GRU and LSTM spotters (see module docstring)."""

  num_classes: int
  num_frames: int
  num_features: int
  hidden_size: int = 128
  num_layers: int = 2
  dropout_rate: float = 0.0  # between recurrent layers in training (ELL: none)

  num_gates: ClassVar[int]
  has_cell_state: ClassVar[bool]
  # What a VAD reset clears (ELL resets the recurrent layers); the window of per-frame
  # log-probabilities keeps averaging so a word that just ended can still be detected.
  reset_state_keys: ClassVar[tuple[str, ...]] = ("h", "c")

  def setup(self):
    self.layers = [
        RecurrentLayer(self.num_features if i == 0 else self.hidden_size, self.hidden_size,
                       self.num_gates, name=f"layer_{i}") for i in range(self.num_layers)]
    self.head = torch_dense(self.num_classes, self.hidden_size, name="head")
    self.dropout = nn.Dropout(self.dropout_rate)

  def _run_layer(self, weights, x_proj_tbg: Array) -> Array:
    """Recurrence over time: x_proj (T, B, gates) -> hidden states (T, B, H)."""
    _, _, recurrent_kernel, recurrent_bias = weights
    if not self.has_cell_state:
      return gru_recurrence(recurrent_kernel, recurrent_bias, x_proj_tbg)
    zeros = jnp.zeros((x_proj_tbg.shape[1], self.hidden_size), x_proj_tbg.dtype)

    def body(carry, x_gates):
      carry = lstm_cell(x_gates, carry, recurrent_kernel, recurrent_bias)
      return carry, carry[0]

    _, hs = jax.lax.scan(body, (zeros, zeros), split_gates(x_proj_tbg, self.num_gates))
    return hs

  def __call__(self, x: Array, train: bool = False) -> Array:
    check_window(type(self).__name__, x, self.num_frames, self.num_features)
    h = jnp.swapaxes(x.astype(jnp.float32), 0, 1)  # (T, B, F): scan runs over the leading axis
    for index, layer in enumerate(self.layers):
      weights = layer()
      input_kernel, input_bias = weights[0], weights[1]
      x_proj = h @ input_kernel + input_bias  # all frames, all gates: one matmul
      h = self._run_layer(weights, x_proj)
      if index + 1 < self.num_layers:
        h = self.dropout(h, deterministic=not train)
    log_probs = jax.nn.log_softmax(self.head(jnp.swapaxes(h, 0, 1)), axis=-1)  # (B, T, C)
    return jnp.mean(log_probs, axis=1)

  def initial_state(self, batch_size: int) -> dict[str, Array]:
    zeros = jnp.zeros((self.num_layers, batch_size, self.hidden_size), jnp.float32)
    state = {"h": zeros,
             "log_probs": jnp.zeros((batch_size, self.num_frames, self.num_classes), jnp.float32)}
    if self.has_cell_state:
      state["c"] = zeros
    return state

  def step(self, state: dict[str, Array], frame: Array) -> tuple[dict[str, Array], Array]:
    check_frame(type(self).__name__, frame, self.num_features)
    x = frame.astype(jnp.float32)
    new_h, new_c = [], []
    for index, layer in enumerate(self.layers):
      input_kernel, input_bias, recurrent_kernel, recurrent_bias = layer()
      x_gates = split_gates(x @ input_kernel + input_bias, self.num_gates)
      if self.has_cell_state:
        x, c = lstm_cell(x_gates, (state["h"][index], state["c"][index]), recurrent_kernel,
                         recurrent_bias)
        new_c.append(c)
      else:
        x = gru_cell(x_gates, state["h"][index], recurrent_kernel, recurrent_bias)
      new_h.append(x)
    log_probs = push_frame(state["log_probs"], jax.nn.log_softmax(self.head(x), axis=-1))
    new_state = {"h": jnp.stack(new_h), "log_probs": log_probs}
    if self.has_cell_state:
      new_state["c"] = jnp.stack(new_c)
    return new_state, jnp.mean(log_probs, axis=1)


class GRUKeywordSpotter(_RecurrentKeywordSpotter):
  """ELL's GRU keyword spotter (registry name `gru`)."""

  num_gates: ClassVar[int] = 3
  has_cell_state: ClassVar[bool] = False


class LSTMKeywordSpotter(_RecurrentKeywordSpotter):
  """ELL's LSTM keyword spotter (registry name `lstm`)."""

  num_gates: ClassVar[int] = 4
  has_cell_state: ClassVar[bool] = True

