"""Runners of a streaming step over long audio, with state resets: the JAX step of a training
workdir or an IREE-compiled module, behind one protocol (kws_jax.deploy.protocol)."""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Mapping, Sequence

import numpy as np

from kws_jax.deploy import firmware_runner, protocol, streaming_step
from kws_jax.deploy import iree_runner as iree_runner_lib
from kws_jax.errors import ConfigError
from kws_jax.runs import trained_model


@dataclasses.dataclass
class Posteriors:
  scores: np.ndarray           # (hops, classes) softmax scores
  label_names: list[str]
  hop_ms: float
  seconds: float               # wall time spent running the step
  vad_active: np.ndarray | None = None
  window_ms: float = 0.0       # audio behind one decision (detections are dated from its start)


class StreamRunner:
  """Runs a streaming step over audio with resets; the JAX and IREE forms share this code."""

  # Fixed-size pieces: one compile serves every segment length (clip resets make hundreds).
  CHUNK_HOPS = 256

  def __init__(self, step: protocol.StepRunner, label_names: Sequence[str], hop_size: int, sample_rate: int,
               window_ms: float = 1000.0):
    self.step = step
    self.label_names = list(label_names)
    self.hop_size = hop_size
    self.sample_rate = sample_rate
    self.window_ms = window_ms

  def posteriors(self, audio: np.ndarray, reset_hops: Sequence[int] = ()) -> Posteriors:
    hops = audio.shape[0] // self.hop_size
    return self.posteriors_from(protocol.sample_reader(audio), hops, reset_hops)

  def posteriors_from(self, take: Callable[[int], np.ndarray], hops: int,
                      reset_hops: Sequence[int] = (),
                      on_piece: Callable[[int], None] | None = None) -> Posteriors:
    """Posteriors of `hops` hops of samples from `take(n)` (an array's or a sound file's
    reader), the state cleared at each of `reset_hops`, in CHUNK_HOPS pieces."""
    bounds = sorted({0, hops, *[h for h in reset_hops if 0 < h < hops]})
    self.warm_up()
    start_time = time.perf_counter()
    scores, vad = [], []
    for a, b in zip(bounds[:-1], bounds[1:]):
      outputs = protocol.run_pieces(self.step, take, (b - a) * self.hop_size, self.CHUNK_HOPS,
                                    self.hop_size, on_piece)
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
               vad_options: Mapping[str, float] | None = None) -> StreamRunner:
  model = trained_model.load(workdir)
  step = streaming_step.make_step(model, vad=(reset == "vad"), smoothing=False,
                             vad_options=vad_options)
  return StreamRunner(step, step.label_names, step.hop_size, step.sample_rate,
                      float(step.info.get("window_ms", 1000.0)))


def iree_runner(module_dir: str, reset: str) -> StreamRunner:
  # A firmware dir (python -m kws_jax.compile ... --firmware) runs under QEMU.
  step = (firmware_runner.FirmwareStep(module_dir) if firmware_runner.is_firmware_dir(module_dir)
          else iree_runner_lib.IreeStep(module_dir))
  has_vad = "vad_active" in step.output_names
  if (reset == "vad") != has_vad:
    raise ConfigError(f"{module_dir}: the module was exported {'with' if has_vad else 'without'} "
                      f"the VAD, which --reset {reset} {'does not want' if has_vad else 'needs'}; "
                      "export again with the matching `vad` setting")
  return StreamRunner(step, step.label_names, step.hop_size, int(step.meta["sample_rate"]),
                 float(step.meta.get("window_ms", 1000.0)))


