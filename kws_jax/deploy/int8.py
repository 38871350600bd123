"""int8 weights for the exported step: per-channel symmetric, int8 x int8 -> int32 products.

The rewriter behind `python -m kws_jax.export --quantize int8`; its accuracy report is
`kws_jax.deploy.int8_report` (`python -m kws_jax.quantize`).

Scheme, for every matrix product `x @ W` whose W is a model weight (>= 2-D):
  W_q = round(W / s_W) in [-127, 127], s_W = max|W| / 127 per output channel;
  x_q = round(x / s_x) in [-127, 127], s_x = max|x| / 127 per row, at run time;
  y   = float(x_q @ W_q accumulated in int32) * s_x * s_W.
Convolutions `conv(x, K)` with a weight kernel K the same way: s_K per output feature,
s_x per example (over its whole input window), int8 x int8 -> int32 convolution.
Biases, featurizer tables and everything else stay float32.

JAX has no quantized StableHLO types to emit, so the scaling is explicit. The
rewrite works on the step's jaxpr rather than on the model code: it finds the
`dot_general`s and `conv_general_dilated`s fed (through layout-only ops) by a
weight, so every model family is covered without a quantized twin of each layer.
Weights read by anything else (e.g. the depthwise taps of `models.common.DepthwiseConv`,
which are element-wise products) stay float and are listed in the report.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np

from kws_jax.deploy.streaming_step import StreamingStep
from kws_jax.errors import ExportError

SCHEME = ("int8 weights per output channel (symmetric), int8 activations per row (dynamic, "
          "symmetric), int32 accumulation, float32 rescale")
# Ops that only move or relabel a weight's elements: quantizing after them is the same.
_LAYOUT_OPS = {"transpose", "reshape", "squeeze", "expand_dims", "copy", "copy_p",
               "convert_element_type"}
_CALL_OPS = {"pjit", "jit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call",
             "remat", "checkpoint"}


@dataclasses.dataclass(frozen=True)
class _Dropped:
  """Stands for a float weight that only feeds quantized products (never materialised)."""
  leaf: int


def quantize_per_channel(w: np.ndarray, contract: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
  """(int8 W_q, float32 scales over the non-contracted dims) with W ~= W_q * scales."""
  w = np.asarray(w, np.float32)
  contract = tuple(contract)
  scale = np.max(np.abs(w), axis=contract) / 127.0
  scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
  q = np.clip(np.round(w / np.expand_dims(scale, contract)), -127, 127).astype(np.int8)
  return q, scale


def quantized_dot(x: jax.Array, w_q: jax.Array, w_scale: jax.Array, dimension_numbers,
                  weight_is_rhs: bool, out_dtype) -> jax.Array:
  """`dot_general(x, W)` (or `(W, x)`) with W given as int8 + per-channel scales."""
  (lhs_contract, rhs_contract), _ = dimension_numbers
  x_contract = tuple(lhs_contract if weight_is_rhs else rhs_contract)
  x = x.astype(jnp.float32)
  x_scale = jnp.max(jnp.abs(x), axis=x_contract) / 127.0
  x_scale = jnp.where(x_scale > 0, x_scale, 1.0)
  x_q = jnp.clip(jnp.round(x / jnp.expand_dims(x_scale, x_contract)), -127, 127).astype(jnp.int8)
  operands = (x_q, w_q) if weight_is_rhs else (w_q, x_q)
  acc = jax.lax.dot_general(*operands, dimension_numbers, preferred_element_type=jnp.int32)
  # dot_general's output dims: the lhs's free dims, then the rhs's.
  if weight_is_rhs:
    scale = x_scale.reshape(x_scale.shape + (1,) * w_scale.ndim) * w_scale
  else:
    scale = w_scale.reshape(w_scale.shape + (1,) * x_scale.ndim) * x_scale
  return (acc.astype(jnp.float32) * scale).astype(out_dtype)


def quantized_conv(x: jax.Array, k_q: jax.Array, k_scale: jax.Array, params: dict,
                   out_dtype) -> jax.Array:
  """`conv_general_dilated(x, K, **params)` with K given as int8 + per-output-feature scales."""
  lhs_spec, rhs_spec, out_spec = params["dimension_numbers"]
  del rhs_spec  # the kernel's layout only matters for its (already computed) scales
  x = x.astype(jnp.float32)
  batch_axis = lhs_spec[0]
  reduce_axes = tuple(a for a in range(x.ndim) if a != batch_axis)
  x_scale = jnp.max(jnp.abs(x), axis=reduce_axes, keepdims=True) / 127.0
  x_scale = jnp.where(x_scale > 0, x_scale, 1.0)
  x_q = jnp.clip(jnp.round(x / x_scale), -127, 127).astype(jnp.int8)
  conv_params = {k: v for k, v in params.items() if k not in ("preferred_element_type",)}
  acc = jax.lax.conv_general_dilated_p.bind(x_q, k_q, **conv_params,
                                            preferred_element_type=jnp.int32)
  # Output scale: one per example (along the output's batch axis) times one per feature.
  out_shape = [1] * acc.ndim
  out_shape[out_spec[0]] = x_scale.size
  feature_shape = [1] * acc.ndim
  feature_shape[out_spec[1]] = k_scale.size
  scale = x_scale.reshape(out_shape) * k_scale.reshape(feature_shape)
  return (acc.astype(jnp.float32) * scale).astype(out_dtype)


class _Interpreter:
  """Evaluates a jaxpr, replacing products of weights by `quantized_dot`.

  In the planning pass (`plan is None`) it quantizes every eligible weight it meets
  and records it in `self.plan` under the product's traversal index; in later
  passes it reads the int8 weights from `qparams` (so they can be traced inputs).
  """

  def __init__(self, qweights: dict[str, Any] | None):
    self.qweights = qweights
    self.planning = qweights is None
    self.plan: dict[str, dict[str, Any]] = {}
    self.counter = 0
    self.used_elsewhere: set[int] = set()

  def run(self, jaxpr, consts, args, origins):
    env: dict = {}
    origin: dict = {}

    def read(v):
      return v.val if isinstance(v, jax.extend.core.Literal) else env[v]

    for v, c in zip(jaxpr.constvars, consts):
      env[v] = c
    for v, a, o in zip(jaxpr.invars, args, origins):
      env[v] = a
      if o is not None:
        origin[v] = o
    for eqn in jaxpr.eqns:
      invals = [read(v) for v in eqn.invars]
      in_origins = [origin.get(v) if not isinstance(v, jax.extend.core.Literal) else None
                    for v in eqn.invars]
      name = eqn.primitive.name
      outs = None
      if name == "dot_general":
        outs = self._dot(eqn, invals, in_origins)
      elif name == "conv_general_dilated":
        outs = self._conv(eqn, invals, in_origins)
      elif name in _CALL_OPS and _inner_jaxpr(eqn) is not None:
        inner = _inner_jaxpr(eqn)
        outs = self.run(inner.jaxpr, inner.consts, invals, in_origins)
      elif name == "cond":
        outs = self._cond(eqn, invals, in_origins)
      elif name in _LAYOUT_OPS and in_origins[0] is not None and _is_float(eqn.outvars[0]):
        if isinstance(invals[0], (_Dropped, jax.ShapeDtypeStruct)):
          outs = [invals[0]]
        else:
          outs = self._bind(eqn, invals)
        origin[eqn.outvars[0]] = in_origins[0]
      if outs is None:
        for value, o in zip(invals, in_origins):
          if o is not None:
            if isinstance(value, _Dropped):
              raise ExportError(f"internal: weight {o} was dropped but {name} reads it")
            self.used_elsewhere.add(o)
        if self.planning:  # Planning needs only the weights' values: skip the rest.
          outs = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in eqn.outvars]
        else:
          outs = self._bind(eqn, invals)
      for v, value in zip(eqn.outvars, outs):
        env[v] = value
    return [read(v) for v in jaxpr.outvars]

  @staticmethod
  def _bind(eqn, invals):
    with eqn.ctx.manager:
      out = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
    return out if eqn.primitive.multiple_results else [out]

  def _cond(self, eqn, invals, in_origins):
    """`lax.cond` / `lax.switch` (e.g. a streaming layer's column computed every k hops):
    each branch interpreted, the weights reaching it as operands keep their origin."""
    branches = eqn.params["branches"]
    index, operands, origins = invals[0], invals[1:], in_origins[1:]
    if self.planning:
      for branch in branches:
        self.run(branch.jaxpr, branch.consts, operands, origins)
      return [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in eqn.outvars]
    # Dropped weights are read by the quantized products from `qweights`, so only the
    # other operands go through the switch; each branch puts the placeholders back.
    live = [i for i, value in enumerate(operands) if not isinstance(value, _Dropped)]

    def branch_fn(branch):
      def run(*values):
        full = list(operands)
        for i, value in zip(live, values):
          full[i] = value
        return self.run(branch.jaxpr, branch.consts, full, origins)
      return run
    with eqn.ctx.manager:
      return list(jax.lax.switch(index, [branch_fn(b) for b in branches],
                                 *[operands[i] for i in live]))

  def _dot(self, eqn, invals, in_origins):
    key = f"dot{self.counter}"
    self.counter += 1
    (_, _), (lhs_batch, rhs_batch) = eqn.params["dimension_numbers"]
    candidates = [i for i in (1, 0) if in_origins[i] is not None and in_origins[1 - i] is None]
    if not candidates or lhs_batch or rhs_batch or not _is_float(eqn.outvars[0]):
      return None
    w_index = candidates[0]
    weight_is_rhs = w_index == 1
    if self.planning:  # The weight's value is concrete here; the activation is not needed.
      w = invals[w_index]
      if isinstance(w, (jax.core.Tracer, jax.ShapeDtypeStruct)) or np.ndim(w) < 2:
        return None
      (lhs_contract, rhs_contract), _ = eqn.params["dimension_numbers"]
      q, scale = quantize_per_channel(np.asarray(w), rhs_contract if weight_is_rhs else lhs_contract)
      self.plan[key] = {"leaf": in_origins[w_index], "shape": list(np.shape(w)),
                        "q": q, "scale": scale}
      return [jax.ShapeDtypeStruct(eqn.outvars[0].aval.shape, eqn.outvars[0].aval.dtype)]
    else:
      if key not in self.qweights:
        return None
      w_q, w_scale = self.qweights[key]["q"], self.qweights[key]["scale"]
    out = quantized_dot(invals[1 - w_index], jnp.asarray(w_q), jnp.asarray(w_scale),
                        eqn.params["dimension_numbers"], weight_is_rhs,
                        eqn.outvars[0].aval.dtype)
    return [out]


  def _conv(self, eqn, invals, in_origins):
    """A convolution whose kernel (rhs) is a weight and whose input is not."""
    key = f"conv{self.counter}"
    self.counter += 1
    if (in_origins[1] is None or in_origins[0] is not None or not _is_float(eqn.outvars[0])
        or eqn.params.get("batch_group_count", 1) != 1):
      return None
    if self.planning:
      k = invals[1]
      if isinstance(k, (jax.core.Tracer, jax.ShapeDtypeStruct)):
        return None
      _, rhs_spec, _ = eqn.params["dimension_numbers"]
      contract = tuple(a for a in range(np.ndim(k)) if a != rhs_spec[0])
      q, scale = quantize_per_channel(np.asarray(k), contract)
      self.plan[key] = {"leaf": in_origins[1], "shape": list(np.shape(k)), "q": q,
                        "scale": scale}
      return [jax.ShapeDtypeStruct(eqn.outvars[0].aval.shape, eqn.outvars[0].aval.dtype)]
    if key not in self.qweights:
      return None
    out = quantized_conv(invals[0], jnp.asarray(self.qweights[key]["q"]),
                         jnp.asarray(self.qweights[key]["scale"]), eqn.params,
                         eqn.outvars[0].aval.dtype)
    return [out]


def _inner_jaxpr(eqn):
  for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
    inner = eqn.params.get(key)
    if inner is not None and hasattr(inner, "jaxpr"):
      return inner
  return None


def _is_float(var) -> bool:
  return jnp.issubdtype(var.aval.dtype, jnp.floating)


def quantize_fn(fn: Callable, params: Any, *example_args: Any
                ) -> tuple[Callable, Any, dict[str, Any]]:
  """int8 version of `fn(params, *args)` for args shaped like `example_args`.

  Returns `(qfn, qparams, report)`: `qfn(qparams, *args)` computes `fn` with every
  product of a weight in int8; `qparams` holds the int8 weights, their scales and
  the float weights still read elsewhere.
  """
  closed = jax.make_jaxpr(fn)(params, *example_args)
  param_leaves, _ = jax.tree_util.tree_flatten_with_path(params)
  num_params = len(param_leaves)
  arg_leaves = jax.tree.leaves(example_args)
  planner = _Interpreter(None)
  planner.run(closed.jaxpr, closed.consts, [v for _, v in param_leaves] + arg_leaves,
              list(range(num_params)) + [None] * len(arg_leaves))
  quantized_leaves = {p["leaf"] for p in planner.plan.values()}
  keep = sorted(set(range(num_params)) - (quantized_leaves - planner.used_elsewhere))
  qparams = {
      "int8": {k: {"q": jnp.asarray(p["q"]), "scale": jnp.asarray(p["scale"])}
               for k, p in planner.plan.items()},
      "float": {str(i): param_leaves[i][1] for i in keep},
  }
  args_tree = jax.tree.structure(example_args)
  out_tree = jax.tree.structure(jax.eval_shape(fn, params, *example_args))

  def qfn(qp, *args):
    leaves = [qp["float"][str(i)] if str(i) in qp["float"] else _Dropped(i)
              for i in range(num_params)]
    flat_args = jax.tree.leaves(args)
    if jax.tree.structure(args) != args_tree:
      raise ExportError("quantized function called with differently structured arguments")
    runner = _Interpreter(qp["int8"])
    outs = runner.run(closed.jaxpr, closed.consts, leaves + flat_args,
                      list(range(num_params)) + [None] * len(flat_args))
    return jax.tree.unflatten(out_tree, outs)

  def name(i):
    return jax.tree_util.keystr(param_leaves[i][0], simple=True, separator="/")

  float_bytes = sum(np.asarray(v).nbytes for _, v in param_leaves)
  int8_bytes = sum(np.asarray(v).nbytes for v in jax.tree.leaves(qparams))
  report = {
      "scheme": SCHEME,
      "quantized": sorted({name(p["leaf"]) for p in planner.plan.values()}),
      "float": [name(i) for i in keep],
      "num_products": len(planner.plan),
      "weight_bytes_float32": int(float_bytes),
      "weight_bytes_quantized": int(int8_bytes),
  }
  return qfn, qparams, report


def quantize_step(step: StreamingStep) -> tuple[StreamingStep, dict[str, Any]]:
  """The same streaming step with int8 weight products (see module docstring)."""
  state0 = step.initial_state()
  samples = jnp.zeros((step.hop_size,), jnp.float32)
  qapply, qparams, report = quantize_fn(step.apply, step.params, state0, samples)
  if not report["quantized"]:
    raise ExportError("--quantize int8 found no weight matrix products or convolutions in this "
                      "model's step")
  info = dict(step.info)
  info["quantization"] = report
  return dataclasses.replace(step, apply=qapply, params=qparams, info=info), report
