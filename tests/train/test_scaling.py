"""The trainer scaled out: one tiny experiment (a) in this process on 1 device, (b) in one
process on 2 CPU devices, (c) in 2 processes of 1 CPU device each on 127.0.0.1, and (c)
resumed after one of its processes is killed.

Every run must feed identical labels at every step (same data order and the same rows
per global batch). Losses and final weights agree within float tolerance, not bitwise:
with several devices XLA sums the gradients and BatchNorm statistics in partial sums
per device, then across devices. Stated tolerance: losses within 1e-5 absolute; weights
within rtol 1e-4, atol 1e-5 (after 6 Adam steps; measured differences ~1e-7).

XLA's host device count is fixed when JAX starts, so (b) and (c) run in subprocesses.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import types

import jax
import numpy as np
import pytest
from scaling_driver import train_recording
from tiny_training import make_folder, tiny_config, write_experiment

from kws_jax import errors
from kws_jax.runs import checkpoints, trained_model
from kws_jax.train import loop

REPO = pathlib.Path(__file__).resolve().parents[2]
DRIVER = pathlib.Path(__file__).with_name("scaling_driver.py")
EPOCHS = 1
TIMEOUT = 600
LOSS_ATOL = 1e-5
WEIGHT_RTOL, WEIGHT_ATOL = 1e-4, 1e-5


def env(**extra: str) -> dict:
  return {**os.environ, "JAX_PLATFORMS": "cpu",
          "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **extra}


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def weights(workdir: pathlib.Path) -> list[np.ndarray]:
  t = trained_model.load(workdir, checkpoints.LATEST)
  return [np.asarray(x) for x in jax.tree.leaves(t.variables)]


def results(workdir: pathlib.Path) -> dict:
  got = json.loads((workdir / "results.json").read_text())
  return {k: v for k, v in got.items() if k != "training_seconds"}


def assert_same_training(run: dict, workdir: pathlib.Path, reference: dict,
                         reference_dir: pathlib.Path) -> None:
  assert len(run["labels"]) == len(reference["labels"]) > 2
  assert run["labels"] == reference["labels"]
  np.testing.assert_allclose(run["losses"], reference["losses"], rtol=0, atol=LOSS_ATOL)
  for a, b in zip(weights(workdir), weights(reference_dir), strict=True):
    np.testing.assert_allclose(a, b, rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL)
  assert run["accuracy"] == reference["accuracy"]


def cli_flags(i: int, count: int, port: int) -> list[str]:
  return [f"--distributed.coordinator_address=127.0.0.1:{port}",
          f"--distributed.num_processes={count}", f"--distributed.process_id={i}"]


def driver_flags(i: int, count: int, port: int) -> list[str]:
  return ["--process", f"{i}/{count}@{port}"]


def start_processes(command: list[str], count: int, flags=cli_flags) -> list[subprocess.Popen]:
  """`count` processes of `command` + `flags(i, count, port)`, the coordinator on 127.0.0.1."""
  port = free_port()
  extra = env(JAX_COORDINATOR_BIND_ADDRESS=f"127.0.0.1:{port}")
  return [subprocess.Popen(command + flags(i, count, port), cwd=REPO, env=extra,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for i in range(count)]


def finish(processes: list[subprocess.Popen], timeout: float = TIMEOUT) -> list[tuple[int, str]]:
  """Waits for every process (killing all on timeout); returns (returncode, stdout+stderr)."""
  deadline = time.monotonic() + timeout
  out = []
  try:
    for p in processes:
      stdout, stderr = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
      out.append((p.returncode, stdout + stderr))
  finally:
    for p in processes:
      if p.poll() is None:
        p.kill()
        p.communicate()
  return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  root = tmp_path_factory.mktemp("scaling")
  return types.SimpleNamespace(root=root, data=make_folder(root / "data"), cache=root / "cache")


@pytest.fixture(scope="module")
def one_device(tiny):
  """(a): this process, its one CPU device."""
  assert len(jax.devices()) == 1
  workdir = tiny.root / "one_device"
  return train_recording(tiny.data, tiny.cache, workdir, epochs=EPOCHS), workdir


def run_driver(tiny, name: str, processes: int, **extra_env: str) -> tuple[dict, pathlib.Path]:
  workdir, out = tiny.root / name, tiny.root / f"{name}.json"
  command = [sys.executable, str(DRIVER), str(tiny.data), str(tiny.cache), str(workdir), str(out),
             f"--epochs={EPOCHS}"]
  if processes == 1:
    proc = subprocess.run(command, cwd=REPO, env=env(**extra_env), capture_output=True,
                          text=True, timeout=TIMEOUT)
    outputs = [(proc.returncode, proc.stdout + proc.stderr)]
  else:
    outputs = finish(start_processes(command, processes, driver_flags))
  for code, text in outputs:
    assert code == 0, text[-3000:]
  return json.loads(out.read_text()), workdir


def test_two_devices_train_like_one(tiny, one_device):
  """(b) equals (a): the global batch split over 2 devices of one process."""
  reference, reference_dir = one_device
  run, workdir = run_driver(tiny, "two_devices", 1,
                            XLA_FLAGS="--xla_force_host_platform_device_count=2")
  assert (run["devices"], run["processes"]) == (2, 1)
  assert json.loads((workdir / "config.json").read_text())["train"]["num_devices"] == 0
  assert_same_training(run, workdir, reference, reference_dir)
  assert results(workdir)["num_examples"] == results(reference_dir)["num_examples"]


def test_more_devices_than_there_are_is_a_config_error(tiny, tmp_path):
  config = tiny_config(tiny.data, tiny.cache, num_devices=3)
  with pytest.raises(errors.ConfigError, match=r"train.num_devices=3 but this process has 1 device"):
    loop.train_and_evaluate(config, tmp_path / "work")


@pytest.mark.slow
def test_two_processes_train_like_one_device_and_resume_after_a_kill(tiny, one_device, tmp_path):
  """(c) equals (a); killing one of its processes mid-run and rerunning both ends the same;
  the killed run resumed by one process instead ends the same within tolerance."""
  reference, reference_dir = one_device
  run, workdir = run_driver(tiny, "two_processes", 2)
  assert (run["devices"], run["processes"]) == (2, 2)
  assert_same_training(run, workdir, reference, reference_dir)

  experiment = write_experiment(tmp_path / "tiny_experiment.py", tiny.data, tiny.cache,
                                epochs=EPOCHS)
  killed_dir = tmp_path / "killed"
  command = [sys.executable, "-m", "kws_jax.train", str(experiment), "--workdir", str(killed_dir)]
  processes = start_processes(command, 2)
  latest_dir = checkpoints.checkpoint_dir(killed_dir, checkpoints.LATEST)
  deadline = time.monotonic() + TIMEOUT
  try:
    while time.monotonic() < deadline and processes[1].poll() is None:
      if latest_dir.is_dir() and any(p.name.isdigit() for p in latest_dir.iterdir()):
        processes[1].send_signal(signal.SIGKILL)
        break
      time.sleep(0.01)
    # The survivor waits in its next collective until JAX's heartbeat timeout (100 s);
    # give it a moment, then stop it too.
    try:
      processes[0].wait(timeout=20)
    except subprocess.TimeoutExpired:
      pass
  finally:
    for p in processes:
      if p.poll() is None:
        p.kill()
      p.communicate()
  assert processes[1].returncode == -signal.SIGKILL
  assert not (killed_dir / "results.json").exists()
  one_process_dir = tmp_path / "resumed_by_one_process"
  shutil.copytree(killed_dir, one_process_dir)

  outputs = finish(start_processes(command, 2))
  for code, text in outputs:
    assert code == 0, text[-3000:]
  assert "resuming from" in outputs[0][1] and "test accuracy" in outputs[0][1]
  assert "test accuracy" not in outputs[1][1]  # process 0 reports
  assert results(killed_dir) == results(workdir)
  for a, b in zip(weights(killed_dir), weights(workdir), strict=True):
    np.testing.assert_array_equal(a, b)

  # The same killed run resumed by this one process on its one device instead.
  loop.train_and_evaluate(tiny_config(tiny.data, tiny.cache, epochs=EPOCHS), one_process_dir)
  assert results(one_process_dir)["accuracy"] == results(workdir)["accuracy"]
  for a, b in zip(weights(one_process_dir), weights(workdir), strict=True):
    np.testing.assert_allclose(a, b, rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL)
