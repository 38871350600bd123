"""The streaming-step protocol that every runner speaks (JAX step, IREE host module, ...).

A runner has `hop_size`, `label_names`, `initial_state()`, `step(state, samples) ->
(state, outputs)` for one hop of float32 samples, and `run(audio, state=None) ->
(state, outputs stacked over hops)`. Outputs always hold "logits" and "scores".
`scan_step` is the one place a pure step is scanned over hops (StreamingStep.run and
the int8 accuracy report use it); `run_pieces` / `run_padded` run any runner over audio
of any length (from a reader or an array) in fixed-size pieces.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Protocol, Sequence

import jax
import numpy as np

State = Any
Outputs = dict[str, Any]


class StepRunner(Protocol):
  hop_size: int
  label_names: Sequence[str]

  def initial_state(self) -> State: ...

  def step(self, state: State, samples: np.ndarray) -> tuple[State, Outputs]: ...

  def run(self, audio: np.ndarray, state: State | None = None) -> tuple[State, Outputs]: ...


class MetaStepRunner:
  """Protocol parts of a runner of an exported step: hop, labels and initial state come from
  its `meta` (meta.json) and `_initial` (initial_state.npz), as IREE and firmware runners load."""
  meta: dict
  _initial: list[np.ndarray]

  @property
  def hop_size(self) -> int:
    return int(self.meta["hop_size"])

  @property
  def label_names(self) -> list[str]:
    return list(self.meta["labels"])

  def initial_state(self) -> list[np.ndarray]:
    return [np.array(s) for s in self._initial]


def scan_hops(apply: Callable, params: Any, state: State, chunks: jax.Array
              ) -> tuple[State, Outputs]:
  """`apply(params, state, hop)` scanned over `chunks` (hops, hop_size); traceable."""
  return jax.lax.scan(lambda s, x: apply(params, s, x), state, chunks)


@functools.partial(jax.jit, static_argnums=0)
def scan_step(apply: Callable, params: Any, state: State, chunks: jax.Array
              ) -> tuple[State, Outputs]:
  """Jitted `scan_hops`: final state and outputs stacked over hops."""
  return scan_hops(apply, params, state, chunks)


def sample_reader(audio: np.ndarray) -> Callable[[int], np.ndarray]:
  """`take(n)`: the next n samples of `audio` (fewer at its end)."""
  position = 0

  def take(n: int) -> np.ndarray:
    nonlocal position
    out = audio[position:position + n]
    position += out.shape[0]
    return out
  return take


def run_pieces(runner: StepRunner, take: Callable[[int], np.ndarray], samples: int,
               piece_hops: int, hop_size: int | None = None,
               on_piece: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
  """Outputs of the next `samples` samples that `take(n)` hands out, from the initial state.

  They are run in pieces of `piece_hops` hops (the last zero-padded, its extra hops
  dropped), so one compiled shape serves every length and only one piece need be in
  memory (a sound file's reader can be `take`). `on_piece(n)` follows each piece.
  """
  hop_size = runner.hop_size if hop_size is None else hop_size
  piece = piece_hops * hop_size
  state, outputs, left = None, [], samples
  while True:
    n = min(piece, left)
    x = np.zeros(piece, np.float32)
    x[:n] = take(n)
    state, out = runner.run(x, state)
    outputs.append({k: np.asarray(v) for k, v in out.items()})
    left -= n
    if on_piece is not None:
      on_piece(n)
    if left <= 0:
      break
  hops = samples // hop_size
  return {k: np.concatenate([o[k] for o in outputs])[:hops] for k in outputs[0]}


def run_padded(runner: StepRunner, audio: np.ndarray, piece_hops: int,
               hop_size: int | None = None) -> dict[str, np.ndarray]:
  """Outputs of `audio` from the initial state, run in pieces of `piece_hops` hops."""
  return run_pieces(runner, sample_reader(audio), audio.shape[0], piece_hops, hop_size)
