"""Multiply-accumulate counts of JAX functions, models' steps and windows.

Counted by walking the function's jaxpr: every `dot_general` and
`conv_general_dilated` contributes its exact MAC count (convolutions include
the zero padding, the usual convention), and loops multiply their body by the
trip count. Elementwise work (activations, BatchNorm, pooling) is not counted.
Hand-written because XLA's `cost_analysis()` counts a `lax.scan` body once
whatever its length (so recurrent windows come out ~T times too small) and
adds elementwise flops that differ across backends.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.extend as jex
import jax.numpy as jnp

from kws_jax.errors import ConfigError


def _shape(var: Any) -> tuple[int, ...]:
  return tuple(var.aval.shape)


def _eqn_macs(eqn: Any) -> int:
  name = eqn.primitive.name
  if name == "dot_general":
    (lhs_contract, rhs_contract), (_, rhs_batch) = eqn.params["dimension_numbers"]
    lhs, rhs = _shape(eqn.invars[0]), _shape(eqn.invars[1])
    rhs_free = [d for i, d in enumerate(rhs) if i not in rhs_contract and i not in rhs_batch]
    return math.prod(lhs) * math.prod(rhs_free)
  if name == "conv_general_dilated":
    rhs_spec = eqn.params["dimension_numbers"].rhs_spec  # (out feature, in feature, spatial...)
    rhs = _shape(eqn.invars[1])
    out = _shape(eqn.outvars[0])
    per_output = rhs[rhs_spec[1]] * math.prod(rhs[i] for i in rhs_spec[2:])
    return math.prod(out) * per_output
  return 0


def jaxpr_macs(jaxpr: Any) -> int:
  """MACs of a (closed or open) jaxpr, recursing into calls, scans and conds."""
  if isinstance(jaxpr, jex.core.ClosedJaxpr):
    jaxpr = jaxpr.jaxpr
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "scan":
      total += eqn.params["length"] * jaxpr_macs(eqn.params["jaxpr"])
    elif name == "cond":
      total += max(jaxpr_macs(branch) for branch in eqn.params["branches"])
    elif name in ("jit", "pjit") and eqn.params.get("name") == "depthwise_conv":
      # common.depthwise_conv: elementwise taps standing in for a grouped convolution.
      kernel = _shape(eqn.invars[1])
      total += math.prod(_shape(eqn.outvars[0])) * kernel[0] * kernel[1]
    elif name == "while":
      raise ConfigError("cannot count MACs through a while loop (unknown trip count); "
                        "use lax.scan with a fixed length")
    else:
      total += _eqn_macs(eqn)
      for sub in jex.core.jaxprs_in_params(eqn.params):
        total += jaxpr_macs(sub)
  return total


def count_macs(fn: Callable[..., Any], *args: Any) -> int:
  """Multiply-accumulates of one call `fn(*args)` (args may be arrays or ShapeDtypeStructs)."""
  return jaxpr_macs(jax.make_jaxpr(fn)(*args))


def step_macs(model: Any, variables: Any) -> int:
  """MACs of one streaming `step` for a batch of one."""
  state = model.apply(variables, 1, method="initial_state")
  frame = jnp.zeros((1, model.num_features), jnp.float32)
  return count_macs(lambda v, s, f: model.apply(v, s, f, method="step"), variables, state, frame)


def window_macs(model: Any, variables: Any) -> int:
  """MACs of one full-window inference apply for a batch of one."""
  x = jnp.zeros((1, model.num_frames, model.num_features), jnp.float32)
  return count_macs(lambda v, x: model.apply(v, x, train=False), variables, x)


def macs_per_second(model: Any, variables: Any, hop_seconds: float) -> int:
  """MACs per second of audio when streaming: one `step` per hop, i.e. step MACs / hop.

  For recurrent and SVDF models this is the true incremental cost. Window
  models (CNNs) rerun the whole window at each step, so for them this equals
  `window_macs / hop_seconds`: the cost of a fresh decision every hop (run the
  window less often, e.g. every k hops, to divide it by k).
  """
  if hop_seconds <= 0:
    raise ConfigError(f"hop_seconds must be positive, got {hop_seconds}")
  # A step with a lax.cond counts its costlier branch; a model whose branch runs only
  # every k steps says what a step costs on average.
  average = getattr(model, "average_step_macs", None)
  macs = average(variables) if average is not None else step_macs(model, variables)
  return int(round(macs / hop_seconds))
