"""Fixtures for the export/compile/run tests (helpers live in export_helpers.py)."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest
from export_helpers import REPO_ROOT, tiny_trained

from kws_jax import audio
from kws_jax.deploy import iree_compile
from kws_jax.deploy import stablehlo_export as export


@pytest.fixture(scope="session")
def trained_gru():
  """tf_speech_commands MFCC frontend (as preset, rfft) + 2 x GRU16, random weights."""
  return tiny_trained("tf_speech_commands", "gru", hidden_size=16, num_layers=2)


@pytest.fixture(scope="session")
def toy_export(tmp_path_factory, trained_gru) -> pathlib.Path:
  """Export of `trained_gru`: the configured spectrum plus the other variant.

  Chunks of 30 hops, so that 100 hops run as 3 chunk calls plus 10 single steps.
  """
  out = tmp_path_factory.mktemp("export")
  export.export_trained(trained_gru, out, chunk_hops=CHUNK_HOPS)
  return out


CHUNK_HOPS = 30
_COMPILED: dict[str, pathlib.Path] = {}


@pytest.fixture(scope="session")
def compiled(tmp_path_factory, toy_export):
  """compiled(target) -> dir, compiling each target once per session."""
  def get(target: str) -> pathlib.Path:
    if target not in _COMPILED:
      out = tmp_path_factory.mktemp(f"compiled_{target}")
      iree_compile.compile_export(toy_export, target, out)
      _COMPILED[target] = out
    return _COMPILED[target]
  return get


@pytest.fixture(scope="session")
def test_clip() -> np.ndarray:
  """1 s of real speech (a 'yes' from ../shared/data) or, when absent, a synthetic chirp in noise."""
  shared = os.environ.get("KWS_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")
  root = pathlib.Path(shared) / "sc_v2_test12_dev" / "yes"
  files = sorted(root.glob("*.wav")) if root.is_dir() else []
  if files:
    clip = audio.fit_length(audio.read_audio(files[0]), 16000)
  else:
    t = np.arange(16000) / 16000.0
    rng = np.random.default_rng(1)
    clip = (0.3 * np.sin(2 * np.pi * (300 + 900 * t) * t) * np.hanning(16000)
            + 0.01 * rng.normal(size=16000)).astype(np.float32)
  return clip.astype(np.float32)
