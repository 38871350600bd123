"""The bad-input matrix (README troubleshooting), end to end through the public CLIs and functions.

Each test feeds one kind of bad input to what a user runs (`python -m kws_jax.<cli>`
or its `main(argv)` through `errors.run_cli`, or the documented library call) and
checks the documented outcome: one `error: ...` line naming the file or key and
saying what to do, exit code 2 and no traceback; or the documented handling
(resampled, mixed down, skipped with a warning that counts them); and that nothing
the user has (their files, checkpoints, earlier exports) is lost on the way.
The table in README's troubleshooting section lists the same rows.

Interrupted training (SIGKILL then rerun) and the corrupt-latest-checkpoint
fallback are tested in tests/train/test_train.py; export/version mismatches of real
exports in tests/deploy/.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import types
import warnings

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from kws_jax import audio as audio_io
from kws_jax import errors
from kws_jax import features as features_cli
from kws_jax.configs import loader as config_loader
from kws_jax.data import pipeline
from kws_jax.deploy import stablehlo_export as export_lib
from kws_jax.ops import frontend
from kws_jax.runs import checkpoints, trained_model
from kws_jax.streameval import cli as stream_cli
from kws_jax.train import cli as train_cli

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import tiny_training  # noqa: E402

RATE = tiny_training.SAMPLE_RATE
CLIP = RATE * tiny_training.CLIP_MS // 1000
# Files that cannot be used at all: the folder pipeline skips and counts them.
UNUSABLE = {"corrupt", "empty", "cut_header", "cut_data", "nan", "inf"}
# Files that are converted or used as they are.
USABLE = {"rate8k": "resampled", "rate44k": "resampled", "stereo": "mixed",
          "pcm24": "as is", "float": "as is", "long10s": "trimmed"}


def write_bad_files(word_dir: pathlib.Path, rng: np.random.Generator) -> dict[str, pathlib.Path]:
  """One file per matrix row in `word_dir`, named `<row>_nohash_0.wav` (one speaker each)."""
  tone = tiny_training.tone(440.0, rng, CLIP)
  paths = {name: word_dir / f"{name}_nohash_0.wav" for name in UNUSABLE | set(USABLE)}
  reference = word_dir / "reference_nohash_0.wav"  # a good 16-bit file of the same tone
  audio_io.write_wav(reference, tone)
  whole = reference.read_bytes()
  paths["corrupt"].write_bytes(b"RIFF\x24\x00\x00\x00WAVEnot really a wave file" * 20)
  paths["empty"].write_bytes(b"")
  paths["cut_header"].write_bytes(whole[:30])          # download stopped inside the header
  paths["cut_data"].write_bytes(whole[:len(whole) // 2])  # ... or inside the samples
  for name, value in (("nan", np.nan), ("inf", np.inf)):
    poisoned = tone.copy()
    poisoned[CLIP // 2] = value
    sf.write(paths[name], poisoned, RATE, subtype="FLOAT")
  sf.write(paths["rate8k"], resample_poly(tone, 1, 2), 8000, subtype="PCM_16")
  sf.write(paths["rate44k"], resample_poly(tone, 441, 160), 44100, subtype="PCM_16")
  sf.write(paths["stereo"], np.stack([tone, 0.5 * tone], axis=1), RATE, subtype="PCM_16")
  sf.write(paths["pcm24"], tone, RATE, subtype="PCM_24")
  sf.write(paths["float"], tone, RATE, subtype="FLOAT")
  sf.write(paths["long10s"], np.tile(tone, 10 * RATE // CLIP), RATE, subtype="PCM_16")
  paths["reference"] = reference
  return paths


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
  """A tiny Speech Commands folder (tones) with every bad file of the matrix in `yes/`."""
  root = tmp_path_factory.mktemp("bad_input")
  data = tiny_training.make_folder(root / "data", speakers=10, clips=1)
  files = write_bad_files(data / "yes", np.random.default_rng(1))
  experiment = tiny_training.write_experiment(root / "tiny_experiment.py", data, root / "cache")
  return types.SimpleNamespace(root=root, data=data, cache=root / "cache", files=files,
                               experiment=experiment)


def data_config(bad, **updates) -> pipeline.ml_collections.ConfigDict:
  cfg = tiny_training.tiny_config(bad.data, bad.cache).data
  cfg.update(updates)
  return cfg


def run_main(main, argv, capsys) -> tuple[int, str, str]:
  """Runs a CLI's main(argv) in process exactly as `python -m` does (through run_cli)."""
  capsys.readouterr()
  with pytest.raises(SystemExit) as exited:
    errors.run_cli(main, [str(a) for a in argv])
  out, err = capsys.readouterr()
  return exited.value.code, out, err


def run_module(module: str, *argv, cwd: pathlib.Path) -> subprocess.CompletedProcess:
  """`python -m kws_jax.<module> ...` in a subprocess (the real exit code and stderr)."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  return subprocess.run([sys.executable, "-m", f"kws_jax.{module}", *map(str, argv)],
                        cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def the_error_line(code: int, err: str) -> str:
  """The one `error:` line of a failed CLI run: exit 2, no traceback, the last thing printed."""
  assert code == 2, err
  assert "Traceback" not in err, err
  lines = [line for line in err.splitlines() if line.startswith("error: ")]
  assert len(lines) == 1, err
  assert err.rstrip().splitlines()[-1] == lines[0], err
  return lines[0]


# ----------------------------------------------------------------------------- one file


@pytest.mark.parametrize("name, says", [
    ("corrupt", "not a readable audio file"),
    ("empty", "empty file (0 bytes)"),
    ("cut_header", "not a readable audio file"),
    ("nan", "contains NaN or infinite samples"),
    ("inf", "contains NaN or infinite samples"),
    ("rate8k", "sample rate is 8000 Hz, expected 16000 Hz (resample it"),
    ("rate44k", "sample rate is 44100 Hz, expected 16000 Hz (resample it"),
    ("stereo", "has 2 channels; kws_jax needs mono audio (mix it down"),
])
def test_features_cli_refuses_a_bad_file_in_one_line(bad, capsys, tmp_path, name, says):
  out = tmp_path / "features.npy"
  code, _, err = run_main(features_cli.main, ["--wav", bad.files[name], "--out", out], capsys)
  line = the_error_line(code, err)
  assert line.startswith(f"error: {bad.files[name]}: ")
  assert says in line
  assert not out.exists()


def test_features_cli_refuses_a_wav_cut_inside_its_samples(bad, capsys, tmp_path):
  out = tmp_path / "features.npy"
  code, _, err = run_main(features_cli.main, ["--wav", bad.files["cut_data"], "--out", out],
                          capsys)
  assert "truncated" in the_error_line(code, err)
  assert not out.exists()


def test_features_cli_reads_24_bit_float_and_long_files(bad, capsys, tmp_path):
  cfg = frontend.get_config("tf_speech_commands")
  feats = {}
  for name in ("reference", "pcm24", "float", "long10s"):
    out = tmp_path / f"{name}.npy"
    code, stdout, err = run_main(features_cli.main, ["--wav", bad.files[name], "--out", out],
                                 capsys)
    assert code == 0, err
    assert str(out) in stdout
    feats[name] = np.load(out)
  # Same tone at 16-bit, 24-bit and float resolution: the same features up to quantization.
  np.testing.assert_allclose(feats["pcm24"], feats["float"], atol=1e-3)
  np.testing.assert_allclose(feats["reference"], feats["float"], atol=0.05)
  long_samples = sf.info(str(bad.files["long10s"])).frames
  assert feats["long10s"].shape == (frontend.num_frames(cfg, long_samples), cfg.num_features)


def test_a_bad_file_exits_2_without_traceback_and_verbose_shows_it(bad, tmp_path):
  """The real `python -m` process: one line and exit 2; `--verbose` gives the traceback."""
  argv = ["--wav", bad.files["corrupt"], "--out", tmp_path / "f.npy"]
  quiet = run_module("features", *argv, cwd=tmp_path)
  assert the_error_line(quiet.returncode, quiet.stderr).startswith(f"error: {bad.files['corrupt']}")
  loud = run_module("features", *argv, "--verbose", cwd=tmp_path)
  assert loud.returncode != 0
  assert "Traceback" in loud.stderr and "AudioError" in loud.stderr


# ----------------------------------------------------------------------------- a folder


def test_folder_skips_bad_files_with_a_count_and_converts_the_rest(bad):
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    ds = pipeline.load_dataset(data_config(bad, rebalance_eval=False), seed=0)
  messages = [str(w.message) for w in caught]
  left_out = [m for m in messages if "unusable audio file" in m]
  assert len(left_out) == 1 and f"left out {len(UNUSABLE)} unusable" in left_out[0]
  assert str(bad.data) in left_out[0] and "on_bad_file='error'" in left_out[0]
  assert any("resampled 2 file(s)" in m for m in messages)
  assert any("mixed 1 multi-channel file(s)" in m for m in messages)
  assert ds.info["skipped_files"] == len(UNUSABLE)
  # Every usable clip is in: the generated tones plus the reference and converted files.
  splits = (ds.train, ds.validation, ds.test)
  words = len(tiny_training.WORD_PITCH)
  assert sum(len(s) for s in splits) == words * 10 + 1 + len(USABLE)
  yes = ds.label_names.index("yes")
  assert sum(int(np.sum(s.labels == yes)) for s in splits) == 10 + 1 + len(USABLE)
  assert all(s.audio.shape[1:] == (CLIP,) for s in splits)  # the 10 s file is trimmed


def test_folder_with_on_bad_file_error_names_the_file(bad):
  with pytest.raises(errors.DataError) as e:
    pipeline.load_dataset(data_config(bad, on_bad_file="error"), seed=0)
  message = str(e.value)
  assert "\n" not in message
  assert any(message.startswith(f"{bad.files[name]}: ") for name in UNUSABLE), message
  assert "on_bad_file='skip'" in message
  assert all(bad.files[name].exists() for name in UNUSABLE)  # the user's files are untouched


def test_folder_refuses_other_rates_and_stereo_when_asked(bad):
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    ds = pipeline.load_dataset(data_config(bad, resample=False, stereo="error",
                                           rebalance_eval=False), seed=0)
  assert ds.info["skipped_files"] == len(UNUSABLE) + 3
  left_out = [str(w.message) for w in caught if "unusable audio file" in str(w.message)]
  assert f"left out {len(UNUSABLE) + 3} unusable" in left_out[0]


# ----------------------------------------------------------------------------- train CLI


# The folder holds bad files on purpose; the folder tests above check its warnings.
expected_folder_warnings = pytest.mark.filterwarnings(
    "ignore:.*(unusable audio file|resampled|mixed).*:UserWarning")


def train_argv(bad, workdir: pathlib.Path, *overrides: str) -> list:
  return [bad.experiment, "--workdir", workdir, *overrides]


def test_train_folder_with_no_wavs(bad, capsys, tmp_path):
  empty = tmp_path / "recordings"
  (empty / "yes").mkdir(parents=True)
  (empty / "yes" / "notes.txt").write_text("the clips are on the other disk\n")
  code, _, err = run_main(train_cli.main, train_argv(
      bad, tmp_path / "run", f"--config.data.data_dir={empty}"), capsys)
  line = the_error_line(code, err)
  assert f"{empty}: no .wav/.flac files" in line and "<folder>/<word>/<clip>.wav" in line


@expected_folder_warnings
def test_train_unknown_wanted_word_then_the_fixed_command_runs_in_the_same_workdir(
    bad, capsys, tmp_path):
  workdir = tmp_path / "run"
  code, _, err = run_main(train_cli.main, train_argv(
      bad, workdir, "--config.data.wanted_words=yes,zebra"), capsys)
  line = the_error_line(code, err)
  assert "no training clips for wanted word(s) zebra" in line and "data.wanted_words" in line
  # Nothing was trained, so fixing the typo and rerunning with the same --workdir must work
  # (it stops here only at the next bad input, the missing test data, not at the workdir).
  code, _, err = run_main(train_cli.main, train_argv(
      bad, workdir, "--config.data.wanted_words=yes,no", "--config.data.test_dir=/nonexistent"),
      capsys)
  assert "different config" not in the_error_line(code, err)


def test_train_missing_shared_data_path_in_a_real_process(bad, tmp_path):
  missing = "../shared/data/speech_commands_v0.02"
  run = run_module("train", *train_argv(bad, tmp_path / "run", f"--config.data.data_dir={missing}"),
                   cwd=tmp_path)
  line = the_error_line(run.returncode, run.stderr)
  assert f"data.data_dir={missing}: no such folder" in line
  assert "../shared/data" in line and "--config.data.data_dir=PATH" in line
  assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.parametrize("override, says", [
    ("--config.train.epoch=3", "--config.train.epoch: unknown config key; did you mean "
                               "--config.train.epochs"),
    ("--config.trian.epochs=3", "--config.trian.epochs: unknown config key; did you mean "
                                "--config.train.epochs"),
    ("--config.train.epochs=five", "--config.train.epochs=five: expected an integer"),
    ("--config.train.learning_rate=fast", "--config.train.learning_rate=fast: expected a number"),
    ("--config.train.check_nans=maybe", "--config.train.check_nans=maybe: expected true or false"),
    ("--config.train=3", "--config.train: is a section, not a value"),
    ("--config.train.epochs", "--config.train.epochs: missing value"),
])
def test_train_bad_override_names_the_key(bad, capsys, tmp_path, override, says):
  code, _, err = run_main(train_cli.main, train_argv(bad, tmp_path / "run", override), capsys)
  assert says in the_error_line(code, err)
  assert not (tmp_path / "run").exists()


def test_train_missing_experiment_file(bad, capsys, tmp_path):
  code, _, err = run_main(train_cli.main, [tmp_path / "experiments" / "quikstart.py",
                                           "--workdir", tmp_path / "run"], capsys)
  line = the_error_line(code, err)
  assert f"{tmp_path / 'experiments' / 'quikstart.py'}: no such experiment file" in line


@pytest.mark.slow  # one real training run: ~1 min on 2 busy cores (compiling the train step)
@expected_folder_warnings
def test_nan_loss_stops_with_the_step_and_everything_before_it_is_usable(bad, capsys, tmp_path):
  """Through the train CLI: a clean first epoch, then a NaN loss at the first step of the second."""
  cfg = tiny_training.tiny_config(bad.data, bad.cache)
  ds = pipeline.load_dataset(cfg.data, int(cfg.seed))
  steps_per_epoch = len(pipeline.training_epoch(ds, cfg.data, 0, int(cfg.seed)).labels) // int(
      cfg.train.batch_size)
  nan_step = steps_per_epoch  # step indices count from 0
  workdir = tmp_path / "run"
  code, _, err = run_main(train_cli.main, train_argv(
      bad, workdir, f"--config.train.debug_inject_nan_at_step={nan_step}"), capsys)
  line = the_error_line(code, err)
  assert f"non-finite loss (nan) at step {nan_step} (epoch 2)" in line
  latest_dir = checkpoints.checkpoint_dir(workdir, checkpoints.LATEST)
  assert f"last good checkpoint: {latest_dir}/{steps_per_epoch}" in line
  assert "--config.train.learning_rate" in line
  # Nothing is lost: the epoch-1 weights load as best and latest, its metrics are on file.
  for which in (checkpoints.BEST, checkpoints.LATEST):
    assert trained_model.load(workdir, which).step == steps_per_epoch
  records = [json.loads(r) for r in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1]
  # The advice works: a lower learning rate is a new run (new workdir) that trains to the end.
  code, _, err = run_main(train_cli.main, train_argv(
      bad, tmp_path / "run_lower_rate", "--config.train.learning_rate=1e-3"), capsys)
  assert code == 0, err


# ----------------------------------------------------------------------------- workdirs, exports


def labels_file(tmp_path: pathlib.Path) -> pathlib.Path:
  path = tmp_path / "truth_labels.txt"
  path.write_text("yes, 1000\nno, 3000\n")
  return path


def started_workdir(tmp_path: pathlib.Path) -> pathlib.Path:
  """A workdir as a run leaves it when it stops before its first checkpoint."""
  workdir = tmp_path / "started"
  workdir.mkdir()
  (workdir / "config.json").write_text(config_loader.to_json(tiny_training.tiny_config(tmp_path,
                                                                                     tmp_path)))
  (workdir / "labels.txt").write_text("_silence_\n_unknown_\nyes\nno\n")
  return workdir


def test_no_checkpoint_in_workdir(capsys, tmp_path):
  code, _, err = run_main(export_lib.main, ["--workdir", tmp_path / "nothing",
                                            "--out", tmp_path / "export"], capsys)
  line = the_error_line(code, err)
  assert f"{tmp_path / 'nothing'}: no such workdir; train first" in line
  workdir = started_workdir(tmp_path)
  code, _, err = run_main(stream_cli.main, ["eval", "--workdir", workdir, "--wav", "x.wav",
                                            "--labels", labels_file(tmp_path)], capsys)
  line = the_error_line(code, err)
  assert f"{workdir}: no best checkpoint yet" in line and "train (or resume training) first" in line


def test_evaluate_on_a_workdir_without_checkpoint(bad, capsys, tmp_path):
  evaluate_cli = pytest.importorskip("kws_jax.evaluate")
  workdir = started_workdir(tmp_path)
  code, _, err = run_main(evaluate_cli.main, ["--workdir", workdir, "--data-dir", bad.data],
                          capsys)
  line = the_error_line(code, err)
  assert f"{workdir}: no best checkpoint yet" in line and "train (or resume training) first" in line


def test_stream_eval_missing_labels_file_fails_before_loading_the_model(bad, capsys, tmp_path):
  missing = tmp_path / "stream_labels.txt"
  code, _, err = run_main(stream_cli.main, ["eval", "--workdir", tmp_path / "no_run_yet",
                                            "--wav", bad.files["long10s"], "--labels", missing],
                          capsys)
  line = the_error_line(code, err)
  assert line == (f"error: {missing}: labels file not found "
                  "(make one with `python -m kws_jax.stream make-test`)")


@pytest.mark.parametrize("args,message", [
    (["--reset", "vad", "--vad-option", "reset_delay_ms"],
     "--vad-option 'reset_delay_ms': expected KEY=NUMBER, e.g. reset_delay_ms=300"),
    (["--reset", "vad", "--vad-option", "threshold_up=high"],
     "--vad-option 'threshold_up=high': expected KEY=NUMBER"),
    (["--reset", "never", "--vad-option", "reset_delay_ms=300"],
     "--vad-option needs --reset vad"),
])
def test_stream_eval_bad_vad_option(capsys, tmp_path, args, message):
  code, _, err = run_main(stream_cli.main, ["eval", "--workdir", tmp_path / "no_run_yet",
                                            "--wav", "x.wav", "--labels", labels_file(tmp_path),
                                            *args], capsys)
  assert message in the_error_line(code, err)


def test_export_never_overwrites_an_earlier_export(capsys, tmp_path):
  earlier = tmp_path / "export"
  earlier.mkdir()
  (earlier / "meta.json").write_text("{}")
  code, _, err = run_main(export_lib.main, ["--workdir", tmp_path / "run", "--out", earlier],
                          capsys)
  assert f"{earlier} exists and is not empty; pass --force" in the_error_line(code, err)
  assert (earlier / "meta.json").read_text() == "{}"


def test_export_dir_that_is_not_one_or_from_another_version(capsys, tmp_path):
  from kws_jax.deploy import iree_compile as compile_cli

  not_export = tmp_path / "checkpoints"
  not_export.mkdir()
  code, _, err = run_main(compile_cli.main, [not_export, "--target", "host-cpu",
                                             "--out", tmp_path / "compiled"], capsys)
  line = the_error_line(code, err)
  assert f"{not_export}: not a kws_jax export dir (no meta.json)" in line
  assert "python -m kws_jax.export" in line

  old = tmp_path / "old_export"
  old.mkdir()
  (old / "meta.json").write_text(json.dumps({"format": export_lib.EXPORT_FORMAT,
                                             "format_version": 0, "kws_jax_version": "0.0.1"}))
  with pytest.raises(errors.ExportError, match="exported by kws_jax 0.0.1 .*export it again"):
    export_lib.load_meta(old)
  code, _, err = run_main(stream_cli.main, ["eval", "--module", old, "--wav", "x.wav",
                                            "--labels", labels_file(tmp_path)], capsys)
  assert "export it again" in the_error_line(code, err)

  (old / "meta.json").write_text("{not json")
  with pytest.raises(errors.ExportError, match="meta.json: unreadable .*export again"):
    export_lib.load_meta(old)
