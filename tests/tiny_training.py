"""A tiny generated Speech Commands-layout folder and a fast config for training tests.

Each word is a tone at its own pitch (a little higher per speaker), so a small
model learns it in a few steps; clips are 0.25 s to keep featurizing cheap.
"""

from __future__ import annotations

import pathlib
import textwrap

import ml_collections
import numpy as np

from kws_jax import audio as audio_io
from kws_jax.configs import default as config_default

SAMPLE_RATE = 16000
CLIP_MS = 250
WORD_PITCH = {"yes": 440.0, "no": 700.0, "cat": 1000.0, "dog": 1300.0}
WANTED = "yes,no"


def tone(pitch: float, rng: np.random.Generator, num_samples: int) -> np.ndarray:
  t = np.arange(num_samples) / SAMPLE_RATE
  return (0.3 * np.sin(2 * np.pi * pitch * t) * np.hanning(num_samples)
          + 0.01 * rng.standard_normal(num_samples)).astype(np.float32)


def make_folder(root: pathlib.Path, *, speakers: int = 20, clips: int = 2, seed: int = 0,
                canonical: bool = False) -> pathlib.Path:
  """Word folders of `<speaker>_nohash_<n>.wav` tones plus `_background_noise_`.

  canonical=True writes the canonical test-set layout instead: `_silence_` and
  `_unknown_` folders (unknown clips named `<word>_<speaker>_nohash_<n>.wav`).
  """
  rng = np.random.default_rng(seed)
  num_samples = SAMPLE_RATE * CLIP_MS // 1000
  for word, pitch in WORD_PITCH.items():
    wanted = word in WANTED.split(",")
    for s in range(speakers):
      for k in range(clips):
        x = tone(pitch * (1 + 0.02 * s), rng, num_samples)
        if canonical and not wanted:
          path = root / "_unknown_" / f"{word}_{s + 1000:08x}_nohash_{k}.wav"
        else:
          path = root / word / f"{s + 1000:08x}_nohash_{k}.wav"
        audio_io.write_wav(path, x)
  if canonical:
    for k in range(speakers // 2):
      audio_io.write_wav(root / "_silence_" / f"silence_{k}.wav",
                         0.01 * rng.standard_normal(num_samples))
  else:
    audio_io.write_wav(root / "_background_noise_" / "white_noise.wav",
                       0.1 * rng.standard_normal(SAMPLE_RATE * 3))
  return root


def tiny_config(data_dir: pathlib.Path, cache_dir: pathlib.Path,
                **train: object) -> ml_collections.ConfigDict:
  """2 epochs of a tiny conv net, chunks of 2 steps, a checkpoint every 2 steps."""

  c = ml_collections.ConfigDict()
  c.seed = 0
  c.data = config_default.data_config()
  c.data.update(dict(source="folder", data_dir=str(data_dir), cache_dir=str(cache_dir),
                     wanted_words=WANTED, clip_duration_ms=CLIP_MS, time_shift_ms=20.0,
                     validation_percentage=20.0, testing_percentage=20.0))
  c.features = ml_collections.ConfigDict(dict(preset="tf_speech_commands"))
  c.model = ml_collections.ConfigDict(dict(name="tf_tiny_conv", dropout_rate=0.1))
  c.train = config_default.train_config()
  c.train.update(dict(epochs=2, batch_size=8, eval_batch_size=16, steps_per_call=2,
                      checkpoint_every_steps=2, keep_checkpoints=20, learning_rate=3e-3,
                      spec_augment=dict(time_masks=1, time_mask_max=3, freq_masks=1,
                                        freq_mask_max=3)))
  c.train.update(train)
  return c


def write_experiment(path: pathlib.Path, data_dir: pathlib.Path, cache_dir: pathlib.Path,
                     **train: object) -> pathlib.Path:
  """An experiment file for the CLI that returns `tiny_config(...)`."""
  path.write_text(textwrap.dedent(f"""\
      import sys
      sys.path.insert(0, {str(pathlib.Path(__file__).parent)!r})
      import tiny_training

      def get_config():
        return tiny_training.tiny_config({str(data_dir)!r}, {str(cache_dir)!r}, **{train!r})
      """))
  return path


def untrained_workdir(workdir: pathlib.Path, data_dir: pathlib.Path, cache_dir: pathlib.Path,
                      **model: object) -> pathlib.Path:
  """A workdir as training leaves it (config.json, labels.txt, a `best` checkpoint) holding the
  tiny config's model with its initial weights: for tests of later stages that need no
  accuracy, in a second instead of a training run. `model` replaces the model section."""
  import jax
  import orbax.checkpoint as ocp

  from kws_jax.configs import loader as config_loader
  from kws_jax.models import builder
  from kws_jax.runs import checkpoints

  config = tiny_config(data_dir, cache_dir)
  if model:
    config.model = ml_collections.ConfigDict(model)
  labels = ["_silence_", "_unknown_", *WANTED.split(",")]
  clip_samples = SAMPLE_RATE * CLIP_MS // 1000
  _, model, num_frames, num_features = builder.build(config, len(labels), clip_samples)
  variables = builder.init_variables(model, num_frames, num_features, jax.random.key(0))
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "config.json").write_text(config_loader.to_json(config))
  (workdir / "labels.txt").write_text("".join(name + "\n" for name in labels))
  meta = dict(format=checkpoints.CHECKPOINT_FORMAT, label_names=labels,
              clip_samples=clip_samples, sample_rate=SAMPLE_RATE, num_frames=int(num_frames),
              num_features=int(num_features), progress=dict(step=0, epoch=0))
  manager = checkpoints.checkpoint_manager(workdir, checkpoints.BEST, max_to_keep=1)
  manager.save(0, args=ocp.args.Composite(model=ocp.args.StandardSave(dict(variables)),
                                          meta=ocp.args.JsonSave(meta)), force=True)
  manager.close()
  return workdir
