"""Experiment files and `--config.key=value` overrides: types, errors, shipped experiments."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import jax
import ml_collections
import pytest

from kws_jax import errors, models
from kws_jax.configs import loader as config_loader
from kws_jax.data import pipeline
from kws_jax.errors import ConfigError
from kws_jax.models import builder
from kws_jax.train import loop, optimizer

REPO = pathlib.Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((REPO / "experiments").glob("*.py"))
REAL_DATA = ("ell_gru128", "ell_lstm", "tf_conv", "tf_low_latency_conv", "torchaudio_cnn",
             "sc12_real", "sc12_embedding", "sc12_student", "sc12_streaming",
             "sc12_student_streaming", "few_shot")


def small_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      seed=0, train=dict(epochs=3, learning_rate=1e-3, nesterov=False, optimizer="adam",
                         piecewise_rates=(1e-3, 1e-4), spec_augment=dict(time_masks=0)),
      data=dict(wanted_words="yes,no", extra_dirs=["a"]), model=dict(name="dscnn", widths=None)))


def test_every_shipped_experiment_is_present_and_builds():
  names = {p.stem for p in EXPERIMENTS}
  assert {"quickstart", *REAL_DATA} <= names
  for path in EXPERIMENTS:
    config = config_loader.load_experiment(path)
    optimizer.validate_config(config)
    frontend, model, frames, features = builder.build(config, 12, 16000)
    shapes = jax.eval_shape(lambda k: builder.init_variables(model, frames, features, k),
                            jax.random.key(0))
    assert models.count_params(shapes["params"]) > 0, path.name


def test_experiment_recipes_match_their_sources():
  load = lambda name: config_loader.load_experiment(REPO / "experiments" / f"{name}.py")
  quick = load("quickstart")
  assert (quick.data.source, quick.model.name, tuple(quick.data.synthetic.engines)) == (
      "synthetic", "speech_embedding", ("espeak", "flite", "piper"))
  assert load("quickstart_dscnn").model.name == "dscnn"
  ell = load("ell_gru128")
  assert (ell.model.name, ell.model.hidden_size, ell.model.num_layers) == ("gru", 128, 2)
  assert (ell.features.preset, ell.train.optimizer, ell.train.learning_rate,
          ell.train.weight_decay, ell.train.batch_size, ell.train.epochs) == (
              "ell", "rmsprop", 1e-3, 1e-5, 128, 30)
  torch = load("torchaudio_cnn")
  assert (torch.train.optimizer, torch.train.learning_rate, torch.train.momentum,
          torch.train.schedule, torch.train.step_size_epochs, torch.train.step_gamma) == (
              "sgd", 0.1, 0.5, "step", 5, 0.25)
  assert torch.train.spec_augment.time_masks > 0
  for name in ("tf_conv", "tf_low_latency_conv"):
    c = load(name)
    assert c.train.optimizer == "adam" and c.train.schedule == "piecewise"
    assert tuple(c.train.piecewise_rates) == (1e-3, 1e-4)
  # The strong real-speech recipe and the distilled student fit the 100 k parameter budget.
  for name in ("sc12_real", "sc12_student", "sc12_student_streaming"):
    _, model, frames, features = builder.build(load(name), 12, 16000)
    shapes = jax.eval_shape(lambda k: builder.init_variables(model, frames, features, k),
                            jax.random.key(0))
    assert models.count_params(shapes["params"]) <= 100_000, name
  student = load("sc12_student")
  assert student.distill.teacher and 0 < student.distill.weight < 1
  assert student.model.to_dict() == load("sc12_real").model.to_dict()
  streaming = load("sc12_student_streaming")
  assert streaming.model.to_dict() == {**load("sc12_streaming").model.to_dict(), "bn_momentum": 0.9}
  assert streaming.distill.to_dict() == student.distill.to_dict()
  assert streaming.train.epochs == 40


@pytest.mark.parametrize("name", REAL_DATA)
def test_real_data_experiments_point_beside_the_checkout(name, monkeypatch):
  monkeypatch.delenv("KWS_SHARED_DATA", raising=False)
  c = config_loader.load_experiment(REPO / "experiments" / f"{name}.py")
  shared = REPO.parent / "shared" / "data"
  assert pathlib.Path(c.data.data_dir) == shared / "sc_v2_test12_dev"
  assert [pathlib.Path(p) for p in c.data.extra_dirs] == [shared / "sc_v1_extra"]
  assert pathlib.Path(c.data.background_dir) == shared / "background_noise"


def test_missing_real_data_is_a_data_error_naming_the_override(tmp_path):
  c = config_loader.load_experiment(REPO / "experiments" / "sc12_real.py")
  config_loader.apply_overrides(c, [("data.data_dir", str(tmp_path / "absent"))])
  with pytest.raises(errors.DataError, match=r"data\.data_dir=.*absent: no such folder.*"
                     r"--config\.data\.data_dir=PATH"):
    loop.train_and_evaluate(c, tmp_path / "work")
  assert not (tmp_path / "work").exists()


def test_overrides_are_parsed_to_the_existing_type():
  c = small_config()
  config_loader.apply_overrides(c, [
      ("train.epochs", "7"), ("train.learning_rate", "0.5"), ("train.nesterov", "true"),
      ("train.optimizer", "sgd"), ("train.piecewise_rates", "(0.1, 1)"),
      ("train.spec_augment.time_masks", "2"), ("data.wanted_words", "up,down"),
      ("data.extra_dirs", "x,y"), ("model.widths", "(8, 16)"), ("seed", "3")])
  assert c.train.epochs == 7 and isinstance(c.train.epochs, int)
  assert c.train.learning_rate == 0.5 and isinstance(c.train.learning_rate, float)
  assert c.train.nesterov is True
  assert c.train.optimizer == "sgd"
  assert c.train.piecewise_rates == (0.1, 1.0)
  assert all(isinstance(v, float) for v in c.train.piecewise_rates)
  assert c.train.spec_augment.time_masks == 2
  assert c.data.wanted_words == "up,down"
  assert list(c.data.extra_dirs) == ["x", "y"]
  assert c.model.widths == (8, 16)  # None in the experiment: a Python literal
  assert c.seed == 3
  config_loader.apply_overrides(c, [("train.learning_rate", "3")])  # an int is a valid float
  assert c.train.learning_rate == 3.0 and isinstance(c.train.learning_rate, float)


@pytest.mark.parametrize("key,value,message", [
    ("train.epoch", "3", r"--config\.train\.epoch: unknown config key; did you mean "
                         r"--config\.train\.epochs\b"),
    ("trian.epochs", "3", r"unknown config key; did you mean --config\.train\.epochs"),
    ("train.epochs", "three", r"--config\.train\.epochs=three: expected an integer"),
    ("train.epochs", "2.5", r"expected an integer"),
    ("train.learning_rate", "fast", r"--config\.train\.learning_rate=fast: expected a number"),
    ("train.nesterov", "maybe", r"expected true or false"),
    ("train.piecewise_rates", "(a, b)", r"expected a list of float"),
    ("train.spec_augment", "3", r"is a section, not a value"),
    ("nothing_like_it", "1", r"--config\.nothing_like_it: unknown config key$"),
])
def test_bad_overrides_name_the_key(key, value, message):
  with pytest.raises(errors.ConfigError, match=message):
    config_loader.apply_overrides(small_config(), [(key, value)])


def test_split_overrides_accepts_both_spellings_and_rejects_a_missing_value():
  rest, overrides = config_loader.split_overrides(
      ["exp.py", "--config.train.epochs=2", "--workdir", "w", "--config.seed", "4"])
  assert rest == ["exp.py", "--workdir", "w"]
  assert overrides == [("train.epochs", "2"), ("seed", "4")]
  assert config_loader.split_overrides(["--config.data.wanted_words=a=b"])[1] == [
      ("data.wanted_words", "a=b")]
  with pytest.raises(errors.ConfigError, match=r"--config\.seed: missing value"):
    config_loader.split_overrides(["--config.seed", "--workdir", "w"])


def test_experiment_file_errors(tmp_path):
  with pytest.raises(errors.ConfigError, match=r"no such experiment file.*quickstart\.py"):
    config_loader.load_experiment(tmp_path / "nope.py")
  no_function = tmp_path / "no_function.py"
  no_function.write_text("x = 1\n")
  with pytest.raises(errors.ConfigError, match="must define get_config"):
    config_loader.load_experiment(no_function)
  broken = tmp_path / "broken.py"
  broken.write_text("def get_config(:\n")
  with pytest.raises(errors.ConfigError, match="cannot import the experiment file.*SyntaxError"):
    config_loader.load_experiment(broken)
  wrong_type = tmp_path / "wrong_type.py"
  wrong_type.write_text("def get_config():\n  return {'seed': 0}\n")
  with pytest.raises(errors.ConfigError, match="must return an ml_collections.ConfigDict"):
    config_loader.load_experiment(wrong_type)


def test_config_json_round_trip(tmp_path):
  c = config_loader.load_experiment(REPO / "experiments" / "sc12_real.py")
  path = tmp_path / "config.json"
  path.write_text(config_loader.to_json(c))
  again = config_loader.load_json(path)
  assert config_loader.to_dict(again) == config_loader.to_dict(c)
  assert tuple(again.train.spec_augment.keys()) == tuple(c.train.spec_augment.keys())
  with pytest.raises(errors.ConfigError, match="no config.json here"):
    config_loader.load_json(tmp_path / "missing.json")


def test_train_cli_reports_a_typo_in_one_line_with_exit_code_2(tmp_path):
  run = subprocess.run(
      [sys.executable, "-m", "kws_jax.train", "experiments/quickstart.py", "--workdir",
       str(tmp_path / "w"), "--config.train.epoch=3"],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert run.returncode == 2
  lines = run.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(
      "error: --config.train.epoch: unknown config key; did you mean --config.train.epochs,")
  assert not (tmp_path / "w").exists()


def test_custom_words_needs_the_users_folder_and_nothing_from_shared_data(tmp_path):
  c = config_loader.load_experiment(REPO / "experiments" / "custom_words.py")
  assert (c.data.source, c.data.extra_dirs, c.data.background_dir) == ("folder", [], "")
  with pytest.raises(ConfigError, match=r"--config.data.data_dir=PATH"):
    pipeline.load_dataset(c.data, 0)
  c = config_loader.apply_overrides(c, [("data.data_dir", str(tmp_path))])
  assert c.data.data_dir == str(tmp_path)
  assert c.model.name == config_loader.load_experiment(REPO / "experiments" / "few_shot.py").model.name
  assert (c.data.synthetic_mix, c.data.max_files_per_directory) == (1.0, 0)
