"""TF's RecognizeCommands posterior smoothing as a pure step over fixed-size buffers.

Semantics of tensorflow/examples/speech_commands/recognize_commands.{py,cc}, with
one posterior vector per step and time counted in steps of `step_ms`
(e.g. the featurizer hop, or the model's inference stride):

  * the average window keeps every result whose time is >= now - average_window_ms
    (so `window_steps + 1` results once the stream is long enough);
  * with fewer than `minimum_count` results, or when they span less than a quarter
    of the window, the output is the previous top label with score 0, not new;
  * otherwise the top label of the mean posterior (first index on ties) is
    reported; it is a new command when its mean > detection_threshold, it differs
    from the previous top label, and more than suppression_ms have passed since
    that label was set (always true while the previous label is silence).

Buffers have a fixed size (window_steps + 1), so the step is jittable and exportable.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp

from kws_jax.errors import ConfigError

Array = jax.Array


@flax.struct.dataclass
class SmoothingParams:
  step_ms: float = flax.struct.field(pytree_node=False)
  average_window_ms: float = flax.struct.field(pytree_node=False)
  detection_threshold: float = flax.struct.field(pytree_node=False)
  suppression_ms: float = flax.struct.field(pytree_node=False)
  minimum_count: int = flax.struct.field(pytree_node=False)
  num_labels: int = flax.struct.field(pytree_node=False)
  silence_index: int = flax.struct.field(pytree_node=False, default=0)

  @property
  def window_steps(self) -> int:
    """Older results than this many steps fall out of the average window."""
    return int(math.floor(self.average_window_ms / self.step_ms + 1e-9))


# The defaults of TF's RecognizeCommands C++ class (recognize_commands.h). TF's streaming
# test script uses others: kws_jax.streameval.settings.TEST_STREAMING_ACCURACY_DEFAULTS.
RECOGNIZE_COMMANDS_DEFAULTS = dict(average_window_ms=1000.0, detection_threshold=0.2,
                                   suppression_ms=1500.0, minimum_count=3)


def make_params(num_labels: int, step_ms: float, *,
                average_window_ms: float = RECOGNIZE_COMMANDS_DEFAULTS["average_window_ms"],
                detection_threshold: float = RECOGNIZE_COMMANDS_DEFAULTS["detection_threshold"],
                suppression_ms: float = RECOGNIZE_COMMANDS_DEFAULTS["suppression_ms"],
                minimum_count: int = RECOGNIZE_COMMANDS_DEFAULTS["minimum_count"],
                silence_index: int = 0) -> SmoothingParams:
  """Defaults: RECOGNIZE_COMMANDS_DEFAULTS; labels in TF order (silence first)."""
  if step_ms <= 0 or average_window_ms <= 0:
    raise ConfigError(f"smoothing needs step_ms > 0 and average_window_ms > 0, got "
                      f"{step_ms} and {average_window_ms}")
  if not 0 <= silence_index < num_labels:
    raise ConfigError(f"smoothing silence_index {silence_index} is not a label index "
                      f"(0..{num_labels - 1})")
  return SmoothingParams(step_ms=float(step_ms), average_window_ms=float(average_window_ms),
                         detection_threshold=float(detection_threshold),
                         suppression_ms=float(suppression_ms), minimum_count=int(minimum_count),
                         num_labels=int(num_labels), silence_index=int(silence_index))


class SmoothingOutput(NamedTuple):
  scores: Array          # (..., C) mean posterior over the window
  label: Array           # (...,) int32 reported label (previous top label while bailing)
  score: Array           # (...,) its mean score (0 while bailing)
  is_new_command: Array  # (...,) bool


def init_state(params: SmoothingParams, batch_shape: tuple[int, ...] = ()) -> dict[str, Array]:
  size = params.window_steps + 1
  shape = tuple(batch_shape)
  return {
      "buffer": jnp.zeros(shape + (size, params.num_labels), jnp.float32),
      "time": jnp.zeros(shape, jnp.int32),             # steps seen so far
      "previous_label": jnp.full(shape, params.silence_index, jnp.int32),
      "previous_time": jnp.full(shape, -1, jnp.int32),  # -1: never set (TF's -inf)
  }


def step(params: SmoothingParams, state: dict[str, Array],
         posteriors: Array) -> tuple[dict[str, Array], SmoothingOutput]:
  """Adds one (..., C) posterior vector; returns the new state and the smoothed output."""
  size = params.window_steps + 1
  now = state["time"]
  slot = jax.nn.one_hot(now % size, size, dtype=jnp.bool_)[..., None]
  buffer = jnp.where(slot, posteriors[..., None, :].astype(jnp.float32), state["buffer"])
  count = jnp.minimum(now + 1, size)
  scores = jnp.sum(buffer, axis=-2) / count[..., None].astype(jnp.float32)
  span_ms = (count - 1).astype(jnp.float32) * params.step_ms
  too_few = (count < params.minimum_count) | (span_ms < params.average_window_ms / 4)

  top = jnp.argmax(scores, axis=-1).astype(jnp.int32)
  top_score = jnp.max(scores, axis=-1)
  previous_label, previous_time = state["previous_label"], state["previous_time"]
  since_ms = (now - previous_time).astype(jnp.float32) * params.step_ms
  long_enough = ((previous_label == params.silence_index) | (previous_time < 0)
                 | (since_ms > params.suppression_ms))
  is_new = (~too_few & (top_score > params.detection_threshold)
            & (top != previous_label) & long_enough)
  out = SmoothingOutput(
      scores=scores,
      label=jnp.where(too_few, previous_label, top),
      score=jnp.where(too_few, 0.0, top_score),
      is_new_command=is_new)
  new_state = {
      "buffer": buffer,
      "time": now + 1,
      "previous_label": jnp.where(is_new, top, previous_label),
      "previous_time": jnp.where(is_new, now, previous_time),
  }
  return new_state, out


def smooth(params: SmoothingParams, posteriors: Array,
           state: dict[str, Array] | None = None) -> tuple[dict[str, Array], SmoothingOutput]:
  """Batch twin: scans `step` over (..., T, C) posteriors; outputs have a T axis before C."""
  if state is None:
    state = init_state(params, posteriors.shape[:-2])
  xs = jnp.moveaxis(posteriors, -2, 0)
  state, outs = jax.lax.scan(lambda s, x: step(params, s, x), state, xs)
  scores = jnp.moveaxis(outs.scores, 0, -2)
  rest = [jnp.moveaxis(a, 0, -1) for a in (outs.label, outs.score, outs.is_new_command)]
  return state, SmoothingOutput(scores, *rest)
