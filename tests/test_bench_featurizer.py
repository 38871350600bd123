"""The featurizer benchmark runs and reports a ratio against librosa (not a timed test)."""

from __future__ import annotations

import json

import pytest

from kws_jax.bench import featurizer


def test_benchmark_smoke_run(capsys):
  code = featurizer.main(["--clips", "4", "--batch", "2", "--repeats", "1",
                          "--presets", "ell", "--json"])
  assert code == 0
  result = json.loads(capsys.readouterr().out)
  (row,) = result["rows"]
  assert row["name"] == "ell" and row["batch"] == 2
  assert row["kws_jax_clips_per_s"] > 0 and row["librosa_clips_per_s"] > 0
  # Both rates and the ratio are rounded in the JSON: compare to their rounding.
  assert row["ratio"] == pytest.approx(
      row["kws_jax_clips_per_s"] / row["librosa_clips_per_s"], rel=0.03, abs=0.01)
