"""Batch featurizer throughput on 1-second clips, next to librosa in the same run.

  python -m kws_jax.bench.featurizer [--clips N] [--batch B] [--json] [--variants]

For each preset: jitted `frontend.featurize` on int16 clips (B per call, after a
warm-up call), best of `--repeats` passes over N clips; librosa computes the same
features clip by clip (float32 input, its default float32 STFT) on min(N, 256) clips.
The ratio is kws_jax / librosa. `--variants` also times the tf_speech_commands preset
with the other spectrum method and other batch sizes. Figures depend on the load of
the machine: compare ratios from one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from kws_jax import audio, errors
from kws_jax.ops import frontend


def make_clips(count: int, seed: int = 0) -> np.ndarray:
  """Speech-like test clips: noise with a loud middle, int16 (count, 16000)."""
  rng = np.random.default_rng(seed)
  envelope = np.exp(-((np.arange(16000) - 8000) / 3000.0) ** 2)
  clips = rng.standard_normal((count, 16000)) * (0.02 + 0.3 * envelope)
  return audio.to_int16(clips)


def time_kws(cfg: frontend.FrontendConfig, clips: np.ndarray, batch: int, repeats: int) -> float:
  """Clips per second of the jitted batch featurizer (host->device copy included)."""
  params = frontend.make_params(cfg)
  fn = jax.jit(frontend.featurize)
  usable = (len(clips) // batch) * batch
  if usable == 0:
    raise errors.ConfigError(f"--clips ({len(clips)}) must be at least --batch ({batch})")
  batches = [clips[i:i + batch] for i in range(0, usable, batch)]
  fn(params, jnp.asarray(batches[0])).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    outs = [fn(params, jnp.asarray(b)) for b in batches]
    jax.block_until_ready(outs)
    best = min(best, time.perf_counter() - start)
  return usable / best


def librosa_features(cfg: frontend.FrontendConfig, y: np.ndarray) -> np.ndarray:
  import librosa
  if cfg.center:
    y = np.pad(y, cfg.window_size // 2, mode=cfg.pad_mode)
  else:
    side = (cfg.n_fft - cfg.window_size) // 2
    y = np.pad(y, (side, side))
  mel = librosa.feature.melspectrogram(
      y=y, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_size,
      win_length=cfg.window_size, window=cfg.window, center=False, power=cfg.power,
      n_mels=cfg.num_mels, fmin=cfg.fmin, fmax=cfg.fmax, htk=cfg.mel_scale == "htk",
      norm=cfg.mel_norm)
  if cfg.compression == "db":
    out = librosa.power_to_db(mel, ref=cfg.db_ref, amin=cfg.db_amin, top_db=cfg.top_db)
  elif cfg.compression == "log":
    out = np.log(np.maximum(mel, cfg.log_floor) + cfg.log_offset)
  else:
    out = mel
  if cfg.num_mfcc:
    out = librosa.feature.mfcc(S=out, n_mfcc=cfg.num_mfcc, dct_type=2, norm="ortho")
  return out.T


def time_librosa(cfg: frontend.FrontendConfig, clips: np.ndarray, repeats: int) -> float:
  floats = audio.from_int16(clips)
  librosa_features(cfg, floats[0])   # warm-up (filterbank cache, imports)
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    for y in floats:
      librosa_features(cfg, y)
    best = min(best, time.perf_counter() - start)
  return len(floats) / best


def main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(prog="python -m kws_jax.bench.featurizer",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--clips", type=int, default=2048, help="1-second clips per pass")
  # 16: the frames of a call stay in cache; larger batches were slower on 2 cores (BENCHMARKS.md §3).
  parser.add_argument("--batch", type=int, default=16, help="clips per featurize call")
  parser.add_argument("--repeats", type=int, default=3, help="passes; the best is reported")
  parser.add_argument("--presets", default=",".join(frontend.PRESETS),
                      help="comma-separated presets")
  parser.add_argument("--variants", action="store_true",
                      help="also time tf_speech_commands with dft/rfft and batch 16..256")
  parser.add_argument("--json", action="store_true", help="print one JSON object")
  parser.add_argument("--out", help="also write the JSON results to this file")
  errors.add_verbose_flag(parser)
  args = parser.parse_args(argv)
  if args.clips <= 0 or args.batch <= 0 or args.repeats <= 0:
    raise errors.ConfigError("--clips, --batch and --repeats must be positive")

  clips = make_clips(args.clips)
  runs = [(name, frontend.get_config(name), args.batch) for name in args.presets.split(",")]
  if args.variants:
    base = frontend.get_config("tf_speech_commands")
    other = "dft" if base.spectrum == "rfft" else "rfft"
    runs.append((f"tf_speech_commands spectrum={other}",
                 frontend.get_config("tf_speech_commands", spectrum=other), args.batch))
    for batch in (4, 16, 32, 128, 256):
      if batch != args.batch:
        runs.append((f"tf_speech_commands batch={batch}", base, batch))

  results = {"device": str(jax.devices()[0]), "cpu_count": os.cpu_count(),
             "load_average_1min": os.getloadavg()[0], "clips": args.clips, "rows": []}
  librosa_cache: dict[frontend.FrontendConfig, float] = {}
  for name, cfg, batch in tqdm(runs, desc="featurizer benchmark", disable=args.json):
    kws = time_kws(cfg, clips, batch, args.repeats)
    key = frontend.get_config(cfg.preset, spectrum=frontend.PRESETS[cfg.preset].spectrum)
    if key not in librosa_cache:
      librosa_cache[key] = time_librosa(cfg, clips[:min(len(clips), 256)], args.repeats)
    ref = librosa_cache[key]
    results["rows"].append({"name": name, "spectrum": cfg.spectrum, "batch": batch,
                            "kws_jax_clips_per_s": round(kws, 1),
                            "librosa_clips_per_s": round(ref, 1), "ratio": round(kws / ref, 2)})
  if args.out:
    with open(args.out, "w") as f:
      json.dump(results, f, indent=2)
  if args.json:
    print(json.dumps(results))
    return 0
  print(f"device {results['device']}, {results['cpu_count']} CPUs, "
        f"load average {results['load_average_1min']:.1f}, {args.clips} one-second clips")
  print(f"{'featurizer':38s} {'kws_jax clips/s':>16s} {'librosa clips/s':>16s} {'ratio':>7s}")
  for row in results["rows"]:
    print(f"{row['name']:38s} {row['kws_jax_clips_per_s']:16.0f} "
          f"{row['librosa_clips_per_s']:16.0f} {row['ratio']:7.1f}x")
  return 0


if __name__ == "__main__":
  errors.run_cli(main)
