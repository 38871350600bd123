"""`python -m kws_jax.bench [--models a,b] [--workdir DIR] [--out DIR]`: one row per model.

Columns: parameters, MACs per second of audio (streaming, one step per hop),
JAX jit streaming-step latency (frontend step + model step, batch 1), IREE
host-CPU latency (n/a here: `python -m kws_jax.bench.step_latency` measures it
for an exported model), training clips/s (Adam, cross-entropy, batch 64, jitted steps
on one device), and test accuracy from a workdir's results.json.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
from tqdm import tqdm

from kws_jax import models
from kws_jax.bench import latency, train_speed
from kws_jax.errors import KwsError
from kws_jax.models import builder
from kws_jax.ops import frontend
from kws_jax.runs import trained_model

# Features each untrained model is benchmarked on (a workdir brings its own).
MODEL_FRONTENDS: dict[str, dict[str, Any]] = {
    "gru": {"preset": "ell"},
    "lstm": {"preset": "ell"},
    "torchaudio_cnn": {"preset": "torchaudio"},
    # MLPerf Tiny KWS input: 40 ms windows every 20 ms, 10 MFCCs -> 49 x 10.
    "dscnn": {"preset": "tf_speech_commands", "window_size": 640, "hop_size": 320,
              "n_fft": 1024, "num_mfcc": 10},
}
DEFAULT_FRONTEND = {"preset": "tf_speech_commands"}
IREE_NOT_MEASURED = "n/a (python -m kws_jax.bench.step_latency)"


def _row(name: str, frontend_params, model, variables, *, clip_samples: int, train_batch: int,
         train_steps: int, latency_calls: int, rounds: int, accuracy: float | None,
         source: str) -> dict[str, Any]:
  cfg = frontend_params.cfg
  chunks = latency.synthetic_audio(8, cfg.hop_size)
  step = latency.JaxStreamStepRunner(frontend_params, model, variables, chunks)
  step_seconds = latency.interleaved_best({"jax": step}, rounds, latency_calls)["jax"]
  trainer = train_speed.make_model_runner(model, variables, train_batch, model.num_classes,
                                          steps=train_steps)
  train_seconds = latency.interleaved_best({"jax": trainer}, rounds)["jax"]
  return {
      "model": name,
      "source": source,
      "frontend": cfg.preset,
      "input_shape": [model.num_frames, model.num_features],
      "clip_samples": clip_samples,
      "params": models.count_params(variables["params"]),
      "macs_per_second": models.macs_per_second(model, variables, cfg.hop_seconds),
      "jax_step_us": round(step_seconds * 1e6, 2),
      "iree_step_us": None,
      "train_clips_per_s": round(trainer.clips_per_call / train_seconds, 1),
      "accuracy": accuracy,
  }


def untrained_row(name: str, **kwargs: Any) -> dict[str, Any]:
  options = dict(MODEL_FRONTENDS.get(name, DEFAULT_FRONTEND))
  clip_samples = frontend.get_config(**options).sample_rate
  frontend_params, model, num_frames, num_features = builder.build_named(
      name, 12, clip_samples, features=options)
  variables = builder.init_variables(model, num_frames, num_features, jax.random.key(0))
  return _row(name, frontend_params, model, variables, clip_samples=clip_samples,
              accuracy=None, source="untrained", **kwargs)


def workdir_row(workdir: str, **kwargs: Any) -> dict[str, Any]:
  t = trained_model.load(workdir)
  accuracy = None
  results_path = pathlib.Path(workdir) / "results.json"
  if results_path.is_file():
    accuracy = json.loads(results_path.read_text()).get("accuracy")
  return _row(str(t.config.model.name), t.frontend, t.model, t.variables,
              clip_samples=t.clip_samples, accuracy=accuracy, source=str(workdir), **kwargs)


def markdown(rows: list[dict[str, Any]]) -> str:
  lines = ["| model | source | input | params | MACs/s audio | JAX step (us) | IREE step (us) "
           "| train clips/s | accuracy |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    accuracy = f"{r['accuracy']:.4f}" if r["accuracy"] is not None else "n/a (no workdir)"
    iree = f"{r['iree_step_us']:.1f}" if r["iree_step_us"] is not None else IREE_NOT_MEASURED
    lines.append(f"| {r['model']} | {r['source']} | {r['input_shape'][0]}x{r['input_shape'][1]} "
                 f"({r['frontend']}) | {r['params']:,} | {r['macs_per_second']:,} | "
                 f"{r['jax_step_us']:.1f} | {iree} | {r['train_clips_per_s']:,.0f} | {accuracy} |")
  return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: pathlib.Path) -> None:
  """Accuracy vs JAX step latency (ELL's gallery trade-off); MACs/s vs latency without accuracies."""
  import matplotlib  # lazy: the backend must be chosen before pyplot is imported
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  with_accuracy = [r for r in rows if r["accuracy"] is not None]
  points = with_accuracy or rows
  fig, ax = plt.subplots(figsize=(6.4, 4.4))
  for r in points:
    y = r["accuracy"] if with_accuracy else r["macs_per_second"]
    ax.scatter(r["jax_step_us"], y)
    ax.annotate(r["model"], (r["jax_step_us"], y), textcoords="offset points", xytext=(4, 4),
                fontsize=8)
  ax.set_xlabel("JAX streaming step latency, batch 1 (us)")
  if with_accuracy:
    ax.set_ylabel("test accuracy")
    ax.set_title("accuracy vs latency")
  else:
    ax.set_ylabel("MACs per second of audio")
    ax.set_yscale("log")
    ax.set_title("cost vs latency (no trained workdir given: no accuracy)")
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def run(model_names: list[str], workdirs: list[str], out: pathlib.Path, *, train_batch: int = 64,
        train_steps: int = 2, latency_calls: int = 200, rounds: int = 3,
        progress: bool = True) -> list[dict[str, Any]]:
  """Measures every model and workdir; writes bench.json, bench.md and accuracy_vs_latency.png."""
  out.mkdir(parents=True, exist_ok=True)
  kwargs = dict(train_batch=train_batch, train_steps=train_steps, latency_calls=latency_calls,
                rounds=rounds)
  rows = []
  jobs = [("model", m) for m in model_names] + [("workdir", w) for w in workdirs]
  if not jobs:
    raise KwsError("nothing to benchmark: give --models and/or --workdir")
  for kind, item in tqdm(jobs, desc="models", disable=not progress):
    rows.append(untrained_row(item, **kwargs) if kind == "model" else workdir_row(item, **kwargs))
  (out / "bench.json").write_text(json.dumps(rows, indent=2) + "\n")
  (out / "bench.md").write_text(markdown(rows) + "\n")
  plot(rows, out / "accuracy_vs_latency.png")
  return rows
