"""`python -m kws_jax.evaluate`: a trained tiny model on word-folder and canonical-test layouts."""

from __future__ import annotations

import json
import pathlib
import types

import numpy as np
import pytest
from tiny_training import WANTED, make_folder, tiny_config

from kws_jax import audio as audio_io
from kws_jax import errors
from kws_jax.evaluation import folder_eval
from kws_jax.runs import trained_model
from kws_jax.train import loop


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  root = tmp_path_factory.mktemp("evaluate")
  data = make_folder(root / "data")
  cache = root / "cache"
  workdir = root / "work"
  loop.train_and_evaluate(tiny_config(data, cache, epochs=1, checkpoint_every_steps=0), workdir)
  return types.SimpleNamespace(root=root, data=data, cache=cache, workdir=workdir)


def reference_matrix(workdir: pathlib.Path, folder: pathlib.Path) -> tuple[np.ndarray, int]:
  """The confusion matrix from reading every WAV directly and predicting file by file."""
  t = trained_model.load(workdir)
  index = {name: i for i, name in enumerate(t.label_names)}
  matrix = np.zeros((len(index), len(index)), np.int64)
  files = sorted(p for p in folder.rglob("*.wav") if p.parent.name != "_background_noise_")
  for path in files:
    clip = audio_io.fit_length(audio_io.read_audio(path, t.sample_rate), t.clip_samples)
    predicted = int(np.argmax(np.asarray(t.predict(clip[None]))[0]))
    word = path.parent.name
    matrix[index.get(word, index["_unknown_"]), predicted] += 1
  return matrix, len(files)


def run_json(capsys, *argv: str) -> dict:
  assert folder_eval.main(list(argv)) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  assert "accuracy" in lines[0] and "truth \\ predicted" in lines
  return json.loads(lines[-1])


@pytest.mark.parametrize("canonical", [False, True], ids=["word_folders", "canonical_test"])
def test_evaluate_json_matches_file_by_file_predictions(tiny, capsys, canonical):
  folder = make_folder(tiny.root / f"eval_{canonical}", speakers=4, clips=1, seed=9,
                       canonical=canonical)
  plot = tiny.root / f"confusion_{canonical}.png"
  got = run_json(capsys, "--workdir", str(tiny.workdir), "--data-dir", str(folder), "--json",
                 "--cache-dir", str(tiny.cache), "--plot", str(plot))
  want, num_files = reference_matrix(tiny.workdir, folder)
  assert got["labels"] == ["_silence_", "_unknown_", *WANTED.split(",")]
  assert got["num_examples"] == num_files == want.sum()
  np.testing.assert_array_equal(np.asarray(got["confusion_matrix"]), want)
  assert got["accuracy"] == pytest.approx(np.trace(want) / want.sum())
  assert got["checkpoint"] == "best"
  assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  if canonical:  # _silence_ and _unknown_ folders are read as those classes
    assert want[0].sum() == 2 and want[1].sum() == 8


def test_evaluate_latest_checkpoint_and_cli_errors(tiny, capsys, tmp_path):
  got = run_json(capsys, "--workdir", str(tiny.workdir), "--data-dir", str(tiny.data),
                 "--which", "latest", "--json", "--cache-dir", str(tiny.cache))
  assert got["checkpoint"] == "latest" and got["step"] == trained_model.load(tiny.workdir, "latest").step
  with pytest.raises(errors.DataError, match=r"nowhere: no such folder.*--data-dir"):
    folder_eval.main(["--workdir", str(tiny.workdir), "--data-dir", str(tmp_path / "nowhere")])
  with pytest.raises(errors.KwsError, match=r"no such workdir; train first"):
    folder_eval.main(["--workdir", str(tmp_path / "nowork"), "--data-dir", str(tiny.data)])
  (tmp_path / "empty" / "yes").mkdir(parents=True)
  with pytest.raises(errors.KwsError):
    folder_eval.main(["--workdir", str(tiny.workdir), "--data-dir", str(tmp_path / "empty"),
                   "--cache-dir", str(tiny.cache)])
