"""Streaming evaluation on long audio: `python -m kws_jax.stream {make-test,eval,listen}`.

- `make-test` writes a long WAV and its `label, time_ms` ground truth from a Speech Commands-layout
  folder's test speakers (TF generate_streaming_test_wav semantics, see kws_jax.streameval.keyword_stream).
- `eval` runs the streaming step hop by hop over the file, either the JAX step of a training
  workdir or an IREE-compiled module (same code above the step), smooths the posteriors with TF's
  RecognizeCommands and reports TF's matched/correct/wrong/false-positive percentages, false
  rejects at 0.5 and 1 false accepts per hour, a DET curve PNG and the real-time factor.
- `listen` prints detections live from the microphone (sounddevice) or from a WAV in real time.

`--reset` chooses what happens to the recurrent state between words: `never` (a true stream),
`clip` (oracle: reset at each ground-truth word, like ELL's --reset) or `vad` (the VAD of
kws_jax/ops resets it once the voice has been off for `reset_delay_ms`, ELL's add_vad;
`--vad-option KEY=VALUE` tunes it: do that on a `make-test --split validation` stream).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Sequence

from kws_jax.configs.default import DEFAULT_WANTED_WORDS
from kws_jax.errors import ConfigError, add_verbose_flag, run_cli
from kws_jax.streameval.settings import (
  DEFAULT_MINUTES,
  RESET_MODES,
  VAD_OPTION_HELP,
  SmoothingSettings,
  StreamTestConfig,
)


def _add_source(p: argparse.ArgumentParser) -> None:
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument("--workdir", help="training workdir: runs the JAX streaming step")
  src.add_argument("--module", help="compiled host-cpu dir (or its .vmfb) from kws_jax.compile, "
                   "or a firmware dir (--firmware), run under QEMU")
  p.add_argument("--reset", default="never",
                 help="recurrent state between words: never | clip (oracle: at each labelled "
                      "word) | vad (default: %(default)s)")
  p.add_argument("--threshold", type=float, default=SmoothingSettings.detection_threshold,
                 help="smoothed score a keyword must pass to be detected (default: %(default)s, "
                      "TF's test_streaming_accuracy)")
  p.add_argument("--average-window-ms", type=float, default=SmoothingSettings.average_window_ms,
                 help="scores are averaged over this window before the threshold "
                      "(default: %(default)s)")
  p.add_argument("--suppression-ms", type=float, default=SmoothingSettings.suppression_ms,
                 help="after a detection, the same word is not reported again for this long "
                      "(default: %(default)s)")
  p.add_argument("--minimum-count", type=int, default=SmoothingSettings.minimum_count,
                 help="fewest scores in the window for a decision (default: %(default)s)")
  p.add_argument("--time-tolerance-ms", type=float, default=SmoothingSettings.time_tolerance_ms,
                 help="a detection this close to a labelled word matches it "
                      "(default: %(default)s)")
  p.add_argument("--vad-option", action="append", default=[], metavar="KEY=VALUE",
                 help="with --workdir --reset vad: " + VAD_OPTION_HELP)
  add_verbose_flag(p)


def _runner(args):
  from kws_jax.deploy import streaming_step
  from kws_jax.streameval import runners

  vad_options = streaming_step.parse_vad_options(args.vad_option)
  if vad_options and args.reset != "vad":
    raise ConfigError("--vad-option needs --reset vad")
  if args.workdir:
    return runners.jax_runner(args.workdir, args.reset, vad_options)
  if vad_options:
    raise ConfigError("--vad-option works with --workdir; a compiled module keeps the VAD "
                      "settings it was exported with (python -m kws_jax.export --vad-option ...)")
  module = args.module
  if module.endswith(".vmfb"):
    module = os.path.dirname(module) or "."
  return runners.iree_runner(module, args.reset)


def default_det_png(wav: str, kind: str, reset: str) -> str:
  """Beside the WAV, named by runner kind and reset: a JAX and an IREE run of the same stream
  keep one curve each."""
  return os.path.splitext(wav)[0] + f"_det_{kind}_{reset}.png"


def _model_name(runner) -> str:
  """The model's name from the step's description (JAX: info; IREE: the export's meta.json)."""
  info = getattr(runner.step, "info", None) or getattr(runner.step, "meta", None) or {}
  model = info.get("model")
  return str(model.get("name", "model")) if isinstance(model, dict) else "model"


def _settings(args) -> SmoothingSettings:
  return SmoothingSettings(args.average_window_ms, args.threshold, args.suppression_ms,
                           args.minimum_count, args.time_tolerance_ms)


def _add_negative_options(mk: argparse.ArgumentParser) -> None:
  mk.add_argument("--negative-hours", type=float, default=0.0,
                  help="append this much keyword-free audio (writes <out>_manifest.json)")
  mk.add_argument("--positive-snr-db", type=float, default=None,
                  help="keywords at full volume over synthetic speech + noise at this SNR")
  mk.add_argument("--negative-words-dir", action="append", default=[],
                  help="more folders whose non-keyword words of the split's speakers join the "
                  "negatives (e.g. ../shared/data/sc_v1_extra); repeatable")
  mk.add_argument("--workers", type=int, default=2, help="speech synthesis processes")


def build_parser() -> argparse.ArgumentParser:
  """The `make-test`, `eval` and `listen` sub-commands and their options."""
  parser = argparse.ArgumentParser(prog="python -m kws_jax.stream", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True)
  mk = sub.add_parser("make-test", help="long test WAV + labels from a folder's test speakers")
  mk.add_argument("--data-dir", required=True,
                  help="Speech Commands-layout folder whose clips are spoken in the stream, e.g. "
                       "../shared/data/sc_v2_test12_dev")
  mk.add_argument("--minutes", type=float, default=DEFAULT_MINUTES,
                  help="length of the stream (default: %(default)s, TF's streaming test)")
  mk.add_argument("--out", required=True, help="output WAV (labels go to <out>_labels.txt)")
  mk.add_argument("--labels", help="labels file (default: <out>_labels.txt)")
  mk.add_argument("--split", default="test",
                  help="test (the folder's test speakers), validation (to tune on) or all")
  mk.add_argument("--background-dir", default="",
                  help="noise recordings mixed under the words (default: the folder's "
                       "_background_noise_)")
  mk.add_argument("--background-volume", type=float,
                  default=StreamTestConfig.background_volume,
                  help="noise amplitude (default: %(default)s)")
  mk.add_argument("--unknown-percentage", type=float,
                  default=StreamTestConfig.unknown_percentage,
                  help="share of non-keyword words (default: %(default)s)")
  mk.add_argument("--word-gap-ms", type=int, default=StreamTestConfig.word_gap_ms,
                  help="mean gap between words (default: %(default)s)")
  mk.add_argument("--wanted-words", default=DEFAULT_WANTED_WORDS,
                  help="the keywords (default: %(default)s)")
  mk.add_argument("--split-salt", default="",
                  help="speaker split salt of the training run (sc12_real: sc12)")
  mk.add_argument("--validation-percentage", type=float, default=10.0,
                  help="of the training run (default: %(default)s)")
  mk.add_argument("--testing-percentage", type=float, default=10.0,
                  help="of the training run (default: %(default)s; sc12_real: 15)")
  mk.add_argument("--seed", type=int, default=StreamTestConfig.seed,
                  help="word order and placement (default: %(default)s)")
  _add_negative_options(mk)
  add_verbose_flag(mk)

  ev = sub.add_parser("eval", help="streaming accuracy, FRR at FA/h, DET curve, real-time factor")
  _add_source(ev)
  ev.add_argument("--wav", required=True, help="long test WAV (from make-test)")
  ev.add_argument("--labels", help="ground truth (default: <wav>_labels.txt)")
  ev.add_argument("--det-png",
                  help="DET curve PNG (default: beside the WAV, <wav>_det_<jax|iree>_<reset>.png)")
  ev.add_argument("--out", help="write the full result JSON here")
  ev.add_argument("--json", action="store_true", help="last stdout line: the result as JSON")
  ev.add_argument("--manifest", help="negative parts (default: <wav>_manifest.json if present)")
  ev.add_argument("--fa-per-hour-target", type=float, default=None,
                  help="print the threshold to ship for this many false accepts per hour "
                  "(export --detection-threshold takes it)")

  li = sub.add_parser("listen", help="live detections from the microphone or a WAV")
  _add_source(li)
  li.add_argument("--wav", help="play this file in real time instead of the microphone")
  li.add_argument("--seconds", type=float, default=60.0,
                  help="how long to listen to the microphone (default: %(default)s)")
  li.add_argument("--fast", action="store_true", help="with --wav: do not wait for real time")
  add_verbose_flag(parser)
  return parser


def main(argv: Sequence[str]) -> int:
  args = build_parser().parse_args(argv)
  # Imported after parsing: `--help` does not import JAX.
  from kws_jax.streameval import detection as dm
  from kws_jax.streameval import false_accepts, keyword_stream, listen, negatives, scoring

  if args.command == "make-test":
    wav, labels, n = keyword_stream.make_test(
                               args.data_dir, args.out, args.labels, minutes=args.minutes,
                               split=args.split, background_dir=args.background_dir,
                               background_volume=args.background_volume,
                               unknown_percentage=args.unknown_percentage,
                               word_gap_ms=args.word_gap_ms, wanted_words=args.wanted_words,
                               split_salt=args.split_salt,
                               validation_percentage=args.validation_percentage,
                               testing_percentage=args.testing_percentage, seed=args.seed,
                               negative_hours=args.negative_hours,
                               positive_snr_db=args.positive_snr_db,
                               negative_words_dirs=args.negative_words_dir,
                               workers=args.workers, progress=True)
    extra = f" + {args.negative_hours:g} h of negatives" if args.negative_hours else ""
    print(f"wrote {wav} ({args.minutes:g} min, {n} words{extra}) and {labels}")
    return 0
  if args.reset not in RESET_MODES:
    raise ConfigError(f"--reset {args.reset!r}: choose one of {', '.join(RESET_MODES)}")
  if args.command == "eval":  # A missing ground truth fails before the model is loaded.
    dm.read_labels(args.labels or keyword_stream.default_labels_path(args.wav))
  runner = _runner(args)
  if args.command == "listen":
    listen.listen(runner, _settings(args), args.wav, args.seconds, realtime=not args.fast)
    return 0
  labels = args.labels or keyword_stream.default_labels_path(args.wav)
  kind = "jax" if args.workdir else "iree"
  det_png = args.det_png or default_det_png(args.wav, kind, args.reset)
  replaced = os.path.exists(det_png)
  title = f"{_model_name(runner)} ({kind}: {args.workdir or args.module}), reset={args.reset}"
  manifest_path = args.manifest or keyword_stream.default_manifest_path(args.wav)
  manifest = negatives.read_manifest(manifest_path) if (
      args.manifest or os.path.exists(manifest_path)) else None
  result = scoring.run_eval(runner, args.wav, labels, args.reset, _settings(args), det_png,
                            det_title=title, manifest=manifest,
                            fa_target=args.fa_per_hour_target)
  print(result["summary"])
  print(false_accepts.summary(result) + f"  (DET curve: {det_png}"
        f"{', replacing the earlier one' if replaced else ''})")
  print(f"real-time factor {result['real_time_factor']:.0f} ({result['audio_seconds']:.0f} s of "
        f"audio in {result['step_seconds']:.2f} s, reset={args.reset})")
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=1)
  if args.json:
    print(json.dumps({k: v for k, v in result.items() if k != "det_curve"}))
  return 0


if __name__ == "__main__":
  run_cli(main)
