"""User-facing errors and the one-line CLI error convention.

Every command-line entry point runs through `run_cli`: a `KwsError` (bad input,
bad config, missing files) prints one line `error: ...` to stderr and exits 2,
with no traceback unless `--verbose` is on the command line; warnings print as one
line `warning: ...` (Python's source file and code line only with `--verbose`).
"""

from __future__ import annotations

import sys
import warnings
from typing import Callable, Sequence

VERBOSE_HELP = "on an error, show the full Python traceback (and warnings' source lines)"


def add_verbose_flag(parser) -> None:
  """Lists `--verbose` in an argparse parser's --help; run_cli takes it off argv before
  parsing, so the parser itself never sees it."""
  parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)


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
  shown = warnings.showwarning
  if not verbose:
    warnings.showwarning = _one_line_warning
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
  finally:
    warnings.showwarning = shown
  sys.exit(code or 0)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
  text = str(message).strip().replace("\n", " ")
  kind = "" if issubclass(category, UserWarning) else f"{category.__name__}: "
  print(f"warning: {kind}{text}", file=file or sys.stderr)

