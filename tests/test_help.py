"""Every command's --help lists --verbose and says what each option is and its default."""

from __future__ import annotations

import importlib

import pytest

from kws_jax import errors

COMMANDS = [
    ("kws_jax.train.cli", []), ("kws_jax.evaluation.folder_eval", []), ("kws_jax.features", []),
    ("kws_jax.deploy.stablehlo_export", []), ("kws_jax.deploy.iree_compile", []),
    ("kws_jax.deploy.int8_report", []), ("kws_jax.data.synth", []),
    ("kws_jax.streameval.cli", []), ("kws_jax.streameval.cli", ["make-test"]),
    ("kws_jax.streameval.cli", ["eval"]), ("kws_jax.streameval.cli", ["listen"]),
    ("kws_jax.bench.__main__", []), ("kws_jax.bench.__main__", ["baselines"]),
]


def help_text(module: str, argv: list[str], capsys) -> str:
  main = importlib.import_module(module).main
  capsys.readouterr()
  with pytest.raises(SystemExit) as exited:
    main([*argv, "--help"])
  assert exited.value.code == 0
  return " ".join(capsys.readouterr().out.split())  # argparse's line wrapping undone


@pytest.mark.parametrize("module, argv", COMMANDS, ids=[f"{m} {' '.join(a)}" for m, a in COMMANDS])
def test_every_help_lists_verbose(module, argv, capsys):
  assert f"--verbose {errors.VERBOSE_HELP}" in help_text(module, argv, capsys)


@pytest.mark.parametrize("module, argv, says", [
    ("kws_jax.streameval.cli", ["make-test"], "--data-dir DATA_DIR Speech Commands-layout folder"),
    ("kws_jax.streameval.cli", ["make-test"], "--minutes MINUTES length of the stream (default: 10.0"),
    ("kws_jax.streameval.cli", ["eval"], "--threshold THRESHOLD smoothed score a keyword must "
                                         "pass to be detected (default: 0.7"),
    ("kws_jax.streameval.cli", ["eval"], "--average-window-ms AVERAGE_WINDOW_MS scores are "
                                         "averaged over this window before the threshold "
                                         "(default: 500.0)"),
    ("kws_jax.streameval.cli", ["listen"], "--suppression-ms SUPPRESSION_MS after a detection, "
                                           "the same word is not reported again for this long "
                                           "(default: 1500.0)"),
    ("kws_jax.features", [], "(default: tf_speech_commands)"),
    ("kws_jax.train.cli", [], "--config-help print the experiment's config keys"),
    ("kws_jax.bench.__main__", [], "usage: python -m kws_jax.bench [baselines] [options]"),
    ("kws_jax.deploy.iree_compile", [], "usage: python -m kws_jax.compile EXPORT_DIR --target "
                                        "NAME --out OUT_DIR"),
    ("kws_jax.data.synth", [], "a folder holding anything else is refused"),
])
def test_help_says_what_options_do(module, argv, says, capsys):
  assert says in help_text(module, argv, capsys)


def test_config_help_lists_the_experiments_keys_with_overrides(repo_root, capsys):
  from kws_jax.train import cli
  experiment = str(repo_root / "experiments" / "quickstart.py")
  assert cli.main([experiment, "--config-help", "--config.train.epochs=3"]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert "--config.train.epochs=3" in lines and "--config.model.name=speech_embedding" in lines
  assert "--config.data.source=synthetic" in lines


def test_an_override_without_config_prefix_names_the_right_one(repo_root):
  from kws_jax.train import cli
  experiment = str(repo_root / "experiments" / "quickstart.py")
  with pytest.raises(errors.ConfigError, match=r"^--train.epochs=2: not an option; config "
                     r"overrides start with --config\. \(write --config\.train\.epochs=2;"):
    cli.main([experiment, "--workdir", "w", "--train.epochs=2"])
