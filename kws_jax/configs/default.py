"""Experiment defaults: the `data` and `train` sections every experiment starts from.

Jax-free on purpose (the flax/examples `configs/default.py` pattern): an experiment
file imports only this module and `ml_collections`, so reading or listing
experiments never pays for importing JAX, and the trainer's code is not a
dependency of a config.
"""

from __future__ import annotations

import os
import pathlib

import ml_collections

from kws_jax.configs import loader

# TF speech_commands' ten keywords: the 12-class task is these plus _silence_ and _unknown_.
KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
DEFAULT_WANTED_WORDS = ",".join(KEYWORDS)


def data_config() -> ml_collections.ConfigDict:
  """Every data option with its default (TF speech_commands defaults where TF has one)."""
  return ml_collections.ConfigDict({
      # "synthetic" (offline TTS set, generated on first use), "folder" (data_dir in Speech
      # Commands layout) or "speech_commands" (Google's set through tfds; needs TensorFlow).
      "source": "synthetic",
      "data_dir": "",  # folder for source="folder"; tfds data_dir for "speech_commands"
      "manual_dir": "",  # speech_commands: folder with the pre-downloaded .tar.gz archives
      "extra_dirs": [],  # more Speech Commands-layout folders merged into TRAINING only
      "test_dir": "",  # a folder used whole as the test split (e.g. sc_v2_test12_dev)
      "background_dir": "",  # noise recordings; "" = <data folder>/_background_noise_
      "cache_dir": "",  # prepared tfds folders; "" = $KWS_JAX_CACHE or ~/.cache/kws_jax
      "synthetic_dir": "",  # "" = <cache_dir>/synthetic-<generator version>-<engines>
      # kws_jax.data.synth.SynthParams: engines espeak (first: its held-out accents are the
      # validation/test voices), flite (Debian) and piper add speakers_per_engine training
      # speakers each.
      "synthetic": {"speakers_per_accent": 24, "unknown_words_per_speaker": 5, "seed": 0,
                    "workers": 2, "engines": ("espeak",), "speakers_per_engine": 144,
                    "hard_negatives_per_speaker": 0, "running_speech_per_speaker": 0},
      # source="folder"/"speech_commands": fraction (0-1) of the synthetic set's clips (all its
      # speakers, generated on first use like source="synthetic") merged into TRAINING.
      "synthetic_mix": 0.0,
      "wanted_words": DEFAULT_WANTED_WORDS,  # comma-separated; "all" keeps every word (ELL)
      "sample_rate": 16000,
      "clip_duration_ms": 1000,
      "silence_percentage": 10.0,
      "unknown_percentage": 10.0,
      "validation_percentage": 10.0,
      "testing_percentage": 10.0,
      "time_shift_ms": 100.0,
      # Random speed (tempo and pitch) change of up to this fraction, e.g. 0.15 plays clips
      # 0.87x-1.15x as fast (ops.augment.speed_perturb); 0 = off, as in TF.
      "speed_perturb": 0.0,
      "background_volume": 0.1,
      "background_frequency": 0.8,
      # "volume": TF's noise at an absolute volume up to background_volume (Speech Commands'
      # recordings are quiet: ~35 dB under the words); "snr": noise at an SNR uniform in
      # [background_snr_min_db, background_snr_max_db] dB of each clip (ops.augment).
      "background_mode": "volume",
      "background_snr_min_db": 0.0,
      "background_snr_max_db": 20.0,
      # Gain uniform in [gain_min_db, gain_max_db] dB on every clip after the noise mix
      # (ops.augment.random_gain: other microphone levels); 0, 0 = off, as in TF.
      "gain_min_db": 0.0,
      "gain_max_db": 0.0,
      "split_salt": "",  # "" = TF's speaker hash; other text re-draws the speaker split
      "rebalance_eval": True,
      "bad_list": "",  # ELL bad_list.txt (word/file.wav lines); "" = <folder>/bad_list.txt if any
      "max_files_per_directory": 0,  # ELL: cap on training files per word folder (0 = no cap)
      "on_bad_file": "skip",  # or "error"
      "resample": True,  # resample other sample rates (False: treat them as bad files)
      "stereo": "mix",  # "mix" multi-channel files down, or "error" (bad files)
  })


def train_config() -> ml_collections.ConfigDict:
  """The `train` section with every option; experiments update it."""
  c = ml_collections.ConfigDict()
  c.epochs = 10
  c.batch_size = 64
  c.eval_batch_size = 256
  # Data-parallel devices per process (0: all local devices); the batch sizes must split
  # evenly over all processes' devices. Changing it does not stop a run from resuming.
  c.num_devices = 0
  c.optimizer = "adam"            # one of OPTIMIZERS
  c.learning_rate = 1e-3          # peak/initial rate
  c.momentum = 0.9                # sgd, rmsprop (0: none)
  c.nesterov = False
  c.rmsprop_decay = 0.99          # PyTorch's RMSprop alpha
  c.adam_b1 = 0.9
  c.adam_b2 = 0.999
  c.eps = 1e-8
  c.weight_decay = 0.0            # L2 added to the gradient (PyTorch style); adamw: decoupled
  c.embedding_learning_rate = 0.0  # pretrained `embedding` params: 0 frozen, > 0 fine-tuned
  c.grad_clip_norm = 0.0          # 0: no clipping
  c.label_smoothing = 0.0
  c.schedule = "constant"         # one of SCHEDULES
  c.piecewise_epochs = (0.0,)     # piecewise: epochs where each rate starts (first must be 0)
  c.piecewise_rates = (1e-3,)     # piecewise: the rates
  c.step_size_epochs = 5          # step: multiply by gamma every step_size_epochs (StepLR)
  c.step_gamma = 0.25
  c.warmup_epochs = 0.0           # cosine: linear warmup
  c.final_rate_fraction = 0.0     # cosine: end rate / peak rate
  # mask_with: "zero" (TF/torchaudio: masked cells = 0, the mean of normalised features) or
  # "floor" (each example's lowest value: silence, for log-mel features like speech_embedding's).
  c.spec_augment = ml_collections.ConfigDict(
      dict(time_masks=0, time_mask_max=0, freq_masks=0, freq_mask_max=0, mask_with="zero"))
  c.steps_per_call = 8            # optimizer steps per jitted scan
  c.unroll_steps = False          # a Python loop instead of lax.scan (XLA:CPU convs in loops are slow)
  c.checkpoint_every_steps = 0    # 0: at the end of every epoch only
  c.keep_checkpoints = 2          # latest checkpoints kept (>= 2 so a bad one can fall back)
  c.check_nans = False            # op-level NaN checks (jax_debug_nans; slow), like TF --check_nans
  c.debug_inject_nan_at_step = -1 # testing the NaN guard: make the loss at this step NaN
  c.log_every_steps = 0           # train lines in metrics.jsonl; 0: one per chunk
  return c


def distill_config() -> ml_collections.ConfigDict:
  """The optional `distill` section (kws_jax.train.distill): a teacher workdir and the mix."""
  return ml_collections.ConfigDict(dict(
      teacher="",         # a trained kws_jax workdir; "" = no distillation
      weight=0.5,         # share of the soft-target term in the loss (0: labels only)
      temperature=2.0,    # softens both posteriors in the soft-target term
  ))


def shared_data_dir() -> pathlib.Path:
  """`<repo>/../shared/data` (or $KWS_SHARED_DATA): real Speech Commands clips beside a checkout."""
  default = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"
  return pathlib.Path(os.environ.get("KWS_SHARED_DATA", default))


def use_shared_speech_data(data: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Points a `data` section at ../shared/data's real speech, split by speaker.

  sc_v2_test12_dev (canonical 12-class layout) is split into train / validation /
  test by a salted speaker hash; sc_v1_extra only adds training clips (training drops
  those of validation/test speakers); background_noise is mixed in. Each path can
  be overridden (e.g. --config.data.data_dir=PATH); a missing one is a DataError.
  Another salt (e.g. --config.data.split_salt=sc12-fold2) draws another speaker-disjoint
  split: test speakers differ a lot in difficulty, so compare recipes over several.
  """
  root = shared_data_dir()
  data.update(dict(source="folder", data_dir=str(root / "sc_v2_test12_dev"),
                   extra_dirs=[str(root / "sc_v1_extra")],
                   background_dir=str(root / "background_noise"),
                   wanted_words=DEFAULT_WANTED_WORDS,
                   # TF's plain hash puts every speaker of sc_v2_test12_dev in its test band;
                   # a salt re-draws the speaker split by the percentages.
                   split_salt="sc12",
                   # ~170 speakers: a larger test share keeps its accuracy estimate usable.
                   validation_percentage=10.0, testing_percentage=15.0))
  return data


def derived_from(experiment_file: str | os.PathLike, base_name: str) -> ml_collections.ConfigDict:
  """The config of the experiment `base_name` beside `experiment_file` (e.g. sc12_real.py),
  for experiments that change a few keys of another."""
  return loader.load_experiment(pathlib.Path(experiment_file).with_name(base_name))
