"""User-facing errors and the one-line CLI error convention.

Every command-line entry point runs through `run_cli`: a `KwsError` (bad input,
bad config, missing files) prints one line `error: ...` to stderr and exits 2,
with no traceback unless `--verbose` is on the command line.
"""

from __future__ import annotations

import sys
from typing import Callable, Sequence


class KwsError(Exception):
  """An error caused by the user's input; the message says what to do."""


class AudioError(KwsError):
  """A WAV/FLAC file that cannot be used (corrupt, empty, wrong rate, ...)."""


class ConfigError(KwsError):
  """An unknown config key, a wrong type in an override, a missing config file."""


class DataError(KwsError):
  """A dataset folder that cannot be used (missing, no audio, unknown labels)."""


class ExportError(KwsError):
  """An export directory or compiled module that does not match what is asked."""


class TrainingError(KwsError):
  """Training cannot go on (e.g. a non-finite loss)."""


def run_cli(main: Callable[[Sequence[str]], int | None],
            argv: Sequence[str] | None = None) -> None:
  """Runs `main(argv)` and turns user errors into one line and exit code 2."""
  argv = list(sys.argv[1:] if argv is None else argv)
  verbose = "--verbose" in argv
  if verbose:
    argv.remove("--verbose")
  try:
    code = main(argv)
  except KwsError as e:
    if verbose:
      raise
    message = str(e).strip().replace("\n", " ")
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)
  sys.exit(code or 0)
