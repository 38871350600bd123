"""Fixtures for the data tests."""

from __future__ import annotations

import pathlib

import pytest

from data_helpers import make_word_folder


@pytest.fixture(scope="session")
def word_folder(tmp_path_factory) -> pathlib.Path:
  return make_word_folder(tmp_path_factory.mktemp("words"))

