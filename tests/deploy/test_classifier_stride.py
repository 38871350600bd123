"""Classifier stride: the window network runs every k hops; the scores equal the plain step's there."""

from __future__ import annotations

import numpy as np
import pytest
from export_helpers import tiny_trained

from kws_jax.deploy import classifier_stride
from kws_jax.deploy import streaming_step as streaming
from kws_jax.errors import ConfigError

STRIDE = 3


@pytest.fixture(scope="module")
def tiny_dscnn():
  return tiny_trained("tf_speech_commands", "dscnn", filters=8, num_blocks=1)


def test_strided_scores_are_the_plain_steps_held_for_k_hops(tiny_dscnn, test_clip):
  plain = streaming.make_step(tiny_dscnn, vad=False, smoothing=False)
  strided = streaming.make_step(tiny_dscnn, vad=False, smoothing=False,
                                classifier_stride=STRIDE)
  audio = test_clip[:40 * plain.hop_size]
  _, want = plain.run(audio)
  _, got = strided.run(audio)
  want, got = np.asarray(want["scores"]), np.asarray(got["scores"])
  assert got.shape == want.shape == (40, len(tiny_dscnn.label_names))
  classified = np.arange(40) - np.arange(40) % STRIDE   # the last hop the network ran
  np.testing.assert_allclose(got, want[classified], atol=1e-6, rtol=0)
  # Not trivially so: the plain scores do change between the classified hops.
  assert np.abs(want[1::STRIDE] - want[0::STRIDE][:len(want[1::STRIDE])]).max() > 1e-6
  assert strided.info["classifier_stride"] == STRIDE


def test_stride_needs_a_window_model(trained_gru, tiny_dscnn):
  with pytest.raises(ConfigError, match="needs a window model"):
    streaming.make_step(trained_gru, classifier_stride=2)
  with pytest.raises(ConfigError, match="must be >= 1"):
    classifier_stride.ClassifierStride(tiny_dscnn.model, 0)
