"""Featurize one audio file: `python -m kws_jax.features --preset NAME --wav IN.wav --out OUT.npy`.

Writes the preset's features as a (frames, features) float32 .npy, the way a
trained model sees them (like ELL's featurize_wav.py): use it to inspect features
or to check a device's featurizer against this one.
"""

from __future__ import annotations

import argparse
import os
from typing import Sequence

import jax
import numpy as np

from kws_jax import audio, errors
from kws_jax.ops import frontend


def main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m kws_jax.features",
      description="Write one audio file's features as a (frames, features) float32 .npy.")
  parser.add_argument("--preset", default="tf_speech_commands",
                      help=f"featurizer preset: {', '.join(sorted(frontend.PRESETS))} "
                           "(default: %(default)s)")
  parser.add_argument("--wav", required=True, help="16 kHz mono WAV/FLAC file")
  parser.add_argument("--out", required=True, help="output .npy path")
  errors.add_verbose_flag(parser)
  args = parser.parse_args(argv)

  cfg = frontend.get_config(args.preset)
  samples = audio.read_audio(args.wav, cfg.sample_rate)
  if frontend.num_frames(cfg, samples.shape[0]) == 0:
    raise errors.AudioError(
        f"{args.wav}: {samples.shape[0]} samples is shorter than one {cfg.preset} frame "
        f"({cfg.window_size} samples)")
  feats = np.asarray(jax.jit(frontend.featurize)(frontend.make_params(cfg), samples),
                     dtype=np.float32)
  out_dir = os.path.dirname(os.path.abspath(args.out))
  try:
    os.makedirs(out_dir, exist_ok=True)
    np.save(args.out, feats)
  except OSError as e:
    raise errors.KwsError(f"cannot write {args.out}: {e.strerror or e}") from None
  print(f"{args.out}: {feats.shape[0]} frames x {feats.shape[1]} features ({cfg.preset})")
  return 0


if __name__ == "__main__":
  errors.run_cli(main)
