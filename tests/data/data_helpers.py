"""Small Speech Commands-layout folders made on the fly (no shared data needed)."""

from __future__ import annotations

import pathlib

import numpy as np
import soundfile as sf

SR = 16000


def tone(freq: float, seconds: float = 0.6, sr: int = SR, amp: float = 0.3) -> np.ndarray:
  t = np.arange(int(seconds * sr)) / sr
  return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write(path: pathlib.Path, audio: np.ndarray, sr: int = SR) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  sf.write(str(path), audio, sr, subtype="PCM_16")


def make_word_folder(root: pathlib.Path, *, words=("yes", "no"), others=("cat", "dog"),
                     speakers: int = 12, background: bool = True) -> pathlib.Path:
  """Word clips are tones (one frequency per word) from `speakers` hex-named speakers."""
  rng = np.random.default_rng(0)
  freqs = {w: 300 + 150 * i for i, w in enumerate((*words, *others))}
  for s in range(speakers):
    speaker = f"{0xa0000000 + s * 7919:08x}"
    for word in (*words, *others):
      for n in range(2 if word in words else 1):
        clip = tone(freqs[word], rng.uniform(0.4, 0.9)) * rng.uniform(0.5, 1.0)
        write(root / word / f"{speaker}_nohash_{n}.wav", clip)
  if background:
    write(root / "_background_noise_" / "white.wav",
          (0.05 * rng.standard_normal(3 * SR)).astype(np.float32))
  return root


def add_bad_files(root: pathlib.Path) -> dict[str, str]:
  """Adds broken and odd files to `root/yes`; returns {relpath: kind}."""
  yes = root / "yes"
  (yes / "ffff0001_nohash_0.wav").write_bytes(b"")  # empty
  (yes / "ffff0002_nohash_0.wav").write_bytes(b"RIFF\x00\x01garbage" * 10)  # corrupt
  good = yes / "ffff0003_nohash_0.wav"
  write(good, tone(400, 0.9))
  data = good.read_bytes()
  good.write_bytes(data[: len(data) // 2])  # truncated: header promises more samples
  stereo = np.stack([tone(400, 0.5), tone(400, 0.5)], axis=1)
  write(yes / "ffff0004_nohash_0.wav", stereo)
  write(yes / "ffff0005_nohash_0.wav", tone(500, 0.5, sr=8000), sr=8000)
  write(yes / "ffff0006_nohash_0.wav", tone(500, 0.5, sr=44100), sr=44100)
  return {"yes/ffff0001_nohash_0.wav": "empty", "yes/ffff0002_nohash_0.wav": "corrupt",
          "yes/ffff0003_nohash_0.wav": "truncated", "yes/ffff0004_nohash_0.wav": "stereo",
          "yes/ffff0005_nohash_0.wav": "8k", "yes/ffff0006_nohash_0.wav": "44k"}
