"""The training run: setup, resume, the epoch loop, validation, checkpoints and results.

`train_and_evaluate(config, workdir)` trains (resuming from `workdir` when it holds a
checkpoint) and writes results.json. Resuming is exact: the data order depends
only on (seed, epoch) and every random draw on (seed, step), checkpoints fall on
chunk boundaries, and the running epoch sums are saved with the weights, so
rerunning a command ends with the same metrics as an uninterrupted run.

The run is data-parallel over `train.num_devices` devices of every process (0: all;
`parallel.training_mesh`): each global batch is split over the mesh and the jitted
step keeps the one-device semantics (`step.make_train_chunk`; BatchNorm uses
global-batch statistics). With several processes (`distributed.initialize`) each
feeds its own rows of every batch, evaluation is split the same way, and only
process 0 writes files and prints (`kws_jax.train.distributed`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import sys
import time
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from tqdm.auto import tqdm

from kws_jax import models
from kws_jax.data import augmentation, pipeline
from kws_jax.data import checks as data_checks
from kws_jax.errors import DataError, TrainingError
from kws_jax.evaluation import classification, plots
from kws_jax.models import builder
from kws_jax.runs import checkpoints, trained_model
from kws_jax.train import distill, distributed, frozen, optimizer, parallel, step
from kws_jax.train import workdir as workdir_lib
from kws_jax.train.metrics_log import MetricsLog, NullLog


def _fresh_progress() -> dict[str, Any]:
  return dict(step=0, epoch=0, batch=0, sum_loss=0.0, sum_correct=0, sum_count=0,
              best_accuracy=-1.0, best_step=-1, best_epoch=-1, training_seconds=0.0)


@dataclasses.dataclass
class TrainingRun:
  """What one run holds between epochs: data, model, optimizer, checkpoints and progress."""
  config: ml_collections.ConfigDict
  workdir: pathlib.Path
  ds: pipeline.Dataset
  first_epoch: pipeline.Split
  label_names: list[str]
  steps_per_epoch: int
  schedule: optax.Schedule
  train_chunk: Callable
  eval_logits: Callable
  carry: tuple            # (params, model_state, opt_state)
  latest: ocp.CheckpointManager
  best: ocp.CheckpointManager
  static_meta: dict
  mesh: jax.sharding.Mesh
  progress: dict = dataclasses.field(default_factory=_fresh_progress)
  started: float = dataclasses.field(default_factory=time.perf_counter)
  seconds_before: float = 0.0

  @property
  def variables(self) -> dict:
    return {"params": self.carry[0], **self.carry[1]}

  def save_latest(self) -> None:
    self.progress["training_seconds"] = (self.seconds_before + time.perf_counter()
                                         - self.started)
    params, model_state, opt_state = self.carry
    self.latest.save(self.progress["step"], args=ocp.args.Composite(
        model=ocp.args.StandardSave({"params": params, **model_state}),
        opt=ocp.args.StandardSave(opt_state),
        meta=ocp.args.JsonSave({**self.static_meta, "progress": dict(self.progress)})),
        force=True)

  def save_best(self) -> None:
    self.best.save(self.progress["step"], args=ocp.args.Composite(
        model=ocp.args.StandardSave(self.variables),
        meta=ocp.args.JsonSave({**self.static_meta, "progress": dict(self.progress)})),
        force=True)

  def close(self) -> None:
    self.latest.close()
    self.best.close()


def setup(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> TrainingRun:
  """Loads the data, builds model and optimizer, and opens the checkpoints (fresh weights)."""
  train, seed = config.train, int(config.seed)
  mesh = parallel.training_mesh(int(train.get("num_devices", 0)))
  parallel.check_batch_size(int(train.batch_size), mesh, "train.batch_size")
  parallel.check_batch_size(int(train.eval_batch_size), mesh, "train.eval_batch_size")
  if mesh.size > 1 and distributed.is_primary():
    print(f"data-parallel over {mesh.size} {mesh.devices.flat[0].platform} devices "
          "(--config.train.num_devices=1 for one)", file=sys.stderr)
  # Process 0 first: loading may build the shared tfds cache or the synthetic set.
  ds = distributed.primary_first("load_dataset", lambda: pipeline.load_dataset(config.data, seed))
  data_checks.drop_evaluation_speakers(ds)
  label_names = list(ds.label_names)
  if distributed.is_primary():
    (workdir / "labels.txt").write_text("".join(name + "\n" for name in label_names))

  frontend_params, model, num_frames, num_features = builder.build(
      config, len(label_names), ds.clip_samples)
  first_epoch = pipeline.training_epoch(ds, config.data, 0, seed)
  batch_size = int(train.batch_size)
  steps_per_epoch = len(first_epoch.labels) // batch_size
  if steps_per_epoch < 1:
    raise DataError(f"the training split has {len(first_epoch.labels)} clips, fewer than one "
                    f"batch of {batch_size}; lower --config.train.batch_size")
  schedule = optimizer.make_schedule(train, steps_per_epoch)
  tx = optimizer.make_optimizer(train, schedule)
  variables = builder.init_variables(model, num_frames, num_features,
                                     jax.random.fold_in(jax.random.key(seed), 0))
  params = variables["params"]
  model_state = {k: v for k, v in variables.items() if k != "params"}
  tx = frozen.split_optimizer(tx, model, params, train, schedule)  # pretrained parts
  teacher = distill.make_teacher(config.get("distill"), label_names)
  train_chunk = step.make_train_chunk(model, frontend_params,
                                      augmentation.make_augment_fn(config.data, ds), tx, train,
                                      len(label_names), seed, teacher=teacher,
                                      distill=config.get("distill"), mesh=mesh)
  return TrainingRun(
      config=config, workdir=workdir, ds=ds, first_epoch=first_epoch, label_names=label_names,
      steps_per_epoch=steps_per_epoch, schedule=schedule, train_chunk=train_chunk,
      eval_logits=parallel.sharded_logits_fn(builder.make_logits_fn(model, frontend_params),
                                             mesh),
      carry=parallel.replicate((params, model_state, tx.init(params)), mesh), mesh=mesh,
      latest=checkpoints.checkpoint_manager(workdir, checkpoints.LATEST,
                                            max_to_keep=int(train.keep_checkpoints)),
      best=checkpoints.checkpoint_manager(workdir, checkpoints.BEST, max_to_keep=1),
      static_meta=dict(format=checkpoints.CHECKPOINT_FORMAT, label_names=label_names,
                       clip_samples=int(ds.clip_samples), sample_rate=int(ds.sample_rate),
                       num_frames=int(num_frames), num_features=int(num_features)))


def resume(run: TrainingRun) -> bool:
  """Restores the newest readable `latest` checkpoint into `run`; False when there is none."""
  params, model_state, opt_state = run.carry
  found = checkpoints.restore_latest_good(run.latest, {
      "model": ocp.args.StandardRestore(
          jax.tree.map(ocp.utils.to_shape_dtype_struct, {"params": params, **model_state})),
      "opt": ocp.args.StandardRestore(jax.tree.map(ocp.utils.to_shape_dtype_struct, opt_state)),
      "meta": ocp.args.JsonRestore(),
  })
  if found is None:
    return False
  saved_step, restored = found
  run.carry = (restored.model["params"],
               {k: v for k, v in restored.model.items() if k != "params"}, restored.opt)
  run.progress.update(restored.meta["progress"])
  run.seconds_before = float(run.progress["training_seconds"])
  # Checkpoints newer than the one resumed from are from a killed or failed future.
  for manager in (run.latest, run.best):
    for newer in [s for s in manager.all_steps() if s > saved_step]:
      manager.delete(newer)
  epochs = int(run.config.train.epochs)
  if distributed.is_primary():
    _say_resumed(run, saved_step, epochs)
  return True


def _say_resumed(run: TrainingRun, saved_step: int, epochs: int) -> None:
  if run.progress["epoch"] >= epochs:
    print(f"{run.workdir} already finished training ({epochs} epochs, step {saved_step}): "
          "testing its best checkpoint again and rewriting results.json, "
          "confusion_matrix.png and training_curves.png", file=sys.stderr)
  else:
    print(f"resuming from {run.latest.directory}/{saved_step} "
          f"(epoch {run.progress['epoch'] + 1}, step {saved_step})", file=sys.stderr)


def _chunk_arrays(audio: np.ndarray, labels: np.ndarray, first: int, count: int, chunk: int,
                  batch_size: int, rows: slice) -> tuple[np.ndarray, np.ndarray]:
  """`count` batches from batch `first`, zero-padded to `chunk` batches (one compiled shape).

  Only `rows` of each batch: this process's share (all of it in a one-process run).
  """
  lo, hi = first * batch_size, (first + count) * batch_size
  share = len(range(batch_size)[rows])
  audio_chunk = np.zeros((chunk, share) + audio.shape[1:], audio.dtype)
  label_chunk = np.zeros((chunk, share), np.int32)
  audio_chunk[:count] = audio[lo:hi].reshape((count, batch_size) + audio.shape[1:])[:, rows]
  label_chunk[:count] = labels[lo:hi].reshape(count, batch_size)[:, rows]
  return audio_chunk, label_chunk


def _check_finite(run: TrainingRun, losses: np.ndarray, epoch: int) -> None:
  bad = np.flatnonzero(~np.isfinite(losses))
  if not bad.size:
    return
  bad_step = int(run.progress["step"] + bad[0])
  good = run.latest.latest_step()
  kept = (f"last good checkpoint: {run.latest.directory}/{good}" if good is not None
          else "no checkpoint was saved yet")
  raise TrainingError(
      f"non-finite loss ({losses[bad[0]]}) at step {bad_step} (epoch {epoch + 1}); "
      f"{kept}; lower --config.train.learning_rate or set --config.train.grad_clip_norm=1.0")


def train_epoch(run: TrainingRun, epoch: int, log: MetricsLog) -> int:
  """Runs the rest of epoch `epoch` (from `progress["batch"]`); returns its number of batches."""
  train, seed = run.config.train, int(run.config.seed)
  progress = run.progress
  split = (run.first_epoch if epoch == 0
           else pipeline.training_epoch(run.ds, run.config.data, epoch, seed))
  batch_size, chunk = int(train.batch_size), int(train.steps_per_call)
  every = int(train.checkpoint_every_steps)
  every = 0 if every <= 0 else chunk * math.ceil(every / chunk)  # on chunk boundaries
  log_every = int(train.log_every_steps)
  nan_step = np.int32(train.debug_inject_nan_at_step)
  num_batches = len(split.labels) // batch_size
  audio, labels = np.asarray(split.audio), np.asarray(split.labels, np.int32)
  rows = parallel.process_rows(batch_size, run.mesh)
  bar = tqdm(total=num_batches, initial=int(progress["batch"]),
             desc=f"epoch {epoch + 1}/{int(train.epochs)}", unit="step", leave=False,
             dynamic_ncols=True, disable=None if distributed.is_primary() else True,
             file=sys.stderr)
  while progress["batch"] < num_batches:
    count = min(chunk, num_batches - int(progress["batch"]))
    audio_chunk, label_chunk = parallel.put_batches(
        run.mesh, *_chunk_arrays(audio, labels, int(progress["batch"]), count, chunk, batch_size,
                                 rows), local=True)
    steps = progress["step"] + np.arange(chunk, dtype=np.int32)
    new_carry, (losses, correct) = run.train_chunk(run.carry, audio_chunk, label_chunk, steps,
                                                   np.arange(chunk) < count, nan_step)
    losses, correct = np.asarray(losses)[:count], np.asarray(correct)[:count]
    _check_finite(run, losses, epoch)
    run.carry = new_carry
    progress["step"] += count
    progress["batch"] += count
    progress["sum_loss"] += float(np.sum(losses.astype(np.float64)))
    progress["sum_correct"] += int(correct.sum())
    progress["sum_count"] += count * batch_size
    chunk_loss = float(losses.mean())
    chunk_accuracy = float(correct.sum()) / (count * batch_size)
    bar.update(count)
    bar.set_postfix(loss=f"{chunk_loss:.3f}", acc=f"{chunk_accuracy:.3f}")
    if log_every <= 0 or progress["step"] // log_every != (progress["step"] - count) // log_every:
      log.write(dict(kind="train", step=progress["step"], epoch=epoch + 1, loss=chunk_loss,
                     accuracy=chunk_accuracy,
                     learning_rate=float(run.schedule(progress["step"] - 1))))
    if every and progress["step"] % every == 0 and progress["batch"] < num_batches:
      run.save_latest()
  bar.close()
  return num_batches


def end_epoch(run: TrainingRun, epoch: int, num_batches: int, seconds: float,
              log: MetricsLog) -> None:
  """Validates, logs the epoch, and checkpoints `best` (when improved) then `latest`."""
  progress, train = run.progress, run.config.train
  matrix, val_loss = classification.evaluate_arrays(
      run.eval_logits, run.variables, run.ds.validation.audio, run.ds.validation.labels,
      int(train.eval_batch_size), len(run.label_names))
  has_validation = bool(matrix.sum())
  val_accuracy = float(np.trace(matrix) / matrix.sum()) if has_validation else None
  record = dict(kind="epoch", step=progress["step"], epoch=epoch + 1,
                train_loss=progress["sum_loss"] / max(1, num_batches),
                train_accuracy=progress["sum_correct"] / max(1, progress["sum_count"]),
                val_loss=val_loss, val_accuracy=val_accuracy,
                learning_rate=float(run.schedule(max(0, progress["step"] - 1))),
                epoch_seconds=seconds)
  log.write(record)
  # Without validation clips the newest weights count as the best.
  improved = not has_validation or val_accuracy > progress["best_accuracy"]
  validation_text = (f"val loss {val_loss:.4f} acc {val_accuracy:.4f}"
                     f"{' (best)' if improved else ''}" if has_validation
                     else "no validation clips")
  if distributed.is_primary():
    print(f"epoch {epoch + 1}/{int(train.epochs)} step {progress['step']}: "
          f"loss {record['train_loss']:.4f} acc {record['train_accuracy']:.4f} | "
          f"{validation_text} | {seconds:.1f} s", file=sys.stderr)
  progress.update(epoch=epoch + 1, batch=0, sum_loss=0.0, sum_correct=0, sum_count=0)
  if improved:
    progress.update(best_accuracy=val_accuracy if has_validation else -1.0,
                    best_step=progress["step"], best_epoch=epoch + 1)
    # Best before latest: a kill in between resumes the epoch and saves both again.
    run.save_best()
  run.save_latest()


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict:
  """Trains (resuming from `workdir` when it holds a checkpoint) and returns results.json's dict.

  One run at a time per workdir (train.lock, held by process 0 of a multi-process run): a
  second is refused, naming the first.
  """
  if not distributed.is_primary():
    return _train_and_evaluate(config, workdir)
  with workdir_lib.locked(pathlib.Path(workdir).resolve()):
    return _train_and_evaluate(config, workdir)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict:
  optimizer.validate_config(config)
  workdir = pathlib.Path(workdir).resolve()
  data_checks.check_data_paths(config.data)
  # Every process checks a resumed run's config.json; process 0 writes it.
  workdir_lib.prepare_workdir(workdir, config, write=distributed.is_primary())
  distributed.barrier("prepare_workdir")
  if config.train.check_nans:
    jax.config.update("jax_debug_nans", True)

  run = setup(config, workdir)
  resume(run)
  run.started = time.perf_counter()
  log = MetricsLog(workdir, int(run.progress["step"])) if distributed.is_primary() else NullLog()
  try:
    while run.progress["epoch"] < int(config.train.epochs):
      epoch = int(run.progress["epoch"])
      epoch_started = time.perf_counter()
      num_batches = train_epoch(run, epoch, log)
      end_epoch(run, epoch, num_batches, time.perf_counter() - epoch_started, log)
  finally:
    log.close()
    run.close()
  return final_results(run)


def final_results(run: TrainingRun) -> dict:
  """Tests the best checkpoint, writes results.json and the PNG plots, returns the results."""
  # Through trained_model.load, as every later stage reads the model; the training run's
  # jitted eval function takes its variables (same model, so no second compile).
  t = trained_model.load(run.workdir, checkpoints.BEST,
                         sharding=jax.sharding.NamedSharding(run.mesh, jax.sharding.PartitionSpec()))
  ds, label_names, progress = run.ds, run.label_names, run.progress
  matrix, test_loss = classification.evaluate_arrays(
      run.eval_logits, t.variables, ds.test.audio, ds.test.labels,
      int(run.config.train.eval_batch_size), len(label_names))
  summary = classification.summarize(matrix, label_names)
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
      steps_per_epoch=run.steps_per_epoch,
      num_devices=int(run.mesh.size),
      num_params=int(models.count_params(t.variables["params"])),
      macs_per_second=int(models.macs_per_second(t.model, t.variables, hop_seconds)),
      model=t.config.model.name,
      input_shape=[t.num_frames, t.num_features],
      training_seconds=progress["training_seconds"],
      data_sizes=dict(train=int(len(ds.train.labels)), train_epoch=len(run.first_epoch.labels),
                      validation=int(len(ds.validation.labels)), test=int(len(ds.test.labels))),
  )
  if not distributed.is_primary():
    return results
  tmp = run.workdir / "results.json.tmp"
  tmp.write_text(json.dumps(results, indent=2) + "\n")
  os.replace(tmp, run.workdir / "results.json")
  name = f"{results['model']} ({run.workdir.name})"
  plots.confusion_matrix_png(matrix, label_names, run.workdir / "confusion_matrix.png",
                             title=f"{name}: test accuracy {results['accuracy']:.3f}"
                             if results["accuracy"] is not None else name)
  plots.training_curves_png(run.workdir / "metrics.jsonl", run.workdir / "training_curves.png",
                            title=name)
  return results
