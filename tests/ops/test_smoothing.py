"""RecognizeCommands smoothing vs a direct NumPy transcription of TF's algorithm."""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kws_jax.errors import ConfigError
from kws_jax.ops import smoothing


class TFRecognizeCommands:
  """TF's recognize_commands.py logic with labels as indices (0 = _silence_), times in ms."""

  def __init__(self, num_labels, average_window_ms, threshold, suppression_ms, minimum_count):
    self.num_labels, self.window, self.threshold = num_labels, average_window_ms, threshold
    self.suppression, self.minimum_count = suppression_ms, minimum_count
    self.results = collections.deque()
    self.previous_top_label, self.previous_top_time = 0, -np.inf

  def process(self, scores, now_ms):
    self.results.append((now_ms, scores))
    time_limit = now_ms - self.window
    while time_limit > self.results[0][0]:
      self.results.popleft()
    how_many = len(self.results)
    if how_many < self.minimum_count or now_ms - self.results[0][0] < self.window / 4:
      return self.previous_top_label, 0.0, False
    average = np.zeros(self.num_labels)
    for _, s in self.results:
      average += s / how_many
    order = sorted(range(self.num_labels), key=lambda i: average[i], reverse=True)
    top = order[0]
    if self.previous_top_label == 0 or self.previous_top_time == -np.inf:
      since = np.inf
    else:
      since = now_ms - self.previous_top_time
    is_new = bool(average[top] > self.threshold and top != self.previous_top_label
                  and since > self.suppression)
    if is_new:
      self.previous_top_label, self.previous_top_time = top, now_ms
    return top, float(average[top]), is_new


def random_posteriors(seed, steps, labels):
  """Softmax posteriors with random segments where one label dominates (words)."""
  rng = np.random.default_rng(seed)
  logits = rng.standard_normal((steps, labels))
  t = 0
  while t < steps:
    length = int(rng.integers(5, 40))
    label = int(rng.integers(0, labels))
    logits[t:t + length, label] += rng.uniform(0, 6)
    t += length + int(rng.integers(0, 20))
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return (e / e.sum(-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("step_ms,window_ms,threshold,suppression_ms,minimum_count", [
    (20.0, 1000.0, 0.2, 1500.0, 3),    # TF's C++ defaults at 20 ms steps
    (30.0, 500.0, 0.5, 500.0, 3),      # window not a multiple of the step
    (10.0, 100.0, 0.4, 50.0, 8),       # minimum_count binds, short suppression
    (100.0, 250.0, 0.3, 0.0, 1),
])
def test_matches_tf_algorithm_on_random_posteriors(step_ms, window_ms, threshold,
                                                   suppression_ms, minimum_count):
  labels, steps = 6, 400
  params = smoothing.make_params(labels, step_ms, average_window_ms=window_ms,
                                 detection_threshold=threshold, suppression_ms=suppression_ms,
                                 minimum_count=minimum_count)
  for seed in range(3):
    post = random_posteriors(seed, steps, labels)
    ref = TFRecognizeCommands(labels, window_ms, threshold, suppression_ms, minimum_count)
    expected = [ref.process(post[i].astype(np.float64), i * step_ms) for i in range(steps)]
    _, out = jax.jit(smoothing.smooth)(params, jnp.asarray(post))
    np.testing.assert_array_equal(np.asarray(out.label), [e[0] for e in expected])
    np.testing.assert_allclose(np.asarray(out.score), [e[1] for e in expected], atol=1e-6)
    np.testing.assert_array_equal(np.asarray(out.is_new_command), [e[2] for e in expected])
    assert 0 < np.sum(np.asarray(out.is_new_command)) < steps  # the case is not degenerate


def test_batch_twin_equals_stepping_each_stream():
  params = smoothing.make_params(4, 20.0, average_window_ms=200.0, detection_threshold=0.3,
                                 suppression_ms=100.0, minimum_count=2)
  post = np.stack([random_posteriors(s, 120, 4) for s in (10, 11)])
  _, batch = jax.jit(smoothing.smooth)(params, jnp.asarray(post))
  step = jax.jit(lambda s, x: smoothing.step(params, s, x))
  for b in range(2):
    state = smoothing.init_state(params)
    for t in range(post.shape[1]):
      state, out = step(state, jnp.asarray(post[b, t]))
      np.testing.assert_allclose(np.asarray(out.scores), np.asarray(batch.scores[b, t]),
                                 atol=1e-6)
      assert int(out.label) == int(batch.label[b, t])
      assert bool(out.is_new_command) == bool(batch.is_new_command[b, t])


def test_smoothed_scores_are_the_window_mean():
  params = smoothing.make_params(3, 10.0, average_window_ms=30.0, minimum_count=1)
  post = random_posteriors(3, 20, 3)
  _, out = smoothing.smooth(params, jnp.asarray(post))
  for t in range(20):
    np.testing.assert_allclose(np.asarray(out.scores[t]), post[max(0, t - 3):t + 1].mean(0),
                               atol=1e-6)


def test_bad_parameters_raise_config_error():
  with pytest.raises(ConfigError, match="step_ms"):
    smoothing.make_params(3, 0.0)
  with pytest.raises(ConfigError, match="silence_index"):
    smoothing.make_params(3, 10.0, silence_index=3)
