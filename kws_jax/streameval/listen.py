"""Live detections from the microphone (sounddevice) or a WAV played at real-time pace."""

from __future__ import annotations

import sys
import time

import jax.numpy as jnp
import numpy as np

from kws_jax import audio as audio_lib
from kws_jax.errors import KwsError
from kws_jax.ops import smoothing
from kws_jax.streameval import detection as dm
from kws_jax.streameval.runners import StreamRunner
from kws_jax.streameval.scoring import SmoothingSettings, smoothing_params


def listen(runner: StreamRunner, settings: SmoothingSettings, wav: str | None, seconds: float,
           realtime: bool = True) -> int:
  """Prints detections as they happen, from a WAV (played at real-time pace) or the microphone."""
  hop_ms = 1000.0 * runner.hop_size / runner.sample_rate
  params = smoothing_params(len(runner.label_names), hop_ms, settings,
                             settings.detection_threshold)
  smooth_state = smoothing.init_state(params)
  step_state = runner.step.initial_state()
  count = 0

  def handle(chunk: np.ndarray, hop_index: int) -> None:
    nonlocal smooth_state, step_state, count
    step_state, outputs = runner.step.step(step_state, chunk)
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


