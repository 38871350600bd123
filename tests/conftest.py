"""Shared test fixtures.

Real Speech Commands audio lives beside the checkout in ../shared/data (also in
CI). It is never copied into the repository; tests that need it skip cleanly
when it is absent. KWS_SHARED_DATA overrides the location.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def shared_data_dir() -> pathlib.Path:
  return pathlib.Path(os.environ.get("KWS_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  """../shared/data, or a skip when it is absent."""
  path = shared_data_dir()
  if not (path / "sc_v2_test12_dev").is_dir():
    pytest.skip(f"real Speech Commands data not found at {path}")
  return path


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
  return REPO_ROOT


FRESH_PROCESS_ENV = "KWS_TEST_FRESH_PROCESS"


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "without_tensorflow: run in a fresh interpreter when this one has imported "
      "TensorFlow (TensorFlow and Mesa's Vulkan driver in one process crash it: free(): invalid "
      "pointer)")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
  """Reruns a `without_tensorflow` test in a new interpreter if TensorFlow is loaded here.

  pytest -n 2 puts tests on workers in no fixed order, so a worker may already have run the
  tfds tests (which import TensorFlow) when it reaches a Vulkan test.
  """
  if (pyfuncitem.get_closest_marker("without_tensorflow") is None
      or "tensorflow" not in sys.modules or os.environ.get(FRESH_PROCESS_ENV)):
    return None
  proc = subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
       pyfuncitem.nodeid], cwd=REPO_ROOT, capture_output=True, text=True,
      env={**os.environ, FRESH_PROCESS_ENV: "1"}, timeout=900)
  if proc.returncode != 0:
    pytest.fail(f"failed in a fresh interpreter:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
  return True


@pytest.fixture(autouse=True)
def _environment_restored():
  """Undoes what a test (or code it calls in process) writes to os.environ.

  A leaked XLA_FLAGS device count once made a later test's training subprocess run
  data-parallel on 2 CPU devices, with other rounding than the in-process reference.
  """
  saved = dict(os.environ)
  yield
  if os.environ != saved:
    os.environ.clear()
    os.environ.update(saved)
