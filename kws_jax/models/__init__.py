"""Model registry: `create(name, num_classes, num_frames, num_features, **hparams)`.

Every model is a flax.linen Module with
  - `__call__(x, train)`: features (B, T, F) -> logits (B, C) for the full window
    (an ensemble, dscnn with members=M, returns its members' (B, M, C) when training);
  - `initial_state(batch_size)` and `step(state, frame)`: streaming, frame (B, F)
    -> (state, logits (B, C)), inference semantics, no scan/while (flat graph).
Scanning `step` over the T frames of a window from `initial_state` gives, at the
last frame, the full-window logits with train=False.

Families (module docstrings say what each reproduces):
  gru, lstm                      ELL's recurrent spotters (rnn.py)
  tf_conv, tf_low_latency_conv,
  tf_low_latency_svdf, tf_tiny_conv   TF speech_commands models.py (tf_speech.py)
  torchaudio_cnn                 the torchaudio/jumpml tutorial CNN (torchaudio_cnn.py)
  dscnn                          MLPerf Tiny KWS DS-CNN (dscnn.py)
  dscnn_streaming                the same with a 'valid' time axis and streaming convolutions
                                 (dscnn_streaming.py)
  bcresnet                       BC-ResNet with SubSpectral Norm (bcresnet.py)
  speech_embedding               Google's pretrained speech embedding + a head (speech_embedding.py)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax

from kws_jax.errors import ConfigError
from kws_jax.models import bcresnet, dscnn, dscnn_streaming, rnn, speech_embedding, tf_speech, torchaudio_cnn
from kws_jax.models.macs import count_macs, macs_per_second, step_macs, window_macs

_REGISTRY: dict[str, type[nn.Module]] = {
    "gru": rnn.GRUKeywordSpotter,
    "lstm": rnn.LSTMKeywordSpotter,
    "tf_conv": tf_speech.TfConv,
    "tf_low_latency_conv": tf_speech.TfLowLatencyConv,
    "tf_low_latency_svdf": tf_speech.TfLowLatencySvdf,
    "tf_tiny_conv": tf_speech.TfTinyConv,
    "torchaudio_cnn": torchaudio_cnn.TorchaudioCnn,
    "dscnn": dscnn.DsCnn,
    "dscnn_streaming": dscnn_streaming.StreamingDsCnn,
    "bcresnet": bcresnet.BcResNet,
    "speech_embedding": speech_embedding.SpeechEmbeddingKws,
}

# Set by `create`, not hparams.
_SHAPE_FIELDS = ("num_classes", "num_frames", "num_features")
_FLAX_FIELDS = ("parent", "name")

__all__ = ["create", "list_models", "default_hparams", "count_params", "count_macs",
           "macs_per_second", "step_macs", "window_macs"]


def list_models() -> list[str]:
  """Registered model names, sorted."""
  return sorted(_REGISTRY)


def _model_class(name: str) -> type[nn.Module]:
  if name not in _REGISTRY:
    raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(list_models())}")
  return _REGISTRY[name]


def default_hparams(name: str) -> dict[str, Any]:
  """The hyperparameters `create(name, ...)` accepts, with their defaults."""
  cls = _model_class(name)
  return {f.name: f.default for f in dataclasses.fields(cls)
          if f.name not in _SHAPE_FIELDS + _FLAX_FIELDS and f.init}


def create(name: str, num_classes: int, num_frames: int, num_features: int,
           **hparams: Any) -> nn.Module:
  """Builds model `name` for windows of (num_frames, num_features) and num_classes outputs."""
  cls = _model_class(name)
  valid = default_hparams(name)
  unknown = sorted(set(hparams) - set(valid))
  if unknown:
    listing = ", ".join(f"{k}={v!r}" for k, v in valid.items()) or "none"
    raise ConfigError(f"unknown hyperparameter(s) {', '.join(unknown)} for model {name!r}; "
                      f"valid ones (with defaults): {listing}")
  for key, value in (("num_classes", num_classes), ("num_frames", num_frames),
                     ("num_features", num_features)):
    if int(value) != value or value < 1:
      raise ConfigError(f"{key} must be a positive integer, got {value!r}")
  return cls(num_classes=int(num_classes), num_frames=int(num_frames),
             num_features=int(num_features), **hparams)


def count_params(params: Any) -> int:
  """Number of trainable parameters. Takes `variables["params"]` (or the whole variables dict,
  of which only the "params" collection is counted)."""
  if isinstance(params, dict) or hasattr(params, "keys"):
    if "params" in params:
      params = params["params"]
  return int(sum(leaf.size for leaf in jax.tree_util.tree_leaves(params)))
