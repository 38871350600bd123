"""The CLI wrapper: one-line errors and warnings; --verbose brings the Python detail back."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]

PROGRAM = """
import sys, warnings
from kws_jax import errors

def main(argv):
  warnings.warn("DIR: left out 2 unusable audio file(s)", stacklevel=1)
  warnings.warn("an old API", FutureWarning, stacklevel=1)
  raise errors.DataError("DIR: broken")

errors.run_cli(main)
"""


def run(*argv: str) -> subprocess.CompletedProcess:
  env = {**os.environ, "PYTHONPATH": str(REPO)}
  return subprocess.run([sys.executable, "-c", PROGRAM, *argv], capture_output=True, text=True,
                        env=env, timeout=120)


def test_warnings_and_errors_print_as_one_line_each():
  done = run()
  assert done.returncode == 2
  assert done.stderr.splitlines() == ["warning: DIR: left out 2 unusable audio file(s)",
                                      "warning: FutureWarning: an old API",
                                      "error: DIR: broken"]


def test_verbose_keeps_pythons_warning_format_and_the_traceback():
  done = run("--verbose")
  assert done.returncode == 1
  assert "UserWarning: DIR: left out" in done.stderr and "Traceback" in done.stderr
