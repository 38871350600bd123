"""Fixtures for the data tests."""

from __future__ import annotations

import pathlib

import pytest
from data_helpers import make_word_folder


@pytest.fixture(scope="session")
def word_folder(tmp_path_factory) -> pathlib.Path:
  return make_word_folder(tmp_path_factory.mktemp("words"))



@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> pathlib.Path:
  """One prepared-folder cache for the tests on ../shared/data: a folder built with the
  same options is read back instead of built again (the cache key covers the options)."""
  return tmp_path_factory.mktemp("shared_cache")
