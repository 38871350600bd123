"""Reading and writing audio files with clear errors.

All of kws_jax works on 16 kHz mono audio. `read_audio` checks every file and
raises `AudioError` naming the file for anything it cannot use, so callers can
skip bad files with a count or stop, and nothing fails later in jitted code.
"""

from __future__ import annotations

import os
import struct
from typing import Literal

import numpy as np
import soundfile as sf

from kws_jax.errors import AudioError

DEFAULT_SAMPLE_RATE = 16000
AUDIO_EXTENSIONS = (".wav", ".flac")


def read_audio(path: str | os.PathLike,
               sample_rate: int = DEFAULT_SAMPLE_RATE,
               *,
               resample: bool = False,
               stereo: Literal["error", "mix"] = "error",
               max_seconds: float | None = None) -> np.ndarray:
  """Reads a WAV/FLAC file as float32 samples in [-1, 1], shape (samples,).

  Args:
    path: the file.
    sample_rate: the rate the caller needs.
    resample: resample other rates (polyphase, scipy) instead of refusing them.
    stereo: "error" refuses multi-channel files, "mix" averages the channels.
    max_seconds: refuse files longer than this (None: no limit).

  Raises:
    AudioError: missing, empty, corrupt or truncated file, wrong rate (without
      `resample`), multi-channel (with stereo="error"), non-finite samples, too long.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise AudioError(f"{path}: no such file")
  if os.path.getsize(path) == 0:
    raise AudioError(f"{path}: empty file (0 bytes)")
  try:
    info = sf.info(path)
  except Exception as e:  # soundfile raises LibsndfileError/RuntimeError variants.
    raise AudioError(f"{path}: not a readable audio file ({_short(e)})") from None
  if info.frames == 0:
    raise AudioError(f"{path}: contains no samples")
  missing = wav_missing_bytes(path)
  if missing:
    raise AudioError(f"{path}: truncated: the WAV header promises {missing} more bytes of "
                     "audio than the file holds")
  if max_seconds is not None and info.frames > max_seconds * info.samplerate:
    raise AudioError(f"{path}: {info.frames / info.samplerate:.1f} s long, more than "
                     f"the {max_seconds:g} s allowed here")
  if info.channels > 1 and stereo == "error":
    raise AudioError(f"{path}: has {info.channels} channels; kws_jax needs mono "
                     "audio (mix it down, e.g. `sox in.wav -c 1 out.wav`)")
  if info.samplerate != sample_rate and not resample:
    raise AudioError(f"{path}: sample rate is {info.samplerate} Hz, expected "
                     f"{sample_rate} Hz (resample it, e.g. `sox in.wav -r {sample_rate} out.wav`)")
  try:
    data, rate = sf.read(path, dtype="float32", always_2d=True)
  except Exception as e:
    raise AudioError(f"{path}: corrupt or truncated audio ({_short(e)})") from None
  if data.shape[0] == 0:
    raise AudioError(f"{path}: contains no samples")
  if data.shape[0] < info.frames:
    raise AudioError(f"{path}: truncated: header promises {info.frames} samples, "
                     f"file holds {data.shape[0]}")
  audio = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
  if not np.all(np.isfinite(audio)):
    raise AudioError(f"{path}: contains NaN or infinite samples")
  if rate != sample_rate:
    audio = resample_audio(audio, rate, sample_rate)
  return np.ascontiguousarray(audio, dtype=np.float32)


def resample_audio(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
  """Polyphase resampling (scipy), exact for integer rate ratios."""
  from math import gcd

  from scipy.signal import resample_poly
  g = gcd(int(rate_in), int(rate_out))
  return resample_poly(audio, rate_out // g, rate_in // g).astype(np.float32)


# The one int16 <-> float scale: TF's decode_wav, soundfile and librosa divide by 32768, so a
# 16-bit file read as float and stored back as int16 is unchanged.
INT16_SCALE = 32768.0


def from_int16(samples: np.ndarray) -> np.ndarray:
  """int16 samples to float32 in [-1, 1) (divided by INT16_SCALE)."""
  return np.asarray(samples).astype(np.float32) / INT16_SCALE


def to_int16(audio: np.ndarray) -> np.ndarray:
  """Float samples in [-1, 1] to int16 (times INT16_SCALE, clipped), how clips are kept in memory."""
  return np.clip(np.round(np.asarray(audio, np.float64) * INT16_SCALE), -32768,
                 32767).astype(np.int16)


def fit_length(audio: np.ndarray, num_samples: int) -> np.ndarray:
  """Zero-pads at the end or trims to exactly `num_samples` (TF speech_commands)."""
  if audio.shape[-1] >= num_samples:
    return audio[..., :num_samples]
  pad = [(0, 0)] * (audio.ndim - 1) + [(0, num_samples - audio.shape[-1])]
  return np.pad(audio, pad)


def write_wav(path: str | os.PathLike, audio: np.ndarray,
              sample_rate: int = DEFAULT_SAMPLE_RATE) -> None:
  """Writes mono 16-bit PCM; float input is taken as [-1, 1]."""
  audio = np.asarray(audio)
  if audio.dtype != np.int16:
    audio = to_int16(audio)
  os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
  sf.write(os.fspath(path), audio, sample_rate, subtype="PCM_16")


def _short(e: Exception) -> str:
  return str(e).strip().splitlines()[-1][:160] if str(e).strip() else type(e).__name__


def wav_missing_bytes(path: str) -> int:
  """Bytes a WAV file's `data` chunk declares beyond the end of the file (0: complete).

  libsndfile quietly reads what is there, so a cut-off download would pass as a
  shorter clip; the RIFF chunk sizes tell. Non-WAV files return 0.
  """
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    header = f.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
      return 0
    position = 12
    while position + 8 <= size:
      f.seek(position)
      chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
      if chunk_id == b"data":
        return max(0, chunk_size - (size - position - 8))
      position += 8 + chunk_size + (chunk_size & 1)
  return 0
