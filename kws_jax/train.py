"""Training: `python -m kws_jax.train experiments/<name>.py --workdir DIR [--config.key=value ...]`.

One jitted function runs a chunk of `train.steps_per_call` optimizer steps as a
`lax.scan` (int16 clips -> augmentation -> features -> SpecAugment -> model ->
optax), so Python only slices batches and checks the losses between chunks.

Resuming is exact: the data order depends only on (seed, epoch) and every random
draw on (seed, step), checkpoints fall on chunk boundaries, and the running
epoch sums are saved with the weights. Rerunning a command therefore ends with
the same metrics as an uninterrupted run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys
import time
import warnings
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from kws_jax import config as config_lib
from kws_jax import errors
from kws_jax import metrics as metrics_lib
from kws_jax import trained as trained_lib
from kws_jax.errors import ConfigError, DataError, TrainingError

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "piecewise", "step", "cosine")


def default_config() -> ml_collections.ConfigDict:
  """The `train` section with every option; experiments update it."""
  c = ml_collections.ConfigDict()
  c.epochs = 10
  c.batch_size = 64
  c.eval_batch_size = 256
  c.optimizer = "adam"            # one of OPTIMIZERS
  c.learning_rate = 1e-3          # peak/initial rate
  c.momentum = 0.9                # sgd, rmsprop (0: none)
  c.nesterov = False
  c.rmsprop_decay = 0.99          # PyTorch's RMSprop alpha
  c.adam_b1 = 0.9
  c.adam_b2 = 0.999
  c.eps = 1e-8
  c.weight_decay = 0.0            # L2 added to the gradient (PyTorch style); adamw: decoupled
  c.grad_clip_norm = 0.0          # 0: no clipping
  c.label_smoothing = 0.0
  c.schedule = "constant"         # one of SCHEDULES
  c.piecewise_epochs = (0.0,)     # piecewise: epochs where each rate starts (first must be 0)
  c.piecewise_rates = (1e-3,)     # piecewise: the rates
  c.step_size_epochs = 5          # step: multiply by gamma every step_size_epochs (StepLR)
  c.step_gamma = 0.25
  c.warmup_epochs = 0.0           # cosine: linear warmup
  c.final_rate_fraction = 0.0     # cosine: end rate / peak rate
  c.spec_augment = ml_collections.ConfigDict(
      dict(time_masks=0, time_mask_max=0, freq_masks=0, freq_mask_max=0))
  c.steps_per_call = 8            # optimizer steps per jitted scan
  c.unroll_steps = False          # a Python loop instead of lax.scan (XLA:CPU convs in loops are slow)
  c.checkpoint_every_steps = 0    # 0: at the end of every epoch only
  c.keep_checkpoints = 2          # latest checkpoints kept (>= 2 so a bad one can fall back)
  c.check_nans = False            # op-level NaN checks (jax_debug_nans; slow), like TF --check_nans
  c.debug_inject_nan_at_step = -1 # testing the NaN guard: make the loss at this step NaN
  c.log_every_steps = 0           # train lines in metrics.jsonl; 0: one per chunk
  return c


# ---------------------------------------------------------------- optimizer


def make_schedule(train: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
  """The learning-rate schedule in optimizer steps (epochs in the config)."""
  rate = float(train.learning_rate)
  if train.schedule == "constant":
    return optax.constant_schedule(rate)
  if train.schedule == "piecewise":
    epochs, rates = tuple(train.piecewise_epochs), tuple(train.piecewise_rates)
    if len(epochs) != len(rates) or not epochs or epochs[0] != 0 or list(epochs) != sorted(epochs):
      raise ConfigError("train.piecewise_epochs must start at 0, increase, and have one entry "
                        f"per rate in train.piecewise_rates (got {epochs} and {rates})")
    starts = jnp.asarray([round(e * steps_per_epoch) for e in epochs[1:]], jnp.int32)
    values = jnp.asarray(rates, jnp.float32)
    return lambda step: values[jnp.searchsorted(starts, step, side="right")]
  if train.schedule == "step":
    every = max(1, int(train.step_size_epochs) * steps_per_epoch)
    return lambda step: rate * float(train.step_gamma) ** (step // every)
  if train.schedule == "cosine":
    total = max(1, int(train.epochs) * steps_per_epoch)
    # A run shorter than its warm-up (e.g. --config.train.epochs=1 to try a recipe) warms up
    # over all but its last step instead of failing.
    warmup = min(int(round(float(train.warmup_epochs) * steps_per_epoch)), total - 1)
    return optax.warmup_cosine_decay_schedule(
        0.0 if warmup else rate, rate, warmup, max(total, warmup + 1),
        end_value=rate * float(train.final_rate_fraction))
  raise ConfigError(f"train.schedule={train.schedule!r}: choose one of {', '.join(SCHEDULES)}")


def make_optimizer(train: ml_collections.ConfigDict,
                   schedule: optax.Schedule) -> optax.GradientTransformation:
  parts = []
  if train.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(float(train.grad_clip_norm)))
  decoupled = train.optimizer == "adamw"
  if train.weight_decay > 0 and not decoupled:
    parts.append(optax.add_decayed_weights(float(train.weight_decay)))
  momentum = float(train.momentum) or None
  if train.optimizer == "adam":
    parts.append(optax.adam(schedule, b1=train.adam_b1, b2=train.adam_b2, eps=train.eps))
  elif train.optimizer == "adamw":
    parts.append(optax.adamw(schedule, b1=train.adam_b1, b2=train.adam_b2, eps=train.eps,
                             weight_decay=float(train.weight_decay)))
  elif train.optimizer == "sgd":
    parts.append(optax.sgd(schedule, momentum=momentum, nesterov=bool(train.nesterov)))
  elif train.optimizer == "rmsprop":
    # eps outside the square root, as PyTorch's RMSprop (the ELL recipe's optimizer).
    parts.append(optax.rmsprop(schedule, decay=float(train.rmsprop_decay), eps=train.eps,
                               eps_in_sqrt=False, momentum=momentum,
                               nesterov=bool(train.nesterov)))
  else:
    raise ConfigError(f"train.optimizer={train.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
  return optax.chain(*parts)


# ---------------------------------------------------------------- jitted steps


def make_train_chunk(model, frontend_params, augment: Callable, tx: optax.GradientTransformation,
                     train: ml_collections.ConfigDict, num_classes: int, seed: int) -> Callable:
  """jit(carry, audio (K,B,S) int16, labels (K,B), steps (K,), valid (K,), nan_step) -> ...

  Returns (carry, (loss (K,), correct (K,))). `carry` is (params, model_state,
  opt_state); steps with valid=False leave it as is (they pad the last chunk of an
  epoch so every chunk has one compiled shape). `nan_step` >= 0 poisons the loss of
  that step (testing the NaN guard); it is an argument, not a constant, so the
  compiled function is the same with and without it.
  """
  from kws_jax.models import common as models_common
  from kws_jax.ops import augment as augment_ops
  from kws_jax.ops import frontend

  base_key = jax.random.fold_in(jax.random.key(seed), 1)
  spec = train.spec_augment
  use_spec = (spec.time_masks > 0 and spec.time_mask_max > 0) or (
      spec.freq_masks > 0 and spec.freq_mask_max > 0)
  smoothing = float(train.label_smoothing)

  def loss_and_logits(params, model_state, features, labels, key):
    variables = {"params": params, **model_state}
    if model_state:
      logits, updates = model.apply(variables, features, train=True, rngs={"dropout": key},
                                    mutable=list(model_state))
    else:
      logits, updates = model.apply(variables, features, train=True, rngs={"dropout": key}), {}
    targets = jax.nn.one_hot(labels, num_classes)
    if smoothing > 0:
      targets = optax.smooth_labels(targets, smoothing)
    logits = logits.astype(jnp.float32)
    if logits.ndim == 3:
      # An ensemble's members (B, M, C): each member's own loss, summed over members so each
      # gets the gradient it would get alone (reported: their mean); the prediction is the
      # averaged posterior, as at inference.
      member_losses = optax.softmax_cross_entropy(logits, targets[:, None, :]).mean(0)
      loss, reported = member_losses.sum(), member_losses.mean()
      logits = models_common.average_members(logits)
    else:
      loss = reported = optax.softmax_cross_entropy(logits, targets).mean()
    return loss, (logits, dict(updates), reported)

  def one_step(carry, inputs, nan_step):
    audio, labels, step, valid = inputs

    def run(carry):
      params, model_state, opt_state = carry
      key = jax.random.fold_in(base_key, step)
      k_augment, k_spec, k_dropout = jax.random.split(key, 3)
      clean = augment(k_augment, audio, labels)
      features = frontend.featurize(frontend_params, clean)
      if use_spec:
        keys = jax.random.split(k_spec, features.shape[0])
        features = jax.vmap(lambda k, f: augment_ops.spec_augment(
            k, f, time_masks=int(spec.time_masks), time_mask_max=int(spec.time_mask_max),
            freq_masks=int(spec.freq_masks), freq_mask_max=int(spec.freq_mask_max)))(keys, features)
      (_, (logits, updates, loss)), grads = jax.value_and_grad(loss_and_logits, has_aux=True)(
          params, model_state, features, labels, k_dropout)
      poison = jnp.where(step == nan_step, jnp.float32(jnp.nan), jnp.float32(1.0))
      loss = loss * poison
      grads = jax.tree.map(lambda g: g * poison, grads)
      updates_opt, opt_state = tx.update(grads, opt_state, params)
      params = optax.apply_updates(params, updates_opt)
      model_state = {**model_state, **updates}
      correct = jnp.sum(jnp.argmax(logits, -1) == labels).astype(jnp.int32)
      return (params, model_state, opt_state), (loss, correct)

    # A select, not lax.cond: XLA:CPU runs convolutions inside a conditional's branch
    # ~6x slower (torchaudio CNN, batch 64, same minute: 7.8-10.1 vs 1.4-1.7 s per step).
    # Padded steps only occur in an epoch's last chunk, so computing and discarding them
    # costs little.
    new_carry, (loss, correct) = run(carry)
    new_carry = jax.tree.map(lambda new, old: jnp.where(valid, new, old), new_carry, carry)
    return new_carry, (jnp.where(valid, loss, 0.0), jnp.where(valid, correct, 0))

  @jax.jit
  def train_chunk(carry, audio, labels, steps, valid, nan_step):
    if not train.get("unroll_steps"):
      return jax.lax.scan(lambda c, x: one_step(c, x, nan_step), carry,
                          (audio, labels, steps, valid))
    # A Python loop, not lax.scan(unroll=True): that still emits a (one-trip) while loop,
    # and XLA:CPU runs convolutions inside a loop body ~6x slower (torchaudio CNN, batch
    # 64: 7.5 vs 1.3 s per step, same minute).
    outputs = []
    for index in range(audio.shape[0]):
      carry, out = one_step(carry, (audio[index], labels[index], steps[index], valid[index]),
                            nan_step)
      outputs.append(out)
    return carry, jax.tree.map(lambda *xs: jnp.stack(xs), *outputs)

  return train_chunk


def make_eval_logits(model, frontend_params) -> Callable:
  from kws_jax.ops import frontend

  @jax.jit
  def eval_logits(variables, audio):
    return model.apply(variables, frontend.featurize(frontend_params, audio), train=False)
  return eval_logits


def evaluate_arrays(logits_fn: Callable, variables, audio: np.ndarray, labels: np.ndarray,
                    batch_size: int, num_classes: int) -> tuple[np.ndarray, float]:
  """Confusion matrix and mean cross-entropy of clean clips; batches padded to one shape."""
  matrix = np.zeros((num_classes, num_classes), np.int64)
  total_loss, count = 0.0, 0
  for start in range(0, len(audio), batch_size):
    batch = np.asarray(audio[start:start + batch_size])
    n = len(batch)
    if n < batch_size:
      batch = np.concatenate([batch, np.zeros((batch_size - n,) + batch.shape[1:], batch.dtype)])
    logits = np.asarray(logits_fn(variables, batch))[:n].astype(np.float64)
    truth = np.asarray(labels[start:start + n])
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    total_loss += float(-log_probs[np.arange(n), truth].sum())
    count += n
    matrix += metrics_lib.confusion_matrix(truth, logits.argmax(-1), num_classes)
  return matrix, (total_loss / count if count else float("nan"))


# ---------------------------------------------------------------- the run


class _MetricsLog:
  """metrics.jsonl (truncated to the resumed step) and TensorBoard events."""

  def __init__(self, workdir: pathlib.Path, resume_step: int):
    self.path = workdir / "metrics.jsonl"
    kept = []
    if self.path.exists():
      for line in self.path.read_text().splitlines():
        try:
          record = json.loads(line)
        except json.JSONDecodeError:
          continue  # a line cut by a kill
        if record.get("step", 0) <= resume_step:
          kept.append(line)
    self.path.write_text("".join(line + "\n" for line in kept))
    self.file = self.path.open("a")
    try:
      from tensorboardX import SummaryWriter
      # purge_step drops events a killed run wrote after its last checkpoint.
      self.writer = SummaryWriter(str(workdir / "tensorboard"), purge_step=resume_step + 1)
    except ImportError:  # TensorBoard events are optional; metrics.jsonl is the record.
      self.writer = None

  def write(self, record: dict) -> None:
    self.file.write(json.dumps(record) + "\n")
    self.file.flush()
    if self.writer is not None:
      kind = record.get("kind", "train")
      for key, value in record.items():
        if key not in ("step", "epoch", "kind") and isinstance(value, (int, float)):
          self.writer.add_scalar(f"{kind}/{key}", value, record["step"])
      self.writer.flush()

  def close(self) -> None:
    self.file.close()
    if self.writer is not None:
      self.writer.close()


def _check_data_paths(data: ml_collections.ConfigDict) -> None:
  """A clear DataError for a missing real-data folder, naming the override."""
  if data.get("source", "folder") == "synthetic":
    return
  # speech_commands' data_dir is tfds' output folder, which tfds creates on first use.
  keys = ("background_dir",) if data.get("source") == "speech_commands" else (
      "data_dir", "background_dir")
  for key in keys:
    value = data.get(key)
    if value and not pathlib.Path(value).exists():
      raise DataError(f"data.{key}={value}: no such folder; real Speech Commands data is "
                      "expected beside the checkout in ../shared/data, or point to it with "
                      f"--config.data.{key}=PATH")
  for value in data.get("extra_dirs", ()) or ():
    if value and not pathlib.Path(value).exists():
      raise DataError(f"data.extra_dirs: {value}: no such folder; fix it with "
                      "--config.data.extra_dirs=PATH,PATH or drop it with --config.data.extra_dirs=()")


def _drop_evaluation_speakers(ds) -> None:
  """Removes training clips of validation/test speakers (in place).

  The hash split keeps each speaker of one folder in one split, but extra training
  folders (data.extra_dirs, e.g. Speech Commands v0.01 clips) can hold the same
  speakers; training on them would inflate the held-out accuracy.
  """
  held_out = set(map(str, ds.validation.speakers)) | set(map(str, ds.test.speakers))
  held_out.discard("")  # generated silence clips have no speaker
  if not held_out or not len(ds.train):
    return
  keep = ~np.isin(ds.train.speakers.astype(str), list(held_out))
  dropped = int((~keep).sum())
  if dropped:
    print(f"dropped {dropped} training clips of validation/test speakers", file=sys.stderr)
    ds.train = type(ds.train)(ds.train.audio[keep], ds.train.labels[keep],
                              ds.train.speakers[keep])


def _validate(config: ml_collections.ConfigDict) -> None:
  for section in ("data", "features", "model", "train"):
    if section not in config:
      raise ConfigError(f"the experiment has no `{section}` section")
  if "seed" not in config:
    raise ConfigError("the experiment has no `seed`")
  if "name" not in config.model:
    raise ConfigError("config.model needs a `name` (see kws_jax.models.list_models())")
  known = set(default_config().keys())
  for key in config.train.keys():
    if key not in known:
      raise ConfigError(f"config.train.{key}: unknown training option; known: {', '.join(sorted(known))}")
  train = config.train
  if train.optimizer not in OPTIMIZERS:
    raise ConfigError(f"train.optimizer={train.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
  if train.schedule not in SCHEDULES:
    raise ConfigError(f"train.schedule={train.schedule!r}: choose one of {', '.join(SCHEDULES)}")
  for key in ("epochs", "batch_size", "eval_batch_size", "steps_per_call"):
    if int(train[key]) < 1:
      raise ConfigError(f"train.{key}={train[key]}: must be at least 1")
  if int(train.keep_checkpoints) < 1:
    raise ConfigError("train.keep_checkpoints must be at least 1")


def _prepare_workdir(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
  """Writes config.json, or checks that a resumed run has the same config."""
  workdir.mkdir(parents=True, exist_ok=True)
  path = workdir / "config.json"
  current = config_lib.to_dict(config)
  if path.exists():
    try:
      saved = json.loads(path.read_text())
    except json.JSONDecodeError:
      saved = None
    # Only a run with checkpoints is resumed; a run that failed before its first may change.
    if saved is not None and saved != current and any(
        trained_lib.checkpoint_dir(workdir, trained_lib.LATEST).glob("[0-9]*")):
      changed = sorted(_diff_keys(saved, current))
      raise ConfigError(
          f"{workdir} holds a run with a different config (changed: {', '.join(changed[:8])}); "
          "resuming needs the same config: use a new --workdir, or delete the old one")
  tmp = path.with_suffix(".json.tmp")
  tmp.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
  os.replace(tmp, path)


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
  if isinstance(a, dict) and isinstance(b, dict):
    out = []
    for key in sorted(set(a) | set(b)):
      out += _diff_keys(a.get(key, "<missing>"), b.get(key, "<missing>"), f"{prefix}{key}.")
    return out
  return [] if a == b else [prefix.rstrip(".")]


def _progress(total: int, initial: int, desc: str):
  from tqdm.auto import tqdm
  return tqdm(total=total, initial=initial, desc=desc, unit="step", leave=False,
              dynamic_ncols=True, disable=None, file=sys.stderr)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict:
  """Trains (resuming from `workdir` when it holds a checkpoint) and returns results.json's dict."""
  from kws_jax import models
  from kws_jax.data import pipeline

  _validate(config)
  workdir = pathlib.Path(workdir).resolve()
  train = config.train
  seed = int(config.seed)
  _check_data_paths(config.data)
  _prepare_workdir(workdir, config)

  if train.check_nans:
    jax.config.update("jax_debug_nans", True)

  ds = pipeline.load_dataset(config.data, seed)
  _drop_evaluation_speakers(ds)
  label_names = list(ds.label_names)
  num_classes = len(label_names)
  (workdir / "labels.txt").write_text("".join(name + "\n" for name in label_names))

  frontend_params, model, num_frames, num_features = trained_lib.build(
      config, num_classes, ds.clip_samples)
  first_epoch = pipeline.training_epoch(ds, config.data, 0, seed)
  batch_size = int(train.batch_size)
  steps_per_epoch = len(first_epoch.labels) // batch_size
  if steps_per_epoch < 1:
    raise DataError(f"the training split has {len(first_epoch.labels)} clips, fewer than one "
                    f"batch of {batch_size}; lower --config.train.batch_size")
  chunk = int(train.steps_per_call)
  every = int(train.checkpoint_every_steps)
  every = 0 if every <= 0 else chunk * math.ceil(every / chunk)  # on chunk boundaries
  schedule = make_schedule(train, steps_per_epoch)
  tx = make_optimizer(train, schedule)

  variables = trained_lib.init_variables(model, num_frames, num_features,
                                         jax.random.fold_in(jax.random.key(seed), 0))
  params = variables["params"]
  model_state = {k: v for k, v in variables.items() if k != "params"}
  opt_state = tx.init(params)

  latest = trained_lib.checkpoint_manager(workdir, trained_lib.LATEST,
                                          max_to_keep=int(train.keep_checkpoints))
  best = trained_lib.checkpoint_manager(workdir, trained_lib.BEST, max_to_keep=1)
  static_meta = dict(format=trained_lib.CHECKPOINT_FORMAT, label_names=label_names,
                     clip_samples=int(ds.clip_samples), sample_rate=int(ds.sample_rate),
                     num_frames=int(num_frames), num_features=int(num_features))

  progress = dict(step=0, epoch=0, batch=0, sum_loss=0.0, sum_correct=0, sum_count=0,
                  best_accuracy=-1.0, best_step=-1, best_epoch=-1, training_seconds=0.0)
  found = trained_lib.restore_latest_good(latest, {
      "model": ocp.args.StandardRestore(
          jax.tree.map(ocp.utils.to_shape_dtype_struct, {"params": params, **model_state})),
      "opt": ocp.args.StandardRestore(jax.tree.map(ocp.utils.to_shape_dtype_struct, opt_state)),
      "meta": ocp.args.JsonRestore(),
  })
  if found is not None:
    step, restored = found
    saved_progress = restored.meta["progress"]
    params = restored.model["params"]
    model_state = {k: v for k, v in restored.model.items() if k != "params"}
    opt_state = restored.opt
    progress.update(saved_progress)
    # Checkpoints newer than the one resumed from are from a killed or failed future.
    for manager in (latest, best):
      for newer in [s for s in manager.all_steps() if s > step]:
        manager.delete(newer)
    print(f"resuming from {latest.directory}/{step} (epoch {progress['epoch'] + 1}, "
          f"step {step})", file=sys.stderr)
  start_step = int(progress["step"])

  train_chunk = make_train_chunk(model, frontend_params, pipeline.make_augment_fn(config.data, ds),
                                 tx, train, num_classes, seed)
  eval_logits = make_eval_logits(model, frontend_params)
  log = _MetricsLog(workdir, start_step)
  carry = (params, model_state, opt_state)
  nan_step = np.int32(train.debug_inject_nan_at_step)
  epochs = int(train.epochs)
  run_started = time.perf_counter()
  seconds_before = float(progress["training_seconds"])

  def save_latest() -> None:
    progress["training_seconds"] = seconds_before + time.perf_counter() - run_started
    latest.save(progress["step"], args=ocp.args.Composite(
        model=ocp.args.StandardSave({"params": carry[0], **carry[1]}),
        opt=ocp.args.StandardSave(carry[2]),
        meta=ocp.args.JsonSave({**static_meta, "progress": dict(progress)})), force=True)

  try:
    while progress["epoch"] < epochs:
      epoch = int(progress["epoch"])
      epoch_started = time.perf_counter()
      split = first_epoch if epoch == 0 else pipeline.training_epoch(ds, config.data, epoch, seed)
      num_batches = len(split.labels) // batch_size
      audio = np.asarray(split.audio)
      labels = np.asarray(split.labels, np.int32)
      bar = _progress(num_batches, int(progress["batch"]), f"epoch {epoch + 1}/{epochs}")
      while progress["batch"] < num_batches:
        first = int(progress["batch"])
        count = min(chunk, num_batches - first)
        lo, hi = first * batch_size, (first + count) * batch_size
        audio_chunk = np.zeros((chunk, batch_size) + audio.shape[1:], audio.dtype)
        label_chunk = np.zeros((chunk, batch_size), np.int32)
        audio_chunk[:count] = audio[lo:hi].reshape((count, batch_size) + audio.shape[1:])
        label_chunk[:count] = labels[lo:hi].reshape(count, batch_size)
        steps = progress["step"] + np.arange(chunk, dtype=np.int32)
        valid = np.arange(chunk) < count
        new_carry, (losses, correct) = train_chunk(carry, audio_chunk, label_chunk, steps, valid,
                                                   nan_step)
        losses = np.asarray(losses)[:count]
        correct = np.asarray(correct)[:count]
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
          bad_step = int(progress["step"] + bad[0])
          good = latest.latest_step()
          kept = (f"last good checkpoint: {latest.directory}/{good}" if good is not None
                  else "no checkpoint was saved yet")
          raise TrainingError(
              f"non-finite loss ({losses[bad[0]]}) at step {bad_step} (epoch {epoch + 1}); "
              f"{kept}; lower --config.train.learning_rate or set "
              "--config.train.grad_clip_norm=1.0")
        carry = new_carry
        progress["step"] += count
        progress["batch"] += count
        progress["sum_loss"] += float(np.sum(losses.astype(np.float64)))
        progress["sum_correct"] += int(correct.sum())
        progress["sum_count"] += count * batch_size
        chunk_loss = float(losses.mean())
        chunk_accuracy = float(correct.sum()) / (count * batch_size)
        bar.update(count)
        bar.set_postfix(loss=f"{chunk_loss:.3f}", acc=f"{chunk_accuracy:.3f}")
        log_every = int(train.log_every_steps)
        if log_every <= 0 or progress["step"] // log_every != (progress["step"] - count) // log_every:
          log.write(dict(kind="train", step=progress["step"], epoch=epoch + 1,
                         loss=chunk_loss, accuracy=chunk_accuracy,
                         learning_rate=float(schedule(progress["step"] - 1))))
        if (every and progress["step"] % every == 0 and progress["batch"] < num_batches):
          save_latest()
      bar.close()

      variables = {"params": carry[0], **carry[1]}
      matrix, val_loss = evaluate_arrays(eval_logits, variables, ds.validation.audio,
                                         ds.validation.labels, int(train.eval_batch_size),
                                         num_classes)
      has_validation = bool(matrix.sum())
      val_accuracy = float(np.trace(matrix) / matrix.sum()) if has_validation else None
      record = dict(kind="epoch", step=progress["step"], epoch=epoch + 1,
                    train_loss=progress["sum_loss"] / max(1, num_batches),
                    train_accuracy=progress["sum_correct"] / max(1, progress["sum_count"]),
                    val_loss=val_loss, val_accuracy=val_accuracy,
                    learning_rate=float(schedule(max(0, progress["step"] - 1))),
                    epoch_seconds=time.perf_counter() - epoch_started)
      log.write(record)
      # Without validation clips the newest weights count as the best.
      improved = not has_validation or val_accuracy > progress["best_accuracy"]
      validation_text = (f"val loss {val_loss:.4f} acc {val_accuracy:.4f}"
                         f"{' (best)' if improved else ''}" if has_validation
                         else "no validation clips")
      print(f"epoch {epoch + 1}/{epochs} step {progress['step']}: "
            f"loss {record['train_loss']:.4f} acc {record['train_accuracy']:.4f} | "
            f"{validation_text} | {record['epoch_seconds']:.1f} s", file=sys.stderr)
      progress.update(epoch=epoch + 1, batch=0, sum_loss=0.0, sum_correct=0, sum_count=0)
      if improved:
        progress.update(best_accuracy=val_accuracy if has_validation else -1.0,
                        best_step=progress["step"],
                        best_epoch=epoch + 1)
        # Best before latest: a kill in between resumes the epoch and saves both again.
        best.save(progress["step"], args=ocp.args.Composite(
            model=ocp.args.StandardSave(variables),
            meta=ocp.args.JsonSave({**static_meta, "progress": dict(progress)})), force=True)
      save_latest()
  finally:
    log.close()
    latest.close()
    best.close()

  results = _final_results(workdir, ds, label_names, progress, train, models, eval_logits,
                           steps_per_epoch, len(first_epoch.labels))
  return results


def _final_results(workdir: pathlib.Path, ds, label_names: list[str], progress: dict,
                   train: ml_collections.ConfigDict, models, eval_logits: Callable,
                   steps_per_epoch: int, epoch_size: int) -> dict:
  from kws_jax import plots

  # Through trained.load, as every later stage reads the model; the training run's jitted
  # eval function takes its variables (same model, so no second compile).
  t = trained_lib.load(workdir, trained_lib.BEST)
  matrix, test_loss = evaluate_arrays(eval_logits, t.variables, ds.test.audio, ds.test.labels,
                                      int(train.eval_batch_size), len(label_names))
  summary = metrics_lib.summarize(matrix, label_names)
  hop_seconds = t.frontend.cfg.hop_size / t.frontend.cfg.sample_rate
  results = dict(
      accuracy=summary["accuracy"],
      test_loss=test_loss,
      num_examples=summary["num_examples"],
      labels=label_names,
      confusion_matrix=summary["confusion_matrix"],
      per_class=summary["per_class"],
      validation_accuracy=progress["best_accuracy"],
      best_epoch=progress["best_epoch"],
      best_step=progress["best_step"],
      steps=progress["step"],
      epochs=progress["epoch"],
      steps_per_epoch=steps_per_epoch,
      num_params=int(models.count_params(t.variables["params"])),
      macs_per_second=int(models.macs_per_second(t.model, t.variables, hop_seconds)),
      model=t.config.model.name,
      input_shape=[t.num_frames, t.num_features],
      training_seconds=progress["training_seconds"],
      data_sizes=dict(train=int(len(ds.train.labels)), train_epoch=int(epoch_size),
                      validation=int(len(ds.validation.labels)), test=int(len(ds.test.labels))),
  )
  tmp = workdir / "results.json.tmp"
  tmp.write_text(json.dumps(results, indent=2) + "\n")
  os.replace(tmp, workdir / "results.json")
  plots.confusion_matrix_png(matrix, label_names, workdir / "confusion_matrix.png",
                             title=f"{results['model']}: test accuracy {results['accuracy']:.3f}"
                             if results["accuracy"] is not None else results["model"])
  plots.training_curves_png(workdir / "metrics.jsonl", workdir / "training_curves.png")
  return results


def main(argv: Sequence[str]) -> int:
  rest, overrides = config_lib.split_overrides(argv)
  parser = argparse.ArgumentParser(
      prog="python -m kws_jax.train",
      description="Train a keyword spotter; rerun the same command to resume.",
      epilog="Override any config value with --config.section.key=value "
             "(e.g. --config.train.epochs=5).")
  parser.add_argument("experiment", help="experiment file, e.g. experiments/quickstart.py")
  parser.add_argument("--workdir", required=True, help="where checkpoints and results go")
  args = parser.parse_args(rest)
  config = config_lib.load_experiment(args.experiment)
  config_lib.apply_overrides(config, overrides)
  results = train_and_evaluate(config, args.workdir)
  accuracy = results["accuracy"]
  print(f"test accuracy {accuracy:.4f} on {results['num_examples']} clips "
        f"({results['num_params']} parameters); results in {pathlib.Path(args.workdir) / 'results.json'}"
        if accuracy is not None else "no test clips; results in results.json")
  return 0


if __name__ == "__main__":
  errors.run_cli(main)
