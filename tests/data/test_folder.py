"""The tfds folder builder on real Speech Commands folders and on made-up ones."""

from __future__ import annotations

import collections
import hashlib
import os
import re
import shutil

import numpy as np
import pytest
import soundfile as sf
from data_helpers import add_bad_files, make_word_folder, tone, write

from kws_jax.data import folder
from kws_jax.errors import DataError

KEYWORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]


def _tf_which_set(filename, validation_percentage, testing_percentage):
  """TF speech_commands README's which_set, as printed there (Python 3 bytes)."""
  base_name = os.path.basename(filename)
  hash_name = re.sub(r"_nohash_.*$", "", base_name)
  hash_name_hashed = hashlib.sha1(hash_name.encode()).hexdigest()
  percentage_hash = ((int(hash_name_hashed, 16) % ((2**27 - 1) + 1)) * (100.0 / (2**27 - 1)))
  if percentage_hash < validation_percentage:
    return "validation"
  elif percentage_hash < (testing_percentage + validation_percentage):
    return "test"
  return "train"


def test_which_set_matches_tf_rule():
  rng = np.random.default_rng(0)
  for _ in range(2000):
    speaker = f"{rng.integers(0, 2**32):08x}"
    name = f"{speaker}_nohash_{rng.integers(0, 5)}.wav"
    assert folder.which_set(speaker, 10, 10) == _tf_which_set(name, 10, 10)


def test_parse_name():
  assert folder.parse_name("yes", "0a7c2a8d_nohash_3.wav") == ("yes", "0a7c2a8d")
  assert folder.parse_name("_unknown_", "backward_0c540988_nohash_0.wav") == (
      "backward", "0c540988")
  assert folder.parse_name("_silence_", "1037.wav") == ("_silence_", "1037")


def _load(path, tmp_path, wanted=KEYWORDS, **options):
  names = folder.label_names_for(wanted, str(path))
  return folder.load_folder(str(path), names, folder.FolderOptions(**options),
                            cache_dir=str(tmp_path / "cache"))


def _all(data):
  return {k: np.concatenate([getattr(s, k) for s in data.splits.values()])
          for k in ("audio", "labels", "speakers", "words", "paths")}


@pytest.mark.shared_data
def test_sc_v2_test12_dev_counts_labels_and_audio(shared_data, shared_cache):
  root = shared_data / "sc_v2_test12_dev"
  expected = {d: len([f for f in os.listdir(root / d) if f.endswith(".wav")])
              for d in os.listdir(root) if (root / d).is_dir()}
  assert sum(expected.values()) == 3460  # its README
  data = _load(root, shared_cache)
  assert data.label_names == ["_silence_", "_unknown_", *KEYWORDS]
  clips = _all(data)
  assert len(clips["labels"]) == 3460 and not data.skipped
  got = collections.Counter(data.label_names[i] for i in clips["labels"])
  assert got == expected
  for path, label, word in zip(clips["paths"], clips["labels"], clips["words"]):
    directory, name = path.split("/")
    assert data.label_names[label] == directory
    if directory == "_unknown_":
      assert word == name.split("_")[0] and word not in KEYWORDS
  # Audio is the file's samples (clips there are exactly one second).
  for i in np.random.default_rng(0).choice(len(clips["paths"]), 5, replace=False):
    samples, _ = sf.read(str(root / clips["paths"][i]), dtype="int16")
    np.testing.assert_array_equal(clips["audio"][i], samples)


@pytest.mark.shared_data
def test_sc_v2_test12_dev_hash_split_never_splits_a_speaker(shared_data, shared_cache):
  root = shared_data / "sc_v2_test12_dev"
  # Its speakers all fall in TF's 10-20 % hash band: with TF's 10/10 every word clip is "test".
  plain = _load(root, shared_cache, validation_percentage=10, testing_percentage=10)
  assert not np.any(plain.splits["train"].labels > 0)
  assert not np.any(plain.splits["validation"].labels > 0)
  data = _load(root, shared_cache, validation_percentage=30, testing_percentage=30,
               split_salt="kws")
  split_of = {}
  for split, arrays in data.splits.items():
    assert len(arrays) > 300
    for speaker, label in zip(arrays.speakers, arrays.labels):
      if label == 0:  # _silence_ clips have no speaker
        continue
      assert split_of.setdefault(speaker, split) == split
  assert len(set(split_of.values())) == 3
  for split, arrays in data.splits.items():
    speakers = set(arrays.speakers[arrays.labels > 0])
    assert all(folder.which_set("kws" + s, 30, 30) == split for s in speakers)


@pytest.mark.shared_data
@pytest.mark.parametrize("mode", ["30-word", "12-class"])
def test_sc_v1_extra_builds(shared_data, shared_cache, mode):
  root = shared_data / "sc_v1_extra"
  words = folder.word_folders(str(root))
  assert len(words) == 30
  data = _load(root, shared_cache, wanted=None if mode == "30-word" else KEYWORDS)
  clips = _all(data)
  # One v0.01 file is cut short: its WAV header declares 32000 data bytes, the file holds 29140.
  assert [os.path.relpath(p, root) for p, _ in data.skipped] == ["zero/b87bdb22_nohash_1.wav"]
  files = {w: len(os.listdir(root / w)) - (w == "zero") for w in words}
  got = collections.Counter(data.label_names[i] for i in clips["labels"])
  if mode == "30-word":
    assert data.label_names == ["_silence_", "_unknown_", *words]
    assert got == files
  else:
    assert got["_unknown_"] == sum(n for w, n in files.items() if w not in KEYWORDS)
    assert all(got[w] == files[w] for w in KEYWORDS)
  # v0.01 clips are not padded: short ones are zero-filled to one second.
  index = next(i for i, p in enumerate(clips["paths"])
               if sf.info(str(root / p)).frames < 15000)
  frames = sf.info(str(root / clips["paths"][index])).frames
  assert clips["audio"].shape[1] == 16000 and not clips["audio"][index, frames:].any()


def test_small_folder_splits_labels_and_cache(word_folder, tmp_path):
  data = _load(word_folder, tmp_path, wanted=["yes", "no"], validation_percentage=25,
               testing_percentage=25)
  clips = _all(data)
  assert data.label_names == ["_silence_", "_unknown_", "yes", "no"]
  names = [data.label_names[i] for i in clips["labels"]]
  assert collections.Counter(names) == {"yes": 24, "no": 24, "_unknown_": 24}
  assert set(clips["words"][clips["labels"] == 1]) == {"cat", "dog"}
  for split, arrays in data.splits.items():
    for speaker in arrays.speakers:
      assert folder.which_set(speaker, 25, 25) == split
  assert len(data.background) == 1 and data.background[0].shape == (48000,)
  cache = tmp_path / "cache" / "folders"
  assert len(os.listdir(cache)) == 1
  _load(word_folder, tmp_path, wanted=["yes", "no"], validation_percentage=25,
        testing_percentage=25)
  assert len(os.listdir(cache)) == 1  # reused
  _load(word_folder, tmp_path, wanted=["yes"], validation_percentage=25, testing_percentage=25)
  assert len(os.listdir(cache)) == 2  # other options: another cache entry


def test_list_files_bad_list_and_max_files(tmp_path):
  root = make_word_folder(tmp_path / "w", speakers=6, background=False)
  yes = sorted(os.listdir(root / "yes"))
  (root / "validation_list.txt").write_text(f"yes/{yes[0]}\nno/{yes[1]}\n")
  (root / "testing_list.txt").write_text(f"yes/{yes[2]}\n")
  (root / "bad_list.txt").write_text(f"yes/{yes[3]}\n")
  data = _load(root, tmp_path, wanted=["yes", "no"], max_files_per_directory=4)
  assert list(data.splits["validation"].paths) == sorted([f"yes/{yes[0]}", f"no/{yes[1]}"])
  assert list(data.splits["test"].paths) == [f"yes/{yes[2]}"]
  train = collections.Counter(p.split("/")[0] for p in data.splits["train"].paths)
  assert train == {"yes": 4, "no": 4, "cat": 4, "dog": 4}
  assert f"yes/{yes[3]}" not in set(_all(data)["paths"])


def test_bad_files_are_skipped_with_a_count_or_stop(tmp_path):
  root = make_word_folder(tmp_path / "w", speakers=3)
  kinds = add_bad_files(root)
  with pytest.warns(UserWarning, match=r"left out 3 unusable audio file\(s\)") as record:
    data = _load(root, tmp_path, wanted=["yes", "no"])
  messages = " ".join(str(w.message) for w in record)
  assert "resampled 2 file(s)" in messages and "mixed 1 multi-channel" in messages
  assert {os.path.relpath(p, root) for p, _ in data.skipped} == {
      k for k, v in kinds.items() if v in ("empty", "corrupt", "truncated")}
  clips = _all(data)
  by_path = dict(zip(clips["paths"], clips["audio"]))
  for relpath in ("yes/ffff0005_nohash_0.wav", "yes/ffff0006_nohash_0.wav"):
    x = by_path[relpath][:8000].astype(np.float32)
    peak_hz = np.argmax(np.abs(np.fft.rfft(x))) * 16000 / len(x)
    assert abs(peak_hz - 500) < 5  # resampled, pitch kept
  np.testing.assert_allclose(by_path["yes/ffff0004_nohash_0.wav"][:8000] / 32767,
                             tone(400, 0.5), atol=2e-4)
  with pytest.raises(DataError, match="ffff000[123]"):
    _load(root, tmp_path / "again", wanted=["yes", "no"], on_bad_file="error")
  with pytest.warns(UserWarning, match=r"left out 6 unusable"):
    _load(root, tmp_path / "strict", wanted=["yes", "no"], resample=False, stereo="error")


def test_missing_or_empty_folder_errors(tmp_path):
  with pytest.raises(DataError, match="no such folder"):
    _load(tmp_path / "nope", tmp_path, wanted=["yes"])
  (tmp_path / "empty" / "yes").mkdir(parents=True)
  (tmp_path / "empty" / "yes" / "notes.txt").write_text("x")
  with pytest.raises(DataError, match="no .wav/.flac files"):
    _load(tmp_path / "empty", tmp_path, wanted=["yes"])
  with pytest.raises(DataError, match="bad_list"):
    _load(make_word_folder(tmp_path / "w", speakers=1), tmp_path, wanted=["yes"],
          bad_list="missing.txt")


def test_changed_folder_is_rebuilt(tmp_path):
  root = make_word_folder(tmp_path / "w", speakers=2, background=False)
  first = _all(_load(root, tmp_path, wanted=["yes"]))
  write(root / "yes" / "bbbbbbbb_nohash_0.wav", tone(900))
  second = _all(_load(root, tmp_path, wanted=["yes"]))
  assert len(second["labels"]) == len(first["labels"]) + 1
  shutil.rmtree(root / "dog")
  third = _all(_load(root, tmp_path, wanted=["yes"]))
  assert len(third["labels"]) == len(second["labels"]) - 2


def test_indexing_prints_one_line_of_its_own_and_nothing_of_tfds(word_folder, tmp_path, capfd):
  labels = ["_silence_", "_unknown_", "yes", "no"]
  capfd.readouterr()
  folder.load_folder(str(word_folder), labels, cache_dir=str(tmp_path))
  out, err = capfd.readouterr()
  clips = len(folder.scan(str(word_folder), labels, folder.FolderOptions()))
  assert out == ""
  assert err.splitlines()[0] == (f"indexing {clips:,} clips of {word_folder} (once; cached in "
                                 f"{next((tmp_path / 'folders').iterdir())})")
  assert "Downloading" not in err and "Generating" not in err and "examples/s" not in err
  folder.load_folder(str(word_folder), labels, cache_dir=str(tmp_path))
  assert "indexing" not in capfd.readouterr().err  # read back from the cache
