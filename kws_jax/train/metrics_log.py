"""The training record: metrics.jsonl (truncated to the resumed step) and TensorBoard events."""

from __future__ import annotations

import json
import pathlib

from tensorboardX import SummaryWriter


class MetricsLog:
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
    # purge_step drops events a killed run wrote after its last checkpoint.
    self.writer = SummaryWriter(str(workdir / "tensorboard"), purge_step=resume_step + 1)

  def write(self, record: dict) -> None:
    self.file.write(json.dumps(record) + "\n")
    self.file.flush()
    kind = record.get("kind", "train")
    for key, value in record.items():
      if key not in ("step", "epoch", "kind") and isinstance(value, (int, float)):
        self.writer.add_scalar(f"{kind}/{key}", value, record["step"])
    self.writer.flush()

  def close(self) -> None:
    self.file.close()
    self.writer.close()


class NullLog:
  """The log of a process other than 0 in a multi-process run: process 0 writes the record."""

  def write(self, record: dict) -> None:
    pass

  def close(self) -> None:
    pass
