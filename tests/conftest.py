"""Shared test fixtures.

Real Speech Commands audio lives beside the checkout in ../shared/data (also in
CI). It is never copied into the repository; tests that need it skip cleanly
when it is absent. KWS_SHARED_DATA overrides the location.
"""

from __future__ import annotations

import os
import pathlib

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
