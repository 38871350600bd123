"""Constant matrices of the featurizer (NumPy, float64): window, mel filterbank, DCT, DFT.

Built here rather than taken from librosa, which is only a test reference. `cfg` is a
`kws_jax.ops.frontend.FrontendConfig` (read by attribute only).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def window_fn(name: str, size: int, length: int | None = None) -> np.ndarray:
  """Periodic Hann/Hamming window (scipy's fftbins=True form) of `length` samples
  zero-padded on both sides to `size` (librosa's win_length < n_fft), float64."""
  length = size if length is None else length
  n = np.arange(length)
  alpha = 0.5 if name == "hann" else 0.54
  window = alpha - (1.0 - alpha) * np.cos(2.0 * np.pi * n / length)
  start = (size - length) // 2
  return np.pad(window, (start, size - length - start))


def hz_to_mel(f: np.ndarray, scale: str) -> np.ndarray:
  f = np.asarray(f, dtype=np.float64)
  if scale == "htk":
    return 2595.0 * np.log10(1.0 + f / 700.0)
  # Slaney (Auditory Toolbox): linear below 1 kHz, logarithmic above.
  f_sp, min_log_hz = 200.0 / 3, 1000.0
  min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
  return np.where(f >= min_log_hz,
                  min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)


def mel_to_hz(m: np.ndarray, scale: str) -> np.ndarray:
  m = np.asarray(m, dtype=np.float64)
  if scale == "htk":
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
  f_sp, min_log_hz = 200.0 / 3, 1000.0
  min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
  return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(cfg: Any) -> np.ndarray:
  """(num_bins, num_mels) float64 triangles, linear in Hz between mel-spaced edges."""
  fmax = cfg.sample_rate / 2 if cfg.fmax is None else cfg.fmax
  bin_hz = np.linspace(0.0, cfg.sample_rate / 2, cfg.num_bins)
  edges_hz = mel_to_hz(np.linspace(hz_to_mel(cfg.fmin, cfg.mel_scale),
                                   hz_to_mel(fmax, cfg.mel_scale), cfg.num_mels + 2),
                       cfg.mel_scale)
  lo, mid, hi = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
  rising = (bin_hz[None, :] - lo) / (mid - lo)
  falling = (hi - bin_hz[None, :]) / (hi - mid)
  weights = np.maximum(0.0, np.minimum(rising, falling))      # (mels, bins)
  if cfg.mel_norm == "slaney":
    weights *= (2.0 / (hi - lo))
  return weights.T


def dct_matrix(num_inputs: int, num_outputs: int) -> np.ndarray:
  """(num_inputs, num_outputs) orthonormal DCT-II, so y = x @ D (scipy norm='ortho')."""
  n = np.arange(num_inputs)[:, None]
  k = np.arange(num_outputs)[None, :]
  d = np.cos(np.pi / num_inputs * (n + 0.5) * k) * np.sqrt(2.0 / num_inputs)
  d[:, 0] /= np.sqrt(2.0)
  return d


def dft_matrix(window: np.ndarray, n_fft: int, num_bins: int) -> np.ndarray:
  """(window_size, 2*num_bins) [Re | Im] of the windowed real DFT's first bins."""
  n = np.arange(window.shape[0])[:, None]
  k = np.arange(num_bins)[None, :]
  # Reduce n*k mod n_fft before scaling so the angles stay exact in float64.
  angle = 2.0 * np.pi * ((n * k) % n_fft) / n_fft
  return np.concatenate([window[:, None] * np.cos(angle),
                         -window[:, None] * np.sin(angle)], axis=1)
