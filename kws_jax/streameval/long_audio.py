"""Hours of audio through the streaming step and the smoothing, chunk by chunk.

`file_posteriors` reads the WAV in soundfile blocks and feeds the step the very pieces that the
whole-file runner (`stream._Runner.posteriors`) feeds it — CHUNK_HOPS hops from each segment's
start, the last one zero-padded, the state carried across pieces and cleared at each reset — so
both give the same posteriors while only one block of audio is in memory.
`smoothed_detections` runs TF's smoothing over the posteriors in hop chunks with its state
carried, for many thresholds at once, so its memory does not grow with the file either.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import soundfile as sf
from tqdm import tqdm

from kws_jax.streameval.runners import Posteriors


class _BlockReader:
  """Consecutive samples of a sound file, read in blocks of `block` frames."""

  def __init__(self, f: sf.SoundFile, block: int):
    self.f, self.block = f, block
    self.buffer = np.zeros(0, np.float32)

  def take(self, n: int) -> np.ndarray:
    while self.buffer.size < n:
      data = self.f.read(max(self.block, n - self.buffer.size), dtype="float32")
      if data.size == 0:
        break
      self.buffer = np.concatenate([self.buffer, data])
    out, self.buffer = self.buffer[:n], self.buffer[n:]
    return out


def readable_in_chunks(wav: str, sample_rate: int) -> bool:
  """Mono at the step's rate: read in chunks (other files go through resampling, whole)."""
  try:
    info = sf.info(wav)
  except (RuntimeError, sf.LibsndfileError):  # read_audio then says what is wrong with it
    return False
  return info.channels == 1 and info.samplerate == sample_rate


def seconds(wav: str) -> float:
  info = sf.info(wav)
  return info.frames / info.samplerate


def file_posteriors(runner: Any, wav: str, reset_hops: Sequence[int] = (),
                    block_seconds: float = 30.0, progress: bool = False):
  """`runner.posteriors(read_audio(wav), reset_hops)`, reading `block_seconds` at a time."""
  import time


  hop = runner.hop_size
  piece = runner.CHUNK_HOPS * hop
  with sf.SoundFile(wav) as f:
    hops = f.frames // hop
    bounds = sorted({0, hops, *[h for h in reset_hops if 0 < h < hops]})
    reader = _BlockReader(f, int(block_seconds * f.samplerate))
    runner.warm_up()
    start_time = time.perf_counter()
    outputs: dict[str, list[np.ndarray]] = {}
    bar = tqdm(total=round(hops * hop / f.samplerate), desc="streaming", unit="s",
               disable=not progress)
    for a, b in zip(bounds[:-1], bounds[1:]):
      state, left = None, (b - a) * hop
      while left > 0:
        n = min(piece, left)
        x = np.zeros(piece, np.float32)
        x[:n] = reader.take(n)
        state, out = runner.step.run(x, state)
        for k, v in out.items():
          outputs.setdefault(k, []).append(np.asarray(v)[:n // hop])
        left -= n
        bar.update(n / f.samplerate)
    bar.close()
    seconds = time.perf_counter() - start_time
  vad = outputs.get("vad_active")
  return Posteriors(np.concatenate(outputs["scores"]).reshape(hops, -1), runner.label_names,
                    1000.0 * hop / runner.sample_rate, seconds,
                    np.concatenate(vad).reshape(-1) if vad else None, runner.window_ms)


def smoothed_detections(scores: np.ndarray, label_names: Sequence[str], hop_ms: float,
                        window_ms: float, params: Any, thresholds: Sequence[float],
                        skip_label: str, chunk_hops: int = 4096) -> list[list[tuple[str, float]]]:
  """Detections `(label, time_ms)` per threshold of smoothing `params` (threshold 1) over
  `scores / threshold`, dated from the start of the window the decision looked at."""
  import jax
  import jax.numpy as jnp

  from kws_jax.ops import smoothing

  thresholds = np.asarray(thresholds, np.float32)
  hops = scores.shape[0]
  chunk = max(1, min(chunk_hops, hops))
  run = jax.jit(lambda state, x: smoothing.smooth(params, x, state))
  state = smoothing.init_state(params, (len(thresholds),))
  result: list[list[tuple[str, float]]] = [[] for _ in thresholds]
  for a in range(0, hops, chunk):
    x = np.zeros((chunk, scores.shape[1]), np.float32)
    x[:min(chunk, hops - a)] = scores[a:a + chunk]
    # Zero padding after the end only changes outputs past it (the smoothing is causal).
    state, out = run(state, jnp.asarray(x)[None] / jnp.asarray(thresholds)[:, None, None])
    labels, is_new = np.asarray(out.label), np.asarray(out.is_new_command)
    for k, h in zip(*np.nonzero(is_new)):
      name = label_names[int(labels[k, h])]
      if a + h < hops and name != skip_label:
        result[k].append((name, max(0.0, (a + h + 1) * hop_ms - window_ms)))
  return result
