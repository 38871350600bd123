"""`python -m kws_jax.evaluate`: a trained tiny model on word-folder and canonical-test layouts."""

from __future__ import annotations

import json
import pathlib
import re
import types
import warnings

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


@pytest.mark.filterwarnings("ignore:.*was trained on:UserWarning")  # its training folder
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


def test_a_folder_without_word_folders_is_refused_naming_the_dataset_inside(tiny, tmp_path):
  # The parent of a dataset (like ../shared/data): noise recordings and the dataset folder.
  parent = tmp_path / "shared"
  audio_io.write_wav(parent / "background_noise" / "noise.wav", np.zeros(4000, np.float32))
  (parent / "data").symlink_to(tiny.data, target_is_directory=True)
  with pytest.raises(errors.DataError, match=(
      rf"{parent}: not a Speech Commands-layout folder for this model: no folder of its "
      rf"words \(yes, no\) nor _silence_/_unknown_; its sub-folder data looks like one: "
      rf"--data-dir {parent / 'data'}$")):
    folder_eval.main(["--workdir", str(tiny.workdir), "--data-dir", str(parent)])


def test_the_training_folder_warns_that_it_is_no_test_accuracy(tiny, capsys, monkeypatch, tmp_path):
  titles = []
  monkeypatch.setattr(folder_eval.plots, "confusion_matrix_png",
                      lambda *args, title="": titles.append(title))
  with pytest.warns(UserWarning, match=rf"{tiny.data} holds (\d+) clip\(s\) that {tiny.workdir} "
                    r"was trained on: this is not a test accuracy") as caught:
    got = run_json(capsys, "--workdir", str(tiny.workdir), "--data-dir", str(tiny.data),
                   "--json", "--cache-dir", str(tiny.cache), "--plot", str(tmp_path / "c.png"))
  assert got["training_clips"] == int(re.search(r"holds (\d+)", str(caught[0].message))[1]) > 0
  assert titles == [f"tf_tiny_conv ({tiny.workdir}) on {tiny.data}: "
                    f"accuracy {got['accuracy']:.3f}"]
  other = make_folder(tmp_path / "other", speakers=2, clips=1, seed=5)
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # no warning for a folder the run never read
    run_json(capsys, "--workdir", str(tiny.workdir), "--data-dir", str(other), "--json",
             "--cache-dir", str(tiny.cache))
