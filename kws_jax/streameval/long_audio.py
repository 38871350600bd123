"""Hours of audio through the streaming step and the smoothing, chunk by chunk.

`file_posteriors` reads the WAV in soundfile blocks and feeds the step the very pieces that the
whole-file runner (`StreamRunner.posteriors`) feeds it (one code path, `posteriors_from`:
CHUNK_HOPS hops from each segment's start, the last one zero-padded, the state carried across
pieces and cleared at each reset), so both give the same posteriors while only one block of
audio is in memory.
`smoothed_detections` runs TF's smoothing over the posteriors in hop chunks with its state
carried, for many thresholds at once, so its memory does not grow with the file either.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import soundfile as sf
from tqdm import tqdm


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
  with sf.SoundFile(wav) as f:
    hops = f.frames // runner.hop_size
    reader = _BlockReader(f, int(block_seconds * f.samplerate))
    with tqdm(total=round(hops * runner.hop_size / f.samplerate), desc="streaming", unit="s",
              disable=not progress) as bar:
      return runner.posteriors_from(reader.take, hops, reset_hops,
                                    on_piece=lambda n: bar.update(n / f.samplerate))


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
