"""One training run per workdir: a second is refused naming the holder; a stale lock is taken over."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

from tiny_training import make_folder, write_experiment

from kws_jax.train import workdir as workdir_lib

REPO = pathlib.Path(__file__).resolve().parents[2]


def write_lock(workdir: pathlib.Path, pid: int) -> pathlib.Path:
  workdir.mkdir(parents=True, exist_ok=True)
  path = workdir / workdir_lib.LOCK_NAME
  path.write_text(json.dumps(dict(pid=pid, host=socket.gethostname(), started="earlier")))
  return path


def dead_pid() -> int:
  process = subprocess.Popen([sys.executable, "-c", "pass"])
  process.wait()
  return process.pid


def test_a_second_run_in_a_held_workdir_exits_2_with_one_line(tmp_path):
  workdir = tmp_path / "work"
  lock = write_lock(workdir, os.getpid())  # held by this (live) test process
  experiment = write_experiment(tmp_path / "tiny_experiment.py", make_folder(tmp_path / "data"),
                                tmp_path / "cache")
  second = subprocess.run([sys.executable, "-m", "kws_jax.train", str(experiment), "--workdir",
                           str(workdir)], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert second.returncode == 2, second.stderr
  assert second.stderr.splitlines() == [
      f"error: {workdir} is in use by another training run (pid {os.getpid()} on "
      f"{socket.gethostname()}, since earlier); wait for it to end or use another --workdir "
      f"(if that run is gone, delete {lock})"]
  assert sorted(p.name for p in workdir.iterdir()) == [workdir_lib.LOCK_NAME]  # nothing written


def test_a_stale_lock_is_taken_over_and_released(tmp_path, capsys):
  workdir = tmp_path / "work"
  lock = write_lock(workdir, dead_pid())
  with workdir_lib.locked(workdir):
    assert json.loads(lock.read_text())["pid"] == os.getpid()
  assert "taking over the stale lock" in capsys.readouterr().err
  assert not lock.exists()


def test_a_refused_first_run_leaves_no_workdir(tmp_path):
  workdir = tmp_path / "new"
  try:
    with workdir_lib.locked(workdir):
      assert (workdir / workdir_lib.LOCK_NAME).is_file()
      raise KeyError("refused")
  except KeyError:
    pass
  assert not workdir.exists()
