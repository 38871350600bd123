"""JAX side of the latency and featurizer comparisons, and the interleaved timer.

Timing rule for every side-by-side figure: the competing runners are called in
alternation (A, B, A, B, ...) for several rounds, so a burst of other work on a
shared machine hits both, and each side's figure is its best round (the one
least disturbed), as `timeit` recommends.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from kws_jax.ops import frontend


def interleaved_best(runners: dict[str, Callable[[], Any]], rounds: int = 5,
                     calls_per_round: int = 1) -> dict[str, float]:
  """Best seconds per call of each runner over `rounds` alternating rounds."""
  best = {name: float("inf") for name in runners}
  for _ in range(rounds):
    for name, run in runners.items():
      start = time.perf_counter()
      for _ in range(calls_per_round):
        run()
      best[name] = min(best[name], (time.perf_counter() - start) / calls_per_round)
  return best


class JaxStreamStepRunner:
  """One streaming hop per call, batch 1: jitted frontend.step + model.step, state fed back."""

  def __init__(self, frontend_params: frontend.FrontendParams, model, variables: dict[str, Any],
               chunks: np.ndarray):
    @jax.jit
    def step(variables, state, chunk):
      fe_state, model_state = state
      fe_state, frame = frontend.step(frontend_params, fe_state, chunk)
      model_state, out = model.apply(variables, model_state, frame, method="step")
      return (fe_state, model_state), out

    self._step = step
    self.variables = variables
    self.chunks = [jnp.asarray(c[None], jnp.float32) for c in chunks]
    self._initial = (frontend.init_state(frontend_params, (1,)),
                     model.apply(variables, 1, method="initial_state"))
    self.reset()
    self()  # compile
    self.reset()

  def reset(self) -> None:
    """Back to the start of the stream (first chunk, initial state)."""
    self.state, self.index = self._initial, 0

  def __call__(self) -> jax.Array:
    chunk = self.chunks[self.index % len(self.chunks)]
    self.index += 1
    self.state, out = self._step(self.variables, self.state, chunk)
    return out.block_until_ready()


class JaxFeaturizerRunner:
  """Featurizes all `clips` (N, S) float32 per call, in jitted batches of `batch_size`."""

  def __init__(self, params: frontend.FrontendParams, clips: np.ndarray, batch_size: int):
    if len(clips) % batch_size:
      raise ValueError(f"{len(clips)} clips do not split into batches of {batch_size}")
    self._featurize = jax.jit(lambda audio: frontend.featurize(params, audio))
    self.batches = [jnp.asarray(clips[i:i + batch_size], jnp.float32)
                    for i in range(0, len(clips), batch_size)]
    self.num_clips = len(clips)
    self()

  def __call__(self) -> None:
    outs = [self._featurize(b) for b in self.batches]  # dispatch all, then wait once
    jax.block_until_ready(outs)


def synthetic_audio(num_clips: int, num_samples: int, seed: int = 0) -> np.ndarray:
  """Speech-like level noise in [-1, 1] (featurizer cost does not depend on content)."""
  rng = np.random.default_rng(seed)
  return np.clip(0.1 * rng.standard_normal((num_clips, num_samples)), -1, 1).astype(np.float32)
