"""Effects of the synthetic set's renderer: silence trimming, room reverb, synthetic noise.

Plain NumPy/SciPy on float32 audio at 16 kHz (kws_jax.data.synth renders with them; the
negative audio of kws_jax.streameval draws its noise from `noise_signal`).
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000  # the synthetic set's rate (kws_jax.data.synth re-exports it)
NOISE_KINDS = ("white", "pink", "brown", "hum")


def trim_silence(x: np.ndarray, threshold: float = 0.02) -> np.ndarray:
  """`x` without its leading and trailing samples below `threshold` x its peak."""
  if x.size == 0:
    return x
  loud = np.flatnonzero(np.abs(x) > threshold * np.abs(x).max())
  return x[loud[0]:loud[-1] + 1] if loud.size else x[:0]


def reverb(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Room reverb: a noise impulse response decaying 60 dB in rt60 seconds, mixed wet/dry."""
  from scipy import signal
  rt60 = rng.uniform(0.15, 0.7)
  t = np.arange(int(rt60 * SAMPLE_RATE)) / SAMPLE_RATE
  impulse = rng.standard_normal(t.size) * 10 ** (-3 * t / rt60)
  impulse[0] = 0.0
  wet = signal.fftconvolve(x, impulse)[: x.size + t.size // 2]
  wet *= rng.uniform(0.1, 0.5) * np.abs(x).max() / (np.abs(wet).max() + 1e-12)
  out = wet.copy()
  out[: x.size] += x
  return out.astype(np.float32)


def noise_signal(kind: str, num_samples: int, rng: np.random.Generator) -> np.ndarray:
  """Unit-RMS synthetic noise: white, pink (1/f), brown (1/f^2) or mains hum."""
  if kind == "hum":
    t = np.arange(num_samples) / SAMPLE_RATE
    base = rng.choice([50.0, 60.0]) * rng.uniform(0.995, 1.005)
    x = sum(rng.uniform(0.2, 1.0) / h * np.sin(2 * np.pi * base * h * t + rng.uniform(0, 2 * np.pi))
            for h in range(1, 8))
    x = x + 0.05 * rng.standard_normal(num_samples)
  else:
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    freqs = np.fft.rfftfreq(num_samples, 1 / SAMPLE_RATE)
    exponent = {"white": 0.0, "pink": 0.5, "brown": 1.0}[kind]
    spectrum *= 1.0 / np.maximum(freqs, 20.0) ** exponent
    x = np.fft.irfft(spectrum, num_samples)
  x = np.asarray(x, np.float64)
  return (x / (np.sqrt(np.mean(x**2)) + 1e-12)).astype(np.float32)
