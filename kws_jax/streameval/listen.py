"""Live detections from the microphone (sounddevice) or a WAV played at real-time pace.

Audio goes through the step in blocks of hops (`StepRunner.run`, one jitted scan per block) and
the smoothing in the same blocks (its jitted batch twin), so the per-call overhead is paid once
per block, not once per hop: stepping hop by hop from Python cannot keep up with 10 ms hops.
"""

from __future__ import annotations

import sys
import time
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from kws_jax import audio as audio_lib
from kws_jax.errors import KwsError
from kws_jax.ops import smoothing
from kws_jax.streameval import detection as dm
from kws_jax.streameval.runners import StreamRunner
from kws_jax.streameval.scoring import SmoothingSettings, smoothing_params

# Live blocks: short enough that a detection prints within ~0.1 s of its audio.
LIVE_BLOCK_MS = 100.0
# Falling this far behind the audio is reported (once) as not keeping real time.
BEHIND_WARNING_S = 0.5

_smooth = jax.jit(smoothing.smooth)


class Listener:
  """Step and smoothing state across blocks; `feed` returns the new detections of a block."""

  def __init__(self, runner: StreamRunner, settings: SmoothingSettings, block_hops: int):
    self.runner = runner
    self.block_hops = block_hops
    self.hop_ms = 1000.0 * runner.hop_size / runner.sample_rate
    self.params = smoothing_params(len(runner.label_names), self.hop_ms, settings,
                                   settings.detection_threshold)
    self.smooth_state = smoothing.init_state(self.params)
    self.step_state = runner.step.initial_state()
    self.hops = 0

  def feed(self, block: np.ndarray) -> list[tuple[float, str, float]]:
    """`(seconds, label, score)` of each new command in `block` (at most `block_hops` hops)."""
    size = self.block_hops * self.runner.hop_size
    hops = block.shape[0] // self.runner.hop_size
    # Zero-padded to one block: one compiled shape; the padded hops' detections are dropped.
    padded = np.zeros(size, np.float32)
    padded[:hops * self.runner.hop_size] = block[:hops * self.runner.hop_size]
    self.step_state, outputs = self.runner.step.run(padded, self.step_state)
    self.smooth_state, out = _smooth(self.params, jnp.asarray(outputs["scores"], jnp.float32),
                                     self.smooth_state)
    labels, scores = np.asarray(out.label), np.asarray(out.score)
    found = []
    for h in np.flatnonzero(np.asarray(out.is_new_command)[:hops]):
      label = self.runner.label_names[int(labels[h])]
      if label != dm.SILENCE:
        found.append(((self.hops + h + 1) * self.hop_ms / 1000, label, float(scores[h])))
    self.hops += hops
    return found

  def warm_up(self) -> None:
    """Compiles the block before the clock starts; the state is left as it was."""
    step_state, smooth_state, hops = self.step_state, self.smooth_state, self.hops
    # Twice: a state the step returned may differ in weak types from the initial one (a retrace).
    for _ in range(2):
      self.feed(np.zeros(self.block_hops * self.runner.hop_size, np.float32))
    self.step_state, self.smooth_state, self.hops = step_state, smooth_state, hops


def _print(found: list[tuple[float, str, float]]) -> None:
  for seconds, label, score in found:
    print(f"{seconds:8.2f} s  {label:<10} score {score:.2f}", flush=True)


def _blocks(audio: np.ndarray, size: int) -> Iterator[tuple[int, np.ndarray]]:
  """(end sample, block) pairs."""
  for start in range(0, audio.shape[0], size):
    block = audio[start:start + size]
    yield start + block.shape[0], block


def listen_wav(runner: StreamRunner, settings: SmoothingSettings, wav: str,
               realtime: bool = True) -> int:
  """Plays `wav` through the step at real-time pace (each block once its audio would have been
  recorded) or, with realtime=False, as fast as it runs; returns the number of detections."""
  audio = audio_lib.read_audio(wav, runner.sample_rate)
  duration = audio.shape[0] / runner.sample_rate
  block_hops = (max(1, round(LIVE_BLOCK_MS * runner.sample_rate / 1000 / runner.hop_size))
                if realtime else StreamRunner.CHUNK_HOPS)
  listener = Listener(runner, settings, block_hops)
  listener.warm_up()
  pace = "in real time" if realtime else "as fast as it runs (--fast)"
  print(f"listening to {wav} ({duration:.1f} s) {pace} ...", file=sys.stderr, flush=True)
  count, worst, warned = 0, 0.0, False
  start = time.perf_counter()
  for end, block in _blocks(audio, block_hops * runner.hop_size):
    arrives = start + end / runner.sample_rate
    if realtime and arrives > time.perf_counter():
      time.sleep(arrives - time.perf_counter())
    found = listener.feed(block)
    count += len(found)
    _print(found)
    if realtime:
      behind = time.perf_counter() - arrives
      worst = max(worst, behind)
      if behind > BEHIND_WARNING_S and not warned:
        warned = True
        print(f"warning: falling behind real time ({behind:.1f} s late at "
              f"{end / runner.sample_rate:.1f} s of audio): this model is too slow for live "
              "input on this machine", file=sys.stderr, flush=True)
  took = time.perf_counter() - start
  lag = f", at most {worst:.2f} s behind the audio" if realtime else ""
  print(f"done: {count} detection(s) in {duration:.1f} s of audio, {took:.1f} s "
        f"({duration / max(took, 1e-9):.1f}x real time{lag})", file=sys.stderr, flush=True)
  return count


def listen(runner: StreamRunner, settings: SmoothingSettings, wav: str | None, seconds: float,
           realtime: bool = True) -> int:
  """Prints detections as they happen, from a WAV (played at real-time pace) or the microphone."""
  if wav:
    return listen_wav(runner, settings, wav, realtime)
  try:
    import sounddevice
  except ImportError:
    raise KwsError("live input needs sounddevice: pip install 'kws_jax[live]' "
                   "(or pass --wav FILE)") from None
  block_hops = max(1, round(LIVE_BLOCK_MS * runner.sample_rate / 1000 / runner.hop_size))
  size = block_hops * runner.hop_size
  listener = Listener(runner, settings, block_hops)
  listener.warm_up()
  count, overflows = 0, 0
  try:
    with sounddevice.InputStream(samplerate=runner.sample_rate, channels=1, dtype="float32",
                                 blocksize=size) as stream:
      print(f"listening for {seconds:g} s ... (Ctrl-C stops)", file=sys.stderr, flush=True)
      for _ in range(max(1, int(seconds * runner.sample_rate / size))):
        chunk, overflowed = stream.read(size)
        if overflowed and not overflows:
          print("warning: the microphone's buffer overflowed: detection is falling behind "
                "real time (audio was lost)", file=sys.stderr, flush=True)
        overflows += bool(overflowed)
        found = listener.feed(chunk[:, 0])
        count += len(found)
        _print(found)
  except sounddevice.PortAudioError as e:
    raise KwsError(f"cannot open the microphone: {e}") from None
  print(f"done: {count} detection(s) in {seconds:g} s"
        + (f"; {overflows} block(s) of audio lost" if overflows else ""), file=sys.stderr)
  return count
