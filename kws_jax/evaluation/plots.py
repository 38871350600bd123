"""PNG plots of a training run: confusion matrix and training curves (matplotlib, Agg)."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Sequence

import numpy as np


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")  # files only; never needs a display
  import matplotlib.pyplot as plt
  return plt


def confusion_matrix_png(matrix: np.ndarray, label_names: Sequence[str],
                         path: str | os.PathLike, title: str = "") -> None:
  """Counts in each cell, colour by the row-normalised rate (recall per true class)."""
  plt = _pyplot()
  matrix = np.asarray(matrix)
  rows = matrix.sum(axis=1, keepdims=True)
  rates = np.divide(matrix, rows, out=np.zeros(matrix.shape, float), where=rows > 0)
  n = len(label_names)
  size = max(4.0, 0.55 * n + 2)
  fig, ax = plt.subplots(figsize=(size, size))
  image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
  ax.set_xticks(range(n), labels=label_names, rotation=60, ha="right")
  ax.set_yticks(range(n), labels=label_names)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  for i in range(n):
    for j in range(n):
      if matrix[i, j]:
        ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                color="white" if rates[i, j] > 0.5 else "black")
  fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
  if title:
    ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def read_metrics(path: str | os.PathLike) -> list[dict]:
  records = []
  path = pathlib.Path(path)
  if path.exists():
    for line in path.read_text().splitlines():
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return records


def training_curves_png(metrics_path: str | os.PathLike, path: str | os.PathLike,
                        title: str = "") -> None:
  """Loss and accuracy (train per chunk, train/validation per epoch) and learning rate;
  `title` (e.g. the model and workdir) above them."""
  plt = _pyplot()
  records = read_metrics(metrics_path)
  train = [r for r in records if r.get("kind") == "train"]
  epochs = [r for r in records if r.get("kind") == "epoch"]
  fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=(14, 4))
  if train:
    steps = [r["step"] for r in train]
    ax_loss.plot(steps, [r["loss"] for r in train], color="tab:blue", alpha=0.3, lw=1,
                 label="train (per chunk)")
    ax_acc.plot(steps, [r["accuracy"] for r in train], color="tab:blue", alpha=0.3, lw=1,
                label="train (per chunk)")
    ax_lr.plot(steps, [r["learning_rate"] for r in train], color="tab:green")
  if epochs:
    steps = [r["step"] for r in epochs]
    ax_loss.plot(steps, [r["train_loss"] for r in epochs], "o-", color="tab:blue", label="train")
    ax_loss.plot(steps, [r["val_loss"] for r in epochs], "o-", color="tab:orange",
                 label="validation")
    ax_acc.plot(steps, [r["train_accuracy"] for r in epochs], "o-", color="tab:blue",
                label="train")
    ax_acc.plot(steps, [r["val_accuracy"] for r in epochs], "o-", color="tab:orange",
                label="validation")
  ax_loss.set(title="loss", xlabel="step")
  ax_acc.set(title="accuracy", xlabel="step", ylim=(0, 1))
  ax_lr.set(title="learning rate", xlabel="step")
  for ax in (ax_loss, ax_acc):
    if ax.lines:
      ax.legend()
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
