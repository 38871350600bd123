"""Classifier stride: a window model's network runs every k hops, its frame window every hop.

A window CNN (DS-CNN, BC-ResNet, ...) reruns its whole window at each streaming step,
~5 M MACs per 20 ms hop for MLPerf Tiny's DS-CNN: 250 M MACs per second of audio,
more than a microcontroller's budget. Its decision changes little from one hop to
the next, so `ClassifierStride(model, k)` keeps the featurizer and the frame window
running every hop (nothing of the audio is lost) but runs the network only on hops
0, k, 2k, ... and holds its logits in between, dividing the network's cost by k.
The choice between running and holding is a `lax.cond`, which IREE compiles to a
branch, so the skipped hops cost no network dispatches on the device.

It wraps the model object that `kws_jax.streaming.make_step_from_parts` calls
(`apply(..., method="initial_state" | "step")`), so VAD, smoothing and the export
work unchanged.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from kws_jax.errors import ConfigError
from kws_jax.models.common import WindowModel, push_frame


class ClassifierStride:
  """`model` (a WindowModel) whose network runs on every `stride`-th hop, starting at the first."""

  def __init__(self, model: Any, stride: int):
    if not isinstance(model, WindowModel):
      raise ConfigError(f"classifier stride needs a window model (a CNN that reruns its window "
                        f"every hop); {type(model).__name__} already computes only each new hop")
    if int(stride) < 1:
      raise ConfigError(f"classifier stride must be >= 1, got {stride}")
    self.model = model
    self.stride = int(stride)

  def __getattr__(self, name: str) -> Any:
    # num_frames, num_features, num_classes, reset_state_keys, ...: the wrapped model's.
    return getattr(self.__dict__["model"], name)

  def apply(self, variables: Any, *args: Any, method: str | None = None, **kwargs: Any) -> Any:
    if method == "initial_state":
      (batch_size,) = args
      state = dict(self.model.apply(variables, batch_size, method="initial_state"))
      state["stride_phase"] = jnp.zeros((), jnp.int32)
      state["stride_logits"] = jnp.zeros((batch_size, self.model.num_classes), jnp.float32)
      return state
    if method == "step":
      state, frame = args
      return self._step(variables, state, frame)
    return self.model.apply(variables, *args, method=method, **kwargs)

  def _step(self, variables: Any, state: dict[str, Any], frame: jax.Array):
    frames = push_frame(state["frames"], frame.astype(jnp.float32))
    phase = state["stride_phase"]
    logits = jax.lax.cond(
        phase == 0,
        lambda f: self.model.apply(variables, f, train=False).astype(jnp.float32),
        lambda f: state["stride_logits"],
        frames)
    new_state = {**state, "frames": frames, "stride_logits": logits,
                 "stride_phase": ((phase + 1) % self.stride).astype(jnp.int32)}
    return new_state, logits
