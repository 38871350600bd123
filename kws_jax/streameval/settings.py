"""Defaults of the streaming evaluation, kept free of JAX so that `--help` is fast."""

from __future__ import annotations

import dataclasses

# How the recurrent state is reset between words: never (a true stream), at each ground-truth
# word (an oracle, ELL's --reset) or by the VAD.
RESET_MODES = ("never", "clip", "vad")

VAD_OPTION_HELP = ("VAD setting over the experiment's `vad` section, repeatable: reset_delay_ms "
                   "(silence after a voice before the reset), tau_up, tau_down, threshold_up, "
                   "threshold_down, level_threshold, large_input, gain_att, initial_level")


# TF's streaming test is 10 minutes long.
DEFAULT_MINUTES = 10.0


@dataclasses.dataclass
class StreamTestConfig:
  """TF generate_streaming_test_wav's defaults."""
  duration_s: float = 600.0
  sample_rate: int = 16000
  clip_duration_ms: int = 1000
  word_gap_ms: int = 2000
  unknown_percentage: float = 30.0
  background_volume: float = 0.1
  seed: int = 0


@dataclasses.dataclass
class SmoothingSettings:
  """Smoothing and scoring of a stream; the defaults are TEST_STREAMING_ACCURACY_DEFAULTS."""
  average_window_ms: float = 500.0
  detection_threshold: float = 0.7
  suppression_ms: float = 1500.0
  minimum_count: int = 3
  time_tolerance_ms: float = 750.0


# TF test_streaming_accuracy.py's flag defaults (its RecognizeCommands C++ class has others:
# kws_jax.ops.smoothing.RECOGNIZE_COMMANDS_DEFAULTS).
TEST_STREAMING_ACCURACY_DEFAULTS = SmoothingSettings()
