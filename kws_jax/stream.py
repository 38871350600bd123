"""Streaming evaluation on long audio: `python -m kws_jax.stream {make-test,eval,listen}`.

- `make-test` writes a long WAV and its `label, time_ms` ground truth from a Speech Commands-layout
  folder's test speakers (TF generate_streaming_test_wav semantics, see kws_jax.stream_testset).
  `--negative-hours H` appends H hours of labelled keyword-free audio (kws_jax.streameval).
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
import dataclasses
import json
import os
import sys
import time
from typing import Any, Mapping, Sequence

import numpy as np

from kws_jax import audio as audio_lib
from kws_jax import detection_metrics as dm
from kws_jax import stream_testset
from kws_jax.errors import ConfigError, DataError, KwsError, run_cli

RESET_MODES = ("never", "clip", "vad")


# ----------------------------------------------------------------------------- make-test

def make_test(data_dir: str, out_wav: str, out_labels: str | None = None, *, minutes: float = 10.0,
              split: str = "test", background_dir: str = "", background_volume: float = 0.1,
              unknown_percentage: float = 30.0, word_gap_ms: int = 2000,
              wanted_words: str = "yes,no,up,down,left,right,on,off,stop,go",
              split_salt: str = "", validation_percentage: float = 10.0,
              testing_percentage: float = 10.0, seed: int = 0, negative_hours: float = 0.0,
              positive_snr_db: float | None = None, negative_words_dirs: Sequence[str] = (),
              workers: int = 2, progress: bool = False) -> tuple[str, str, int]:
  """Writes the long test WAV and labels; returns (wav, labels, number of words).

  The speaker split options must match the training run's (e.g. sc12_real's
  `split_salt="sc12"`, 15 % test) so that the stream holds only unseen speakers.
  `negative_hours` appends that much keyword-free audio and writes `<out>_manifest.json`
  (kws_jax.streameval.negatives); `positive_snr_db` lays speech and noise under the keywords.
  """
  from kws_jax.data import folder as folder_lib
  from kws_jax.data import pipeline
  from kws_jax.streameval import long_test, negatives

  options = folder_lib.FolderOptions(validation_percentage=validation_percentage,
                                     testing_percentage=testing_percentage, split_salt=split_salt)
  words = [w.strip() for w in wanted_words.split(",") if w.strip()]
  src = long_test.load_sources(data_dir, split, words, options,
                               pipeline.cache_dir(pipeline.default_config()), background_dir)
  config = stream_testset.StreamTestConfig(
      duration_s=60.0 * minutes, sample_rate=src.sample_rate,
      clip_duration_ms=int(1000 * src.clip_samples / src.sample_rate), word_gap_ms=word_gap_ms,
      unknown_percentage=unknown_percentage, background_volume=background_volume, seed=seed)
  background = None if positive_snr_db is not None else (src.background or None)
  long_audio, labels = stream_testset.make_stream(src.clips, src.keywords, background, config)
  out_labels = out_labels or default_labels_path(out_wav)
  dm.write_labels(out_labels, labels)
  if negative_hours > 0 or positive_snr_db is not None:
    neg = negatives.NegativeConfig(hours=negative_hours, sample_rate=src.sample_rate,
                                   workers=workers, seed=seed)
    negatives.write_long_test(out_wav, default_manifest_path(out_wav), long_audio, labels,
                              src.keywords, neg, src.background,
                              long_test.real_negative_words(src, negative_words_dirs, options),
                              positive_snr_db=positive_snr_db, progress=progress)
  else:
    audio_lib.write_wav(out_wav, long_audio, src.sample_rate)
  return out_wav, out_labels, len(labels)


def default_manifest_path(wav_path: str) -> str:
  return os.path.splitext(wav_path)[0] + "_manifest.json"


def default_labels_path(wav_path: str) -> str:
  root, _ = os.path.splitext(wav_path)
  return root + "_labels.txt"


# ----------------------------------------------------------------------------- posteriors

@dataclasses.dataclass
class Posteriors:
  scores: np.ndarray           # (hops, classes) softmax scores
  label_names: list[str]
  hop_ms: float
  seconds: float               # wall time spent running the step
  vad_active: np.ndarray | None = None
  window_ms: float = 0.0       # audio behind one decision (detections are dated from its start)


class _Runner:
  """Runs a streaming step over audio with resets; the JAX and IREE forms share this code."""

  # Fixed-size pieces: one compile serves every segment length (clip resets make hundreds).
  CHUNK_HOPS = 256

  def __init__(self, step: Any, label_names: Sequence[str], hop_size: int, sample_rate: int,
               window_ms: float = 1000.0):
    self.step = step
    self.label_names = list(label_names)
    self.hop_size = hop_size
    self.sample_rate = sample_rate
    self.window_ms = window_ms

  def _run_segment(self, audio: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs of `audio` from the initial state, in CHUNK_HOPS pieces (the last zero-padded)."""
    hops = audio.shape[0] // self.hop_size
    piece = self.CHUNK_HOPS * self.hop_size
    padded = np.zeros(-(-audio.shape[0] // piece) * piece, np.float32)
    padded[:audio.shape[0]] = audio
    state, outputs = None, []
    for start in range(0, padded.shape[0], piece):
      state, out = self.step.run(padded[start:start + piece], state)
      outputs.append({k: np.asarray(v) for k, v in out.items()})
    return {k: np.concatenate([o[k] for o in outputs])[:hops] for k in outputs[0]}

  def posteriors(self, audio: np.ndarray, reset_hops: Sequence[int] = ()) -> Posteriors:
    hops = audio.shape[0] // self.hop_size
    audio = audio[:hops * self.hop_size]
    bounds = sorted({0, hops, *[h for h in reset_hops if 0 < h < hops]})
    self.warm_up()
    start_time = time.perf_counter()
    scores, vad = [], []
    for a, b in zip(bounds[:-1], bounds[1:]):
      outputs = self._run_segment(audio[a * self.hop_size:b * self.hop_size])
      scores.append(np.asarray(outputs["scores"]))
      if "vad_active" in outputs:
        vad.append(np.asarray(outputs["vad_active"]))
    seconds = time.perf_counter() - start_time
    return Posteriors(np.concatenate(scores).reshape(hops, -1), self.label_names,
                      1000.0 * self.hop_size / self.sample_rate, seconds,
                      np.concatenate(vad).reshape(-1) if vad else None, self.window_ms)

  def warm_up(self) -> None:
    """Compiles before timing (JAX); a no-op cost for IREE."""
    self.step.run(np.zeros(self.hop_size * self.CHUNK_HOPS, np.float32))


def jax_runner(workdir: str, reset: str,
               vad_options: Mapping[str, float] | None = None) -> _Runner:
  from kws_jax import streaming, trained

  model = trained.load(workdir)
  step = streaming.make_step(model, vad=(reset == "vad"), smoothing=False,
                             vad_options=vad_options)
  return _Runner(step, step.label_names, step.hop_size, step.sample_rate,
                 float(step.info.get("window_ms", 1000.0)))


def iree_runner(module_dir: str, reset: str) -> _Runner:
  from kws_jax import iree_runner as runner_lib

  step = runner_lib.IreeStep(module_dir)
  has_vad = "vad_active" in step.output_names
  if (reset == "vad") != has_vad:
    raise ConfigError(f"{module_dir}: the module was exported {'with' if has_vad else 'without'} "
                      f"the VAD, which --reset {reset} {'does not want' if has_vad else 'needs'}; "
                      "export again with the matching `vad` setting")
  return _Runner(step, step.label_names, step.hop_size, int(step.meta["sample_rate"]),
                 float(step.meta.get("window_ms", 1000.0)))


# ----------------------------------------------------------------------------- detection

@dataclasses.dataclass
class SmoothingSettings:
  """TF RecognizeCommands defaults (test_streaming_accuracy)."""
  average_window_ms: float = 500.0
  detection_threshold: float = 0.7
  suppression_ms: float = 1500.0
  minimum_count: int = 3
  time_tolerance_ms: float = 750.0


def _smoothing_params(num_labels: int, hop_ms: float, settings: SmoothingSettings,
                      threshold: float):
  from kws_jax.ops import smoothing
  return smoothing.make_params(num_labels, hop_ms, average_window_ms=settings.average_window_ms,
                               detection_threshold=threshold,
                               suppression_ms=settings.suppression_ms,
                               minimum_count=settings.minimum_count)


def detections(post: Posteriors, settings: SmoothingSettings,
               thresholds: Sequence[float]) -> list[list[dm.Event]]:
  """Smoothed detections `(label, time_ms)` for each threshold, in one batched smoothing pass.

  The smoothing threshold is a static parameter, so the sweep runs RecognizeCommands with
  threshold 1 on posteriors divided by each threshold: the window means scale the same way, the
  top label is unchanged and `mean / t > 1` is exactly `mean > t`.
  """
  from kws_jax.streameval import long_audio

  params = _smoothing_params(len(post.label_names), post.hop_ms, settings, 1.0)
  return long_audio.smoothed_detections(post.scores, post.label_names, post.hop_ms,
                                        post.window_ms, params, thresholds, dm.SILENCE)


def evaluate_stream(post: Posteriors, truth: Sequence[dm.Event], settings: SmoothingSettings,
                    duration_s: float, det_png: str | None = None,
                    manifest: Mapping[str, Any] | None = None,
                    fa_target: float | None = None) -> dict[str, Any]:
  """TF's streaming accuracy and the wake-word figures of kws_jax.streameval.false_accepts
  (false accepts on the manifest's negative parts only, when a manifest is given)."""
  from kws_jax.streameval import false_accepts

  keywords = [w for w in post.label_names if not w.startswith("_")]
  # Dense near 1: hours of negatives reach 0.1 FA/h only at high thresholds.
  thresholds = np.unique(np.concatenate([np.linspace(0.05, 0.95, 19), np.linspace(0.5, 0.99, 50),
                                         1 - np.logspace(-1, -4, 13),
                                         [settings.detection_threshold]]))
  found = detections(post, settings, thresholds)
  at = int(np.argmin(np.abs(thresholds - settings.detection_threshold)))
  tf_stats = dm.streaming_accuracy(found[at], truth, settings.time_tolerance_ms)
  result = {
      "matched": tf_stats.matched, "correct": tf_stats.correct, "wrong": tf_stats.wrong,
      "false_positive": tf_stats.false_positive, "num_words": tf_stats.num_ground_truth,
      "detections": len(found[at]), "summary": tf_stats.summary(),
      **false_accepts.report(found, thresholds, at, truth, keywords, settings.time_tolerance_ms,
                             duration_s, manifest, fa_target)}
  if det_png:
    curve = [dm.DetectionErrors(**p) for p in result["det_curve"]]
    dm.plot_det_curve(curve, det_png, title=f"DET ({result['negative_hours']:.2f} h of negatives)")
  return result


def run_eval(runner: _Runner, wav: str, labels_path: str, reset: str,
             settings: SmoothingSettings, det_png: str | None,
             manifest: Mapping[str, Any] | None = None,
             fa_target: float | None = None) -> dict[str, Any]:
  from kws_jax.streameval import long_audio

  if reset not in RESET_MODES:
    raise ConfigError(f"--reset {reset!r}: choose one of {', '.join(RESET_MODES)}")
  truth = dm.read_labels(labels_path)
  reset_hops = []
  if reset == "clip":
    reset_hops = [int(t / 1000 * runner.sample_rate) // runner.hop_size for _, t in truth]
  if long_audio.readable_in_chunks(wav, runner.sample_rate):  # hours of audio: never whole
    post = long_audio.file_posteriors(runner, wav, reset_hops, progress=sys.stderr.isatty())
    duration_s = long_audio.seconds(wav)
  else:
    audio = audio_lib.read_audio(wav, runner.sample_rate)
    duration_s = audio.shape[0] / runner.sample_rate
    post = runner.posteriors(audio, reset_hops)
  result = evaluate_stream(post, truth, settings, duration_s, det_png, manifest, fa_target)
  result.update({"reset": reset, "audio_seconds": duration_s, "step_seconds": post.seconds,
                 "real_time_factor": duration_s / max(post.seconds, 1e-9),
                 "hops": int(post.scores.shape[0])})
  if post.vad_active is not None:
    result["vad_active_fraction"] = float(post.vad_active.mean())
  return result


# ----------------------------------------------------------------------------- listen

def listen(runner: _Runner, settings: SmoothingSettings, wav: str | None, seconds: float,
           realtime: bool = True) -> int:
  """Prints detections as they happen, from a WAV (played at real-time pace) or the microphone."""
  import jax.numpy as jnp

  from kws_jax.ops import smoothing

  hop_ms = 1000.0 * runner.hop_size / runner.sample_rate
  params = _smoothing_params(len(runner.label_names), hop_ms, settings,
                             settings.detection_threshold)
  smooth_state = smoothing.init_state(params)
  step_state = runner.step.initial_state()
  count = 0

  def handle(chunk: np.ndarray, hop_index: int) -> None:
    nonlocal smooth_state, step_state, count
    step_state, outputs = runner.step(step_state, chunk) if callable(runner.step) else \
        runner.step.step(step_state, chunk)
    smooth_state, out = smoothing.step(params, smooth_state, jnp.asarray(outputs["scores"]))
    label = runner.label_names[int(out.label)]
    if bool(out.is_new_command) and label != dm.SILENCE:
      count += 1
      print(f"{(hop_index + 1) * hop_ms / 1000:8.2f} s  {label:<10} score {float(out.score):.2f}",
            flush=True)

  if wav:
    audio = audio_lib.read_audio(wav, runner.sample_rate)
    hops = audio.shape[0] // runner.hop_size
    start = time.perf_counter()
    for i in range(hops):
      handle(audio[i * runner.hop_size:(i + 1) * runner.hop_size], i)
      if realtime:
        delay = start + (i + 1) * hop_ms / 1000 - time.perf_counter()
        if delay > 0:
          time.sleep(delay)
    return count
  try:
    import sounddevice
  except ImportError:
    raise KwsError("live input needs sounddevice: pip install 'kws_jax[live]' "
                   "(or pass --wav FILE)") from None
  try:
    with sounddevice.InputStream(samplerate=runner.sample_rate, channels=1, dtype="float32",
                                 blocksize=runner.hop_size) as stream:
      print(f"listening for {seconds:g} s ... (Ctrl-C stops)", file=sys.stderr)
      for i in range(int(seconds * 1000 / hop_ms)):
        chunk, _ = stream.read(runner.hop_size)
        handle(chunk[:, 0], i)
  except sounddevice.PortAudioError as e:
    raise KwsError(f"cannot open the microphone: {e}") from None
  return count


# ----------------------------------------------------------------------------- CLI

def _add_source(p: argparse.ArgumentParser) -> None:
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument("--workdir", help="training workdir: runs the JAX streaming step")
  src.add_argument("--module", help="compiled host-cpu dir (or its .vmfb) from kws_jax.compile")
  p.add_argument("--reset", default="never", help="never | clip (oracle) | vad")
  p.add_argument("--threshold", type=float, default=SmoothingSettings.detection_threshold)
  p.add_argument("--average-window-ms", type=float, default=SmoothingSettings.average_window_ms)
  p.add_argument("--suppression-ms", type=float, default=SmoothingSettings.suppression_ms)
  p.add_argument("--minimum-count", type=int, default=SmoothingSettings.minimum_count)
  p.add_argument("--time-tolerance-ms", type=float, default=SmoothingSettings.time_tolerance_ms)
  p.add_argument("--vad-option", action="append", default=[], metavar="KEY=VALUE",
                 help="with --workdir --reset vad: " + VAD_OPTION_HELP)


def _add_negative_options(mk: argparse.ArgumentParser) -> None:
  mk.add_argument("--negative-hours", type=float, default=0.0,
                  help="append this much keyword-free audio (writes <out>_manifest.json)")
  mk.add_argument("--positive-snr-db", type=float, default=None,
                  help="keywords at full volume over synthetic speech + noise at this SNR")
  mk.add_argument("--negative-words-dir", action="append", default=[],
                  help="more folders whose non-keyword words of the split's speakers join the "
                  "negatives (e.g. ../shared/data/sc_v1_extra); repeatable")
  mk.add_argument("--workers", type=int, default=2, help="speech synthesis processes")


# Kept here (not imported from kws_jax.streaming) so that `--help` does not import JAX.
VAD_OPTION_HELP = ("VAD setting over the experiment's `vad` section, repeatable: reset_delay_ms "
                   "(silence after a voice before the reset), tau_up, tau_down, threshold_up, "
                   "threshold_down, level_threshold, large_input, gain_att, initial_level")


def _runner(args) -> _Runner:
  from kws_jax import streaming

  vad_options = streaming.parse_vad_options(args.vad_option)
  if vad_options and args.reset != "vad":
    raise ConfigError("--vad-option needs --reset vad")
  if args.workdir:
    return jax_runner(args.workdir, args.reset, vad_options)
  if vad_options:
    raise ConfigError("--vad-option works with --workdir; a compiled module keeps the VAD "
                      "settings it was exported with (python -m kws_jax.export --vad-option ...)")
  module = args.module
  if module.endswith(".vmfb"):
    module = os.path.dirname(module) or "."
  return iree_runner(module, args.reset)


def _settings(args) -> SmoothingSettings:
  return SmoothingSettings(args.average_window_ms, args.threshold, args.suppression_ms,
                           args.minimum_count, args.time_tolerance_ms)


def main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(prog="python -m kws_jax.stream", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True)
  mk = sub.add_parser("make-test", help="long test WAV + labels from a folder's test speakers")
  mk.add_argument("--data-dir", required=True)
  mk.add_argument("--minutes", type=float, default=10.0)
  mk.add_argument("--out", required=True, help="output WAV (labels go to <out>_labels.txt)")
  mk.add_argument("--labels", help="labels file (default: <out>_labels.txt)")
  mk.add_argument("--split", default="test",
                  help="test (the folder's test speakers), validation (to tune on) or all")
  mk.add_argument("--background-dir", default="")
  mk.add_argument("--background-volume", type=float, default=0.1)
  mk.add_argument("--unknown-percentage", type=float, default=30.0)
  mk.add_argument("--word-gap-ms", type=int, default=2000)
  mk.add_argument("--wanted-words", default="yes,no,up,down,left,right,on,off,stop,go")
  mk.add_argument("--split-salt", default="",
                  help="speaker split salt of the training run (sc12_real: sc12)")
  mk.add_argument("--validation-percentage", type=float, default=10.0)
  mk.add_argument("--testing-percentage", type=float, default=10.0,
                  help="of the training run (sc12_real: 15)")
  mk.add_argument("--seed", type=int, default=0)
  _add_negative_options(mk)

  ev = sub.add_parser("eval", help="streaming accuracy, FRR at FA/h, DET curve, real-time factor")
  _add_source(ev)
  ev.add_argument("--wav", required=True)
  ev.add_argument("--labels", help="ground truth (default: <wav>_labels.txt)")
  ev.add_argument("--det-png", help="DET curve PNG (default: beside the WAV)")
  ev.add_argument("--out", help="write the full result JSON here")
  ev.add_argument("--json", action="store_true", help="last stdout line: the result as JSON")
  ev.add_argument("--manifest", help="negative parts (default: <wav>_manifest.json if present)")
  ev.add_argument("--fa-per-hour-target", type=float, default=None,
                  help="print the threshold to ship for this many false accepts per hour "
                  "(export --detection-threshold takes it)")

  li = sub.add_parser("listen", help="live detections from the microphone or a WAV")
  _add_source(li)
  li.add_argument("--wav", help="play this file in real time instead of the microphone")
  li.add_argument("--seconds", type=float, default=60.0)
  li.add_argument("--fast", action="store_true", help="with --wav: do not wait for real time")
  args = parser.parse_args(argv)

  if args.command == "make-test":
    wav, labels, n = make_test(args.data_dir, args.out, args.labels, minutes=args.minutes,
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
    dm.read_labels(args.labels or default_labels_path(args.wav))
  runner = _runner(args)
  if args.command == "listen":
    listen(runner, _settings(args), args.wav, args.seconds, realtime=not args.fast)
    return 0
  labels = args.labels or default_labels_path(args.wav)
  det_png = args.det_png or os.path.splitext(args.wav)[0] + f"_det_{args.reset}.png"
  from kws_jax.streameval import false_accepts, negatives
  manifest_path = args.manifest or default_manifest_path(args.wav)
  manifest = negatives.read_manifest(manifest_path) if (
      args.manifest or os.path.exists(manifest_path)) else None
  result = run_eval(runner, args.wav, labels, args.reset, _settings(args), det_png, manifest,
                    args.fa_per_hour_target)
  print(result["summary"])
  print(false_accepts.summary(result) + f"  (DET curve: {det_png})")
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
