"""`stream listen`: keeps real time (block-wise step and smoothing), says when it starts, ends
and falls behind."""

from __future__ import annotations

import time

import numpy as np
import pytest
from tiny_training import SAMPLE_RATE, untrained_workdir

from kws_jax import audio as audio_io
from kws_jax.streameval import cli as stream_cli
from kws_jax.streameval import listen, runners, scoring


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  root = tmp_path_factory.mktemp("listen")
  return untrained_workdir(root / "work", root / "data", root / "cache")


def noise_wav(path, seconds: float):
  rng = np.random.default_rng(0)
  audio_io.write_wav(path, 0.1 * rng.standard_normal(int(seconds * SAMPLE_RATE)))
  path.with_name(path.stem + "_labels.txt").write_text("yes, 1000\nno, 5000\n")
  return path


def test_listen_fast_on_a_minute_runs_within_twice_stream_eval(workdir, tmp_path, capsys):
  wav = noise_wav(tmp_path / "long.wav", 60.0)
  start = time.perf_counter()
  assert stream_cli.main(["eval", "--workdir", str(workdir), "--wav", str(wav)]) == 0
  eval_seconds = time.perf_counter() - start
  assert (tmp_path / "long_det_jax_never.png").is_file()
  capsys.readouterr()
  start = time.perf_counter()
  assert stream_cli.main(["listen", "--workdir", str(workdir), "--wav", str(wav), "--fast"]) == 0
  listen_seconds = time.perf_counter() - start
  err = capsys.readouterr().err
  assert listen_seconds < 2 * eval_seconds, (listen_seconds, eval_seconds)
  assert f"listening to {wav} (60.0 s) as fast as it runs" in err
  assert "done: " in err and "60.0 s of audio" in err and "falling behind" not in err


def test_listen_in_real_time_keeps_pace_without_a_warning(workdir, tmp_path, capsys):
  wav = noise_wav(tmp_path / "short.wav", 2.0)
  start = time.perf_counter()
  assert stream_cli.main(["listen", "--workdir", str(workdir), "--wav", str(wav)]) == 0
  elapsed = time.perf_counter() - start
  err = capsys.readouterr().err
  assert elapsed >= 2.0  # paced: never ahead of the audio
  assert "in real time ..." in err and "done: " in err and "falling behind" not in err


class SlowStep:
  """A step runner that needs 0.3 s per 0.1 s block: three times slower than real time."""
  hop_size = 160
  label_names = ("_silence_", "_unknown_", "yes")

  def initial_state(self):
    return 0

  def run(self, audio, state=None):
    time.sleep(0.3)
    hops = audio.shape[0] // self.hop_size
    return state, {"scores": np.tile([0.9, 0.05, 0.05], (hops, 1)).astype(np.float32)}


def test_listen_warns_once_when_it_falls_behind(tmp_path, capsys):
  wav = noise_wav(tmp_path / "slow.wav", 1.5)
  runner = runners.StreamRunner(SlowStep(), SlowStep.label_names, 160, SAMPLE_RATE)
  assert listen.listen_wav(runner, scoring.SmoothingSettings(), str(wav)) == 0
  err = capsys.readouterr().err
  assert err.count("warning: falling behind real time") == 1
  assert "done: 0 detection(s) in 1.5 s of audio" in err


class ScriptedStep:
  """Replays fixed per-hop scores: the same stream whatever the block sizes."""
  hop_size = 160
  label_names = ("_silence_", "_unknown_", "yes", "no")

  def __init__(self, scores):
    self.scores = scores

  def initial_state(self):
    return 0

  def run(self, audio, state=0):
    hops = audio.shape[0] // self.hop_size
    return state + hops, {"scores": self.scores[state:state + hops]}


def test_block_wise_detections_equal_the_whole_stream_smoothed_at_once():
  rng = np.random.default_rng(0)
  hops = 1000
  scores = np.full((hops + 256, 4), 0.02, np.float32)
  scores[:, 0] = 0.94
  for start in rng.choice(np.arange(0, hops - 80, 100), 6, replace=False):
    scores[start:start + 60] = 0.02
    scores[start:start + 60, rng.integers(2, 4)] = 0.94
  step = ScriptedStep(scores)
  settings = scoring.SmoothingSettings()
  post = runners.Posteriors(scores[:hops], list(step.label_names), 10.0, 0.0, window_ms=0.0)
  want = [(label, t / 1000) for label, t in scoring.detections(post, settings,
                                                               [settings.detection_threshold])[0]]
  assert len(want) >= 4
  for block_hops in (7, 256):
    listener = listen.Listener(runners.StreamRunner(step, step.label_names, 160, SAMPLE_RATE),
                               settings, block_hops)
    got = []
    for start in range(0, hops * 160, block_hops * 160):
      got += listener.feed(np.zeros(min(block_hops * 160, hops * 160 - start), np.float32))
    assert [(label, pytest.approx(t)) for t, label, _ in got] == want
