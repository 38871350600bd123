"""Helpers for tests/deploy: the tiny real model and a hand-written toy step.

A uniquely named module (not conftest) so test files can import it unambiguously.
"""

from __future__ import annotations

import pathlib
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from kws_jax.deploy.streaming_step import StreamingStep
from kws_jax.models import builder
from kws_jax.runs.trained_model import Trained

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
TOY_HOP = 160
TOY_WINDOW = 320
TOY_FFT = 512
TOY_BANDS = 16
TOY_HIDDEN = 32
TOY_LABELS = ("_silence_", "_unknown_", "yes", "no")


def toy_params(seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  bins = TOY_FFT // 2 + 1
  def w(*shape, scale):
    return jnp.asarray(rng.normal(0, scale, shape).astype(np.float32))
  return {
      "bands": jnp.asarray(np.abs(rng.normal(0, 1, (bins, TOY_BANDS))).astype(np.float32) / bins),
      "gru": {"wi": w(TOY_BANDS, 3 * TOY_HIDDEN, scale=0.3), "wh": w(TOY_HIDDEN, 3 * TOY_HIDDEN, scale=0.2),
              "b": w(3 * TOY_HIDDEN, scale=0.1)},
      "dense": {"kernel": w(TOY_HIDDEN, len(TOY_LABELS), scale=0.5), "bias": w(len(TOY_LABELS), scale=0.1)},
  }


def _power_spectrum(window: jax.Array, spectrum: str, n_fft: int) -> jax.Array:
  padded = jnp.pad(window * jnp.hanning(TOY_WINDOW).astype(jnp.float32), (0, n_fft - TOY_WINDOW))
  if spectrum == "rfft":
    z = jnp.fft.rfft(padded)
    return jnp.real(z) ** 2 + jnp.imag(z) ** 2
  n = np.arange(n_fft)[:, None] * np.arange(n_fft // 2 + 1)[None, :]
  cos = jnp.asarray(np.cos(2 * np.pi * n / n_fft).astype(np.float32))
  sin = jnp.asarray(np.sin(2 * np.pi * n / n_fft).astype(np.float32))
  return (padded @ cos) ** 2 + (padded @ sin) ** 2


def make_toy_step(spectrum: str = "rfft", params: dict | None = None,
                  n_fft: int = TOY_FFT) -> StreamingStep:
  def init_state():
    return {"frontend": {"buffer": jnp.zeros((TOY_WINDOW,), jnp.float32)},
            "model": {"h": jnp.full((1, TOY_HIDDEN), 0.01, jnp.float32)}}

  def apply(p, state, samples):
    buffer = jnp.concatenate([state["frontend"]["buffer"][TOY_HOP:], samples])
    spec = _power_spectrum(buffer, spectrum, n_fft)
    frame = jnp.log(spec @ p["bands"][:spec.shape[0]] + 1e-6)
    h = state["model"]["h"]
    g = p["gru"]
    xi = frame[None, :] @ g["wi"] + g["b"]
    hh = h @ g["wh"]
    r = jax.nn.sigmoid(xi[:, :TOY_HIDDEN] + hh[:, :TOY_HIDDEN])
    z = jax.nn.sigmoid(xi[:, TOY_HIDDEN:2 * TOY_HIDDEN] + hh[:, TOY_HIDDEN:2 * TOY_HIDDEN])
    n = jnp.tanh(xi[:, 2 * TOY_HIDDEN:] + r * hh[:, 2 * TOY_HIDDEN:])
    h = (1 - z) * n + z * h
    logits = (h @ p["dense"]["kernel"] + p["dense"]["bias"])[0]
    return ({"frontend": {"buffer": buffer}, "model": {"h": h}},
            {"logits": logits, "scores": jax.nn.softmax(logits)})

  return StreamingStep(apply=apply, params=params or toy_params(), init_state=init_state,
                       hop_size=TOY_HOP, sample_rate=16000, label_names=TOY_LABELS,
                       info={"frontend": {"spectrum": spectrum, "fft_length": TOY_FFT},
                             "vad": None, "smoothing": None, "model": {"name": "toy_gru"}})


def tiny_trained(preset: str = "tf_speech_commands", model: str = "gru", *,
                 features: dict | None = None, vad: dict | None = None,
                 smoothing: dict | None = None, seed: int = 0, **hparams) -> Trained:
  """A `Trained` of real frontend + registry model with random weights (no workdir)."""
  config = {"features": {"preset": preset, **(features or {})}, "model": {"name": model, **hparams}}
  if vad is not None:
    config["vad"] = vad
  if smoothing is not None:
    config["smoothing"] = smoothing
  config = ml_collections.ConfigDict(config)
  frontend_params, net, num_frames, num_features = builder.build(config, len(TOY_LABELS), 16000)
  variables = builder.init_variables(net, num_frames, num_features, jax.random.key(seed))
  return Trained(config=config, label_names=list(TOY_LABELS), frontend=frontend_params, model=net,
                 variables=variables, num_frames=num_frames, num_features=num_features,
                 clip_samples=16000, sample_rate=16000, step=0, workdir=pathlib.Path("."))


def binutils(prefix: str, tool: str) -> str | None:
  return shutil.which(prefix + tool)


def vulkan_available() -> bool:
  try:
    import iree.runtime as ireert
    return bool(ireert.get_driver("vulkan").query_available_devices())
  except Exception:  # No loader, no ICD, or no device: all mean "skip".
    return False
