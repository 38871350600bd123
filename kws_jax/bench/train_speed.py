"""JAX side of the training-throughput comparisons.

The ELL GRU recipe (microsoft/ELL train_classifier.py): 2 x GRU(128) over 31 x 80
log-mel frames, a linear head on every frame, log_softmax per frame averaged over
time, NLL loss, RMSprop(lr 1e-3, weight decay 1e-5), batch 128, 12 classes.
`torch_rmsprop` is torch.optim.RMSprop's exact update, so both sides run the same
recipe step for step.

Two formulations of the same network (same parameter tree as `models.create("gru")`):
  "model"      the models package's Flax module;
  "fused_vjp"  the same math as a plain function of the parameter tree (no Flax).
Both use `models.rnn.gru_recurrence`: the input projection of all frames in one
matmul, split per gate before the time scan, and a hand-written backward for the
recurrence (autodiff of the scan accumulates the recurrent weight gradient with one
small matmul per time step inside the loop; there the loop only carries dh and the
weight gradient is one large matmul over all steps after it).
An epoch runs as one jitted `lax.scan` over batches already on the devices, with
donated parameter/optimizer buffers, data-parallel over the local devices
(`kws_jax.train.parallel`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from kws_jax import models
from kws_jax.models import rnn
from kws_jax.train import parallel

Array = jax.Array
FORMULATIONS = ("model", "fused_vjp")


@dataclasses.dataclass(frozen=True)
class EllGruRecipe:
  """Shapes and optimizer of ELL's GRU keyword-spotter training."""
  num_frames: int = 31
  num_features: int = 80
  hidden_size: int = 128
  num_layers: int = 2
  num_classes: int = 12
  batch_size: int = 128
  learning_rate: float = 1e-3
  weight_decay: float = 1e-5
  rmsprop_alpha: float = 0.99
  rmsprop_eps: float = 1e-8


def torch_rmsprop(learning_rate: float, weight_decay: float = 0.0, alpha: float = 0.99,
                  eps: float = 1e-8) -> optax.GradientTransformation:
  """torch.optim.RMSprop (not centered, no momentum) as optax.

  torch: g += wd * p; v = alpha * v + (1 - alpha) * g^2; p -= lr * g / (sqrt(v) + eps).
  """
  return optax.chain(
      optax.add_decayed_weights(weight_decay),
      optax.rmsprop(learning_rate, decay=alpha, eps=eps, eps_in_sqrt=False))


def recipe_optimizer(recipe: EllGruRecipe) -> optax.GradientTransformation:
  return torch_rmsprop(recipe.learning_rate, recipe.weight_decay, recipe.rmsprop_alpha,
                       recipe.rmsprop_eps)


def ell_gru_model(recipe: EllGruRecipe):
  return models.create("gru", num_classes=recipe.num_classes, num_frames=recipe.num_frames,
                       num_features=recipe.num_features, hidden_size=recipe.hidden_size,
                       num_layers=recipe.num_layers)


def init_ell_gru(recipe: EllGruRecipe, seed: int = 0) -> dict[str, Any]:
  """Parameters of the recipe's GRU (torch's default init), the models package's layout."""
  model = ell_gru_model(recipe)
  x = jnp.zeros((1, recipe.num_frames, recipe.num_features), jnp.float32)
  return model.init(jax.random.PRNGKey(seed), x, train=False)["params"]


def fused_gru_apply(params: dict[str, Any], x: Array) -> Array:
  """Same function as the `gru` model's apply (train=False, no dropout): (B, T, F) -> (B, C)."""
  h = jnp.swapaxes(x.astype(jnp.float32), 0, 1)
  index = 0
  while f"layer_{index}" in params:
    layer = params[f"layer_{index}"]
    x_proj = h @ layer["input_kernel"] + layer["input_bias"]
    h = rnn.gru_recurrence(layer["recurrent_kernel"], layer["recurrent_bias"], x_proj)
    index += 1
  logits = h @ params["head"]["kernel"] + params["head"]["bias"]
  return jnp.mean(jax.nn.log_softmax(logits, axis=-1), axis=0)


def nll_loss(log_probs: Array, labels: Array) -> Array:
  """torch.nn.NLLLoss (mean over the batch) on log-probabilities (B, C)."""
  return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))


def ell_gru_loss(recipe: EllGruRecipe, formulation: str = "fused_vjp"
                 ) -> Callable[[Any, Array, Array], Array]:
  """loss_fn(params, x (B, T, F), labels (B,)) -> mean NLL for the recipe."""
  if formulation == "model":
    model = ell_gru_model(recipe)
    return lambda params, x, y: nll_loss(model.apply({"params": params}, x, train=False), y)
  if formulation == "fused_vjp":
    return lambda params, x, y: nll_loss(fused_gru_apply(params, x), y)
  raise ValueError(f"unknown formulation {formulation!r}; one of {FORMULATIONS}")


# ------------------------------------------------------------------- throughput

@dataclasses.dataclass
class EpochRunner:
  """Runs `steps` training steps (one jitted epoch) per call; keeps the state between calls."""
  run: Callable[[], Array]
  clips_per_call: int
  description: str

  def __call__(self) -> Array:
    return self.run()


def synthetic_batches(steps: int, batch_size: int, shape: tuple[int, ...], num_classes: int,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Random features (steps, B, *shape) and labels (steps, B): throughput does not depend on data."""
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((steps, batch_size) + tuple(shape), dtype=np.float32)
  y = rng.integers(0, num_classes, (steps, batch_size)).astype(np.int32)
  return x, y


def make_ell_gru_runner(recipe: EllGruRecipe = EllGruRecipe(), formulation: str = "fused_vjp",
                        num_devices: int | None = None, steps: int = 8, seed: int = 0,
                        params: Any | None = None) -> EpochRunner:
  """JAX training of the ELL GRU recipe on synthetic on-device batches; compiled on return."""
  mesh = parallel.batch_mesh(num_devices)
  parallel.check_batch_size(recipe.batch_size, mesh)
  optimizer = recipe_optimizer(recipe)
  params = init_ell_gru(recipe, seed) if params is None else params
  epoch = parallel.make_train_epoch(ell_gru_loss(recipe, formulation), optimizer, mesh)
  x, y = synthetic_batches(steps, recipe.batch_size, (recipe.num_frames, recipe.num_features),
                           recipe.num_classes, seed)
  x, y = parallel.shard_batch((x, y), mesh, axis=1)
  state = list(parallel.replicate((params, optimizer.init(params)), mesh))

  def run() -> Array:
    state[0], state[1], losses = epoch(state[0], state[1], x, y)
    return jax.block_until_ready(losses)

  run()  # compile
  return EpochRunner(run, steps * recipe.batch_size,
                     f"jax {formulation}, {mesh.devices.size} device(s), epoch scan of {steps}")


def make_model_runner(model, variables: dict[str, Any], batch_size: int, num_classes: int,
                      optimizer: optax.GradientTransformation | None = None, steps: int = 4,
                      seed: int = 0) -> EpochRunner:
  """Training throughput of any registry model (cross-entropy, dropout and BatchNorm in train
  mode), one device, on-device synthetic batches.

  Each call runs `steps` jitted, buffer-donating steps from Python, not one `lax.scan`: on
  XLA CPU the convolutions of a scanned (while-loop) body ran ~8x slower (torchaudio CNN,
  batch 64: 4 vs 35 clips/s, same minute), and dispatching a step costs microseconds.
  """
  optimizer = optimizer or optax.adam(1e-3)
  x, y = synthetic_batches(steps, batch_size, (model.num_frames, model.num_features),
                           num_classes, seed)
  params = variables["params"]
  model_state = {k: v for k, v in variables.items() if k != "params"}

  def loss_fn(params, model_state, x, y, key):
    if model_state:
      logits, new_state = model.apply({"params": params, **model_state}, x, train=True,
                                      rngs={"dropout": key}, mutable=list(model_state))
    else:
      logits, new_state = model.apply({"params": params}, x, train=True,
                                      rngs={"dropout": key}), {}
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, new_state

  @functools.partial(jax.jit, donate_argnums=0)
  def step(carry, x, y):
    params, opt_state, model_state, key = carry
    key, sub = jax.random.split(key)
    (loss, model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, model_state, x, y, sub)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state, model_state, key), loss

  batches = [(jnp.asarray(xb), jnp.asarray(yb)) for xb, yb in zip(x, y)]
  carry = [(params, optimizer.init(params), model_state, jax.random.PRNGKey(seed))]

  def run() -> Array:
    losses = []
    for xb, yb in batches:
      carry[0], loss = step(carry[0], xb, yb)
      losses.append(loss)
    return jax.block_until_ready(jnp.stack(losses))

  run()
  return EpochRunner(run, steps * batch_size, f"jax, 1 device, {steps} jitted steps")


def clips_per_second(runner: Callable[[], Any], clips_per_call: int, rounds: int = 3) -> float:
  """Best of `rounds` timed calls (the least disturbed by other work on the machine)."""
  best = float("inf")
  for _ in range(rounds):
    start = time.perf_counter()
    runner()
    best = min(best, time.perf_counter() - start)
  return clips_per_call / best
