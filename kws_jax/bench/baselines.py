"""`python -m kws_jax.bench baselines`: kws_jax next to plain PyTorch, same process, same shapes.

Measures (each `{"kws_jax", "baseline", "unit", "speedup"}`; speedup > 1 means
kws_jax is faster):
  cpu_train_ell_gru            ELL GRU recipe training, clips/s (JAX: fused-backward GRU,
                               data-parallel over the local devices, epoch as one scan)
  cpu_train_ell_gru_model      the same with the models package's `gru` module (autodiff)
  cpu_train_torchaudio_cnn     torchaudio tutorial CNN, Adam, batch 64, clips/s
  step_latency_ell_gru         streaming hop, ell featurizer + 2 x GRU128, batch 1, us
                               (JAX jit vs PyTorch eager)
  featurizer_batch             tf_speech_commands features of 1 s clips, clips/s
                               (kws_jax.ops.frontend vs the same math in torch)
Data loading is excluded on both sides (batches are in memory / on the device).
"""

from __future__ import annotations

import dataclasses
import os
import platform
from typing import Any

import jax
import numpy as np
import torch
from tqdm import tqdm

from kws_jax import models
from kws_jax.bench import latency, train_speed
from kws_jax.bench import torch_baselines as tb
from kws_jax.ops import frontend


@dataclasses.dataclass(frozen=True)
class Sizes:
  """How much work each measure does; `tiny` is for smoke tests (numbers meaningless)."""
  gru_frames: int = 31
  gru_features: int = 80
  gru_hidden: int = 128
  gru_batch: int = 128
  gru_steps: int = 8
  cnn_frames: int = 101
  cnn_features: int = 64
  cnn_batch: int = 64
  cnn_steps: int = 4
  latency_calls: int = 300
  featurizer_clips: int = 1024
  featurizer_batch: int = 256
  rounds: int = 3

  @classmethod
  def tiny(cls) -> "Sizes":
    return cls(gru_frames=5, gru_features=80, gru_hidden=8, gru_batch=8, gru_steps=2,
               cnn_frames=101, cnn_features=64, cnn_batch=4, cnn_steps=1, latency_calls=3,
               featurizer_clips=8, featurizer_batch=4, rounds=1)


def _entry(kws_jax: float, baseline: float, unit: str, higher_is_better: bool) -> dict[str, Any]:
  speedup = kws_jax / baseline if higher_is_better else baseline / kws_jax
  # Four significant digits, not decimals: a small figure (0.0904) keeps its precision.
  significant = lambda x: float(f"{x:.4g}")
  return {"kws_jax": significant(kws_jax), "baseline": significant(baseline), "unit": unit,
          "speedup": significant(speedup)}


def machine_description() -> dict[str, Any]:
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    cpu = names[0] if names else cpu
  except OSError:
    pass
  return {"cpu": cpu, "cores": os.cpu_count(), "jax": jax.__version__,
          "jax_devices": [str(d) for d in jax.devices()], "torch": torch.__version__,
          "torch_threads": torch.get_num_threads(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
          "load_average_1min": round(os.getloadavg()[0], 2)}


def run(sizes: Sizes = Sizes(), progress: bool = True) -> dict[str, dict[str, Any]]:
  """All measures, side by side; returns {measure: entry}."""
  results: dict[str, dict[str, Any]] = {}
  bar = tqdm(total=5, desc="baselines", disable=not progress, leave=False)

  # ELL GRU recipe training.
  recipe = train_speed.EllGruRecipe(num_frames=sizes.gru_frames, num_features=sizes.gru_features,
                                    hidden_size=sizes.gru_hidden, batch_size=sizes.gru_batch)
  x, y = train_speed.synthetic_batches(sizes.gru_steps, recipe.batch_size,
                                       (recipe.num_frames, recipe.num_features),
                                       recipe.num_classes)
  torch_gru = tb.ell_gru_train_runner(x, y, recipe.learning_rate, recipe.weight_decay,
                                      recipe.rmsprop_alpha, recipe.rmsprop_eps,
                                      recipe.hidden_size, recipe.num_layers, recipe.num_classes)
  jax_runners = {f: train_speed.make_ell_gru_runner(recipe, f, steps=sizes.gru_steps)
                 for f in train_speed.FORMULATIONS}
  best = latency.interleaved_best({"torch": torch_gru, **jax_runners}, sizes.rounds)
  clips = torch_gru.clips_per_call
  results["cpu_train_ell_gru"] = _entry(clips / best["fused_vjp"], clips / best["torch"],
                                        "clips/s", True)
  results["cpu_train_ell_gru_model"] = _entry(clips / best["model"], clips / best["torch"],
                                              "clips/s", True)
  del jax_runners
  bar.update()

  # torchaudio tutorial CNN training (Adam, the recipe's batch 64).
  num_classes = 11
  x, y = train_speed.synthetic_batches(sizes.cnn_steps, sizes.cnn_batch,
                                       (sizes.cnn_frames, sizes.cnn_features), num_classes)
  torch_cnn = tb.torchaudio_cnn_train_runner(x, y, num_classes)
  model = models.create("torchaudio_cnn", num_classes=num_classes, num_frames=sizes.cnn_frames,
                        num_features=sizes.cnn_features)
  variables = model.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)},
                         np.zeros((1, sizes.cnn_frames, sizes.cnn_features), np.float32),
                         train=False)
  jax_cnn = train_speed.make_model_runner(model, variables, sizes.cnn_batch, num_classes,
                                          steps=sizes.cnn_steps)
  best = latency.interleaved_best({"torch": torch_cnn, "jax": jax_cnn}, sizes.rounds)
  clips = torch_cnn.clips_per_call
  results["cpu_train_torchaudio_cnn"] = _entry(clips / best["jax"], clips / best["torch"],
                                               "clips/s", True)
  bar.update()

  # Streaming step: ell featurizer + ELL GRU, batch 1, same weights on both sides.
  cfg = frontend.get_config("ell")
  fe_params = frontend.make_params(cfg)
  gru = models.create("gru", num_classes=12, num_frames=sizes.gru_frames,
                      num_features=cfg.num_features, hidden_size=sizes.gru_hidden)
  gru_vars = gru.init(jax.random.PRNGKey(0),
                      np.zeros((1, sizes.gru_frames, cfg.num_features), np.float32))
  chunks = latency.synthetic_audio(16, cfg.hop_size)
  jax_step = latency.JaxStreamStepRunner(fe_params, gru, gru_vars, chunks)
  torch_step = tb.StreamStepRunner(tb.TorchFeaturizer(cfg),
                                   tb.ell_gru_from_params(gru_vars["params"]),
                                   sizes.gru_frames, chunks)
  torch_step()
  best = latency.interleaved_best({"torch": torch_step, "jax": jax_step}, sizes.rounds,
                                  sizes.latency_calls)
  results["step_latency_ell_gru"] = _entry(best["jax"] * 1e6, best["torch"] * 1e6, "us", False)
  bar.update()

  # Batch featurizer on 1 s clips.
  cfg = frontend.get_config("tf_speech_commands")
  clips = latency.synthetic_audio(sizes.featurizer_clips, cfg.sample_rate)
  jax_feat = latency.JaxFeaturizerRunner(frontend.make_params(cfg), clips, sizes.featurizer_batch)
  torch_feat = tb.TorchFeaturizer(cfg)
  torch_batches = [torch.from_numpy(clips[i:i + sizes.featurizer_batch])
                   for i in range(0, len(clips), sizes.featurizer_batch)]

  @torch.no_grad()
  def run_torch_featurizer() -> None:
    for b in torch_batches:
      torch_feat(b)

  run_torch_featurizer()
  best = latency.interleaved_best({"torch": run_torch_featurizer, "jax": jax_feat}, sizes.rounds)
  n = len(clips)
  results["featurizer_batch"] = _entry(n / best["jax"], n / best["torch"], "clips/s", True)
  bar.update()
  bar.close()
  return results


GPU_ROWS = ("gpu_epoch_ell_gru", "gpu_epoch_torchaudio_cnn")


def format_table(results: dict[str, dict[str, Any]]) -> str:
  lines = ["| measure | kws_jax | PyTorch | unit | speedup |", "|---|---:|---:|---|---:|"]
  for name, r in results.items():
    lines.append(f"| {name} | {r['kws_jax']:,.1f} | {r['baseline']:,.1f} | {r['unit']} | "
                 f"{r['speedup']:.2f}x |")
  for name in GPU_ROWS:
    lines.append(f"| {name} | not measured (no GPU in this run) | | | |")
  return "\n".join(lines)
