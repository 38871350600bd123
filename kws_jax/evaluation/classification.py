"""Classification metrics: accuracy, confusion matrix, per-class precision/recall; scoring clip arrays."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
  """(C, C) int64 counts; rows are the true class, columns the predicted one."""
  labels = np.asarray(labels, dtype=np.int64)
  predictions = np.asarray(predictions, dtype=np.int64)
  matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
  np.add.at(matrix, (labels, predictions), 1)
  return matrix


def summarize(matrix: np.ndarray, label_names: Sequence[str]) -> dict:
  """Accuracy, per-class precision/recall/support and the matrix as JSON-ready lists."""
  matrix = np.asarray(matrix, dtype=np.int64)
  total = int(matrix.sum())
  correct = int(np.trace(matrix))
  per_class = {}
  for i, name in enumerate(label_names):
    predicted = int(matrix[:, i].sum())
    support = int(matrix[i, :].sum())
    per_class[name] = {
        # None, not 0, when undefined: a class never predicted has no precision.
        "precision": matrix[i, i] / predicted if predicted else None,
        "recall": matrix[i, i] / support if support else None,
        "support": support,
    }
    per_class[name] = {k: (float(v) if isinstance(v, np.floating) else v)
                       for k, v in per_class[name].items()}
  return {
      "accuracy": correct / total if total else None,
      "num_examples": total,
      "labels": list(label_names),
      "confusion_matrix": matrix.tolist(),
      "per_class": per_class,
  }


def format_confusion(matrix: np.ndarray, label_names: Sequence[str]) -> str:
  """The matrix as a fixed-width text table (rows: truth, columns: prediction)."""
  matrix = np.asarray(matrix)
  width = max(6, max(len(n) for n in label_names) + 1, len(str(matrix.max())) + 1)
  head = " " * width + "".join(f"{n[:width - 1]:>{width}}" for n in label_names)
  rows = [f"{name[:width - 1]:>{width}}" + "".join(f"{v:>{width}}" for v in row)
          for name, row in zip(label_names, matrix)]
  return "\n".join(["truth \\ predicted", head, *rows])


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
    matrix += confusion_matrix(truth, logits.argmax(-1), num_classes)
  return matrix, (total_loss / count if count else float("nan"))
