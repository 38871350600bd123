"""Pre-downloaded Speech Commands archives (data.manual_dir) and the extracted-folder route.

Small archives in the official layout are built from ../shared/data into
tmp_path: `speech_commands_v0.02.tar.gz` (word folders, `_background_noise_`,
`validation_list.txt`, `testing_list.txt`, no leading `./`, as tfds' split
lists expect) and `speech_commands_test_set_v0.02.tar.gz` (the canonical test
layout with `_silence_` and `_unknown_`). They are not Google's files, so their
checksums differ from the ones tfds registers.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import pathlib
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import soundfile as sf
import tensorflow_datasets as tfds
from tensorflow_datasets.core.download import download_manager

from kws_jax.configs import default as config_default
from kws_jax.data import folder as folder_lib
from kws_jax.data import pipeline, speech_commands
from kws_jax.errors import DataError

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
import tiny_training  # noqa: E402

# One epoch, one compiled chunk, a checkpoint only at the end: the CLI runs, briefly.
TINY_TRAIN = dict(epochs=1, checkpoint_every_steps=0, steps_per_call=8)
MAIN, TEST = speech_commands.ARCHIVES
UNKNOWN_WORDS = ("bed", "cat", "happy", "marvin")
NOISES = {"white_noise.wav": 3.0, "running_tap.wav": 2.0}  # seconds kept of each recording
needs_tfds_extra = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("pydub") is None,
    reason="needs the tfds extra: pip install -e '.[tfds]'")


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def _wav_bytes(path: pathlib.Path, seconds: float) -> bytes:
  audio, rate = sf.read(str(path), dtype="int16", frames=int(seconds * 16000))
  out = io.BytesIO()
  sf.write(out, audio, rate, format="WAV", subtype="PCM_16")
  return out.getvalue()


def build_archives(shared: pathlib.Path, out: pathlib.Path) -> dict:
  """The two archives in `out`; returns what went into each (relative paths by split)."""
  extra, canonical = shared / "sc_v1_extra", shared / "sc_v2_test12_dev"
  members = {"validation": [], "test": [], "train": []}
  with tarfile.open(out / MAIN, "w:gz") as tar:
    for word in (*speech_commands.KEYWORDS, *UNKNOWN_WORDS):
      for path in sorted((extra / word).glob("*.wav"))[:8]:
        relpath = f"{word}/{path.name}"
        tar.add(str(path), relpath)
        speaker = folder_lib.parse_name(word, path.name)[1]
        members[folder_lib.which_set(speaker, 10.0, 10.0)].append(relpath)
    for name, seconds in NOISES.items():
      _add_bytes(tar, f"_background_noise_/{name}",
                 _wav_bytes(shared / "background_noise" / name, seconds))
    for split, name in (("validation", "validation_list.txt"), ("test", "testing_list.txt")):
      _add_bytes(tar, name, "".join(p + "\n" for p in members[split]).encode())
    _add_bytes(tar, "LICENSE", b"CC BY 4.0\n")
  test_clips = []
  with tarfile.open(out / TEST, "w:gz") as tar:
    for label in speech_commands.LABEL_NAMES:
      for path in sorted((canonical / label).glob("*.wav"))[:4]:
        tar.add(str(path), f"{label}/{path.name}")
        test_clips.append(label)
  return {**members, "test_archive": test_clips}


@pytest.fixture(scope="module")
def archives(shared_data, tmp_path_factory):
  out = tmp_path_factory.mktemp("manual")
  return out, build_archives(shared_data, out)


@needs_tfds_extra
def test_tfds_takes_manual_dir_archives_only_with_the_official_checksums(archives, tmp_path):
  """What tfds 4.9.10 does: it finds the files by name, hashes them, refuses a mismatch."""
  manual, _ = archives
  builder = tfds.builder("speech_commands", data_dir=str(tmp_path / "tfds"))
  registered = {info.filename: info for info in builder.url_infos.values()}
  assert registered[MAIN].size == 2428923189  # Google's 2.4 GB archive, nothing else
  with pytest.raises(download_manager.NonMatchingChecksumError, match="has wrong checksum") as info:
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
  assert str(manual) in str(info.value)  # read from manual_dir: no download was tried
  assert registered[MAIN].checksum in str(info.value) or registered[TEST].checksum in str(
      info.value)
  # kws_jax's message: one line saying what to do instead.
  with pytest.raises(DataError) as ours:
    speech_commands.load(str(tmp_path / "tfds"), manual_dir=str(manual))
  message = str(ours.value)
  assert "\n" not in message and "is not Google's official archive" in message
  assert message.startswith(f"data.manual_dir={manual}: speech_commands_")
  assert "--config.data.source=folder" in message


@needs_tfds_extra
def test_tfds_manual_dir_route_reads_archives_in_the_official_layout(archives, tmp_path,
                                                                     monkeypatch):
  """The official-archive route through tfds' real builder, its checksums swapped for ours.

  Google's files cannot be here (2.4 GB, no internet); with their checksums registered
  in place of the official ones, everything else is what a user with the real archives
  runs: tfds reads both archives from manual_dir and builds its three splits.
  """
  manual, members = archives
  builder_cls = tfds.builder_cls("speech_commands")
  ours = {url: tfds.core.download.checksums.compute_url_info(manual / info.filename)
          for url, info in builder_cls.url_infos.items()}
  monkeypatch.setattr(builder_cls, "url_infos", ours)
  data = speech_commands.load(str(tmp_path / "tfds"), manual_dir=str(manual))
  names = data.label_names
  windows = {name: len(range(0, int(s * 16000) - 16000, 8000)) for name, s in NOISES.items()}
  train, validation, test = (data.splits[s] for s in ("train", "validation", "test"))
  # tfds cuts each background recording into 1 s silence clips every 0.5 s; running_tap
  # goes to validation, as in tfds' builder.
  assert len(train) == len(members["train"]) + windows["white_noise.wav"]
  assert len(validation) == len(members["validation"]) + windows["running_tap.wav"]
  assert sorted(names[i] for i in test.labels) == sorted(members["test_archive"])
  expected = sorted(p.split("/")[0] if p.split("/")[0] in speech_commands.KEYWORDS else
                    "_unknown_" for p in members["train"])
  assert sorted(names[i] for i in train.labels if i != 0) == expected
  assert int(np.sum(train.labels == 0)) == windows["white_noise.wav"]
  assert train.audio.shape[1] == 16000 and train.audio.dtype == np.int16


def test_extracted_archives_train_end_to_end_with_the_folder_source(archives, tmp_path):
  """README's offline route for archives tfds refuses: tar xzf, then source='folder'."""
  manual, members = archives
  root = tmp_path / "speech_commands"
  for name, sub in ((MAIN, "train"), (TEST, "test")):
    (root / sub).mkdir(parents=True)
    subprocess.run(["tar", "xzf", str(manual / name), "-C", str(root / sub)], check=True)
  workdir = tmp_path / "work"
  # README runs experiments/custom_words.py; the tiny recipe (0.25 s clips, a small conv
  # net, one epoch) keeps the test short, with the same data flags.
  experiment = tiny_training.write_experiment(tmp_path / "tiny.py", "", tmp_path / "cache",
                                              **TINY_TRAIN)
  command = [sys.executable, "-m", "kws_jax.train", str(experiment), "--workdir", str(workdir),
             f"--config.data.data_dir={root / 'train'}", f"--config.data.test_dir={root / 'test'}",
             f"--config.data.wanted_words={config_default.DEFAULT_WANTED_WORDS}"]
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  results = json.loads((workdir / "results.json").read_text())
  assert results["num_examples"] == len(members["test_archive"])  # the test archive, whole
  assert (workdir / "labels.txt").read_text().split() == speech_commands.LABEL_NAMES
  cfg = config_default.data_config()
  # The training run's folder options, so its prepared cache is read back.
  cfg.update(source="folder", data_dir=str(root / "train"), test_dir=str(root / "test"),
             cache_dir=str(tmp_path / "cache"), clip_duration_ms=tiny_training.CLIP_MS,
             validation_percentage=20.0, testing_percentage=20.0)
  ds = pipeline.load_dataset(cfg, 0)
  # The archive's own lists decide the splits, as in tfds.
  assert len(ds.train) == len(members["train"])
  assert ds.background is not None and ds.background.shape[1] == 2 * 16000
