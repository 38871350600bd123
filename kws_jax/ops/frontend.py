"""Audio featurizer: framing, window, spectrum, mel filterbank, log/dB, DCT (MFCC).

One pure-JAX pipeline with named presets and a streaming twin:

  cfg = get_config("tf_speech_commands")      # frozen FrontendConfig
  params = make_params(cfg)                    # pytree of constant arrays + static cfg
  feats = featurize(params, audio)             # (..., S) -> (..., T, F)
  state = init_state(params); state, frame = step(params, state, chunk)   # chunk (..., hop)

Pipeline per frame of `window_size` samples (frames start every `hop_size` samples):
  window -> |DFT|^power over `n_fft` points (frame zero-padded at the end; the
  magnitude does not depend on where the zeros go) -> mel filterbank (each filter's
  run of bins, gathered: `banded_mel`) -> log or dB -> optional DCT-II (orthonormal)
  -> first `num_mfcc` coefficients.

The spectrum is computed either by an FFT (`spectrum="rfft"`: `half_length_rfft`, a
complex FFT of n_fft / 2 points) or as a matmul with a real DFT matrix
(`spectrum="dft"`): IREE's FFT is wrong on Vulkan and fails for non-power-of-two
lengths, and on CPU a matmul restricted to the bins the mel filterbank uses is also
competitive. Filterbank and DCT matrices are built
here in NumPy (float64, then cast) because librosa is only a test reference.

Presets (see PRESETS; any field can be overridden by keyword):
  ell                 16 kHz, Hamming 512, hop 512, n_fft 512, 80 HTK mel over
                      0-8000 Hz on the magnitude spectrum, natural log with
                      floor 1e-12 (ELL's MelFilterBank uses the same 1127*ln(1+f/700)
                      scale; its bin-quantised triangles are approximated by
                      exact triangles).
  tf_speech_commands  TF speech_commands `preprocess="mfcc"`: 30 ms periodic-Hann
                      window (480), 10 ms stride (160), n_fft 512, magnitude
                      spectrum (TF's mfcc op takes sqrt of the squared
                      spectrogram), 40 HTK mel bands over 20-4000 Hz,
                      features = DCT_ortho(log(max(mel, 1e-12)))[:40].
                      Exact formula we use; TF differs in two known ways: its
                      triangles are linear in mel rather than in Hz, and its DCT
                      scales every row by sqrt(2/N) (our row 0 is TF's row 0
                      divided by sqrt(2)). 40 coefficients = the example's
                      `--feature_bin_count` default (train.py).
  torchaudio          torchaudio MelSpectrogram + AmplitudeToDB: n_fft 320,
                      Hann 320, hop 160, centred reflect padding, power 2,
                      64 HTK mel without norm, dB (ref 1, amin 1e-10) with
                      top_db 80. DFT path (320 is not a power of two).
  speech_embedding    openWakeWord's melspectrogram.onnx (the input of Google's speech
                      embedding, kws_jax.models.speech_embedding): samples at int16
                      scale, 512-sample frames holding a centred periodic Hann of 400,
                      hop 160, power 2, 32 Slaney mel bands (Slaney norm) over
                      60-3800 Hz, 10*log10(max(x, 1e-10)), floor at peak - 80 dB,
                      then openWakeWord's x/10 + 2. The ONNX graph takes the peak over
                      its whole input tensor (every clip of a batch); here the peak is
                      the running max over the frames so far of each clip
                      (top_db_mode="running"): causal, so training features equal the
                      streaming step's, and a clip never depends on its batch mates.
                      top_db_mode="clip" (peak of each clip) equals the ONNX graph
                      run on one clip at a time.

Precision: float32 DFT rounding error is proportional to the frame's total energy
(measured ~2e-7 of the peak amplitude), so bins far below the loudest one carry a
larger relative error: on real clips dB values within 60 dB of a clip's peak match
float64 librosa to 1e-3 dB, values 60-80 dB down (torchaudio's top_db range) to
about 5e-3 dB. This is float32 arithmetic, not a formula difference.

int16 input is scaled by 1/32768 (as TF's decode_wav and librosa do).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from kws_jax.errors import ConfigError

# The constant matrices live in filterbanks.py; re-exported here, where callers look for them.
from kws_jax.ops.filterbanks import dct_matrix, dft_matrix, hz_to_mel, mel_filterbank, mel_to_hz, window_fn  # noqa: F401

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class FrontendConfig:
  """Every option of the featurizer; hashable, so it can be a static jit arg."""
  preset: str = "custom"
  sample_rate: int = 16000
  window_size: int = 480          # samples per frame
  hop_size: int = 160             # samples between frame starts
  n_fft: int = 512                # >= window_size; frames are zero-padded to it
  window: Literal["hann", "hamming"] = "hann"   # periodic (fftbins) form
  center: bool = False            # pad window_size//2 each side (librosa center=True)
  pad_mode: Literal["reflect", "constant"] = "reflect"
  spectrum: Literal["rfft", "dft"] = "dft"
  power: float = 1.0              # 1: magnitude, 2: power
  num_mels: int = 40
  fmin: float = 0.0
  fmax: float | None = None       # None: sample_rate / 2
  mel_scale: Literal["htk", "slaney"] = "htk"
  mel_norm: Literal["slaney"] | None = None    # "slaney": area normalisation
  compression: Literal["log", "db", "none"] = "log"
  log_floor: float = 1e-12        # log(max(x, log_floor) + log_offset)
  log_offset: float = 0.0
  db_amin: float = 1e-10          # 10*log10(max(x, amin)) - 10*log10(max(ref, amin))
  db_ref: float = 1.0
  top_db: float | None = None     # floor at peak - top_db (dB only)
  # "clip": peak of each example (batch only; see `step`); "running": max over the frames
  # so far (causal; the streaming step keeps it in its state).
  top_db_mode: Literal["clip", "running"] = "clip"
  win_length: int | None = None   # Hann/Hamming length centred in the frame (None: window_size)
  input_scale: float = 1.0        # samples in [-1, 1) are multiplied by this first
  out_scale: float = 1.0          # features = out_scale * features + out_offset, last
  out_offset: float = 0.0
  num_mfcc: int | None = None     # None: no DCT, features are the mel bands

  @property
  def num_features(self) -> int:
    return self.num_mfcc if self.num_mfcc else self.num_mels

  @property
  def num_bins(self) -> int:
    return self.n_fft // 2 + 1

  @property
  def hop_seconds(self) -> float:
    return self.hop_size / self.sample_rate


PRESETS: dict[str, FrontendConfig] = {
    "ell": FrontendConfig(
        preset="ell", window_size=512, hop_size=512, n_fft=512, window="hamming", spectrum="rfft",
        power=1.0, num_mels=80, fmin=0.0, fmax=8000.0, mel_scale="htk",
        compression="log", log_floor=1e-12),
    "tf_speech_commands": FrontendConfig(
        preset="tf_speech_commands", window_size=480, hop_size=160, n_fft=512,
        window="hann", spectrum="rfft", power=1.0, num_mels=40, fmin=20.0, fmax=4000.0,
        mel_scale="htk", compression="log", log_floor=1e-12, num_mfcc=40),
    "torchaudio": FrontendConfig(
        preset="torchaudio", window_size=320, hop_size=160, n_fft=320,
        window="hann", center=True, pad_mode="reflect", spectrum="dft", power=2.0,
        num_mels=64, fmin=0.0, fmax=8000.0, mel_scale="htk", mel_norm=None,
        compression="db", db_ref=1.0, db_amin=1e-10, top_db=80.0),
    "speech_embedding": FrontendConfig(
        preset="speech_embedding", window_size=512, win_length=400, hop_size=160, n_fft=512,
        window="hann", spectrum="dft", power=2.0, num_mels=32, fmin=60.0, fmax=3800.0,
        mel_scale="slaney", mel_norm="slaney", compression="db", db_ref=1.0, db_amin=1e-10,
        top_db=80.0, top_db_mode="running", input_scale=32768.0, out_scale=0.1,
        out_offset=2.0),
}

_FIELDS = {f.name: f for f in dataclasses.fields(FrontendConfig)}


def get_config(preset: str = "tf_speech_commands", **overrides: Any) -> FrontendConfig:
  """The named preset with `overrides` applied, validated."""
  if preset not in PRESETS:
    raise ConfigError(f"unknown featurizer preset {preset!r}; choose one of "
                      f"{', '.join(sorted(PRESETS))}")
  unknown = sorted(set(overrides) - set(_FIELDS) - {"preset"})
  if unknown:
    raise ConfigError(f"unknown featurizer option(s) {', '.join(unknown)}; valid options: "
                      f"{', '.join(sorted(set(_FIELDS) - {'preset'}))}")
  overrides = {k: v for k, v in overrides.items() if k != "preset"}
  for key in ("sample_rate", "window_size", "hop_size", "n_fft", "num_mels", "num_mfcc",
              "win_length"):
    if key in overrides and overrides[key] is not None:
      if isinstance(overrides[key], bool) or int(overrides[key]) != overrides[key]:
        raise ConfigError(f"featurizer option {key} must be an integer, got {overrides[key]!r}")
      overrides[key] = int(overrides[key])
  cfg = dataclasses.replace(PRESETS[preset], **overrides)
  validate(cfg)
  return cfg


def validate(cfg: FrontendConfig) -> None:
  """Raises ConfigError with what to change for an unusable config."""
  def bad(msg: str) -> None:
    raise ConfigError(f"featurizer preset {cfg.preset!r}: {msg}")
  if min(cfg.sample_rate, cfg.window_size, cfg.hop_size, cfg.n_fft, cfg.num_mels) <= 0:
    bad("sample_rate, window_size, hop_size, n_fft and num_mels must be positive")
  if cfg.n_fft < cfg.window_size:
    bad(f"n_fft ({cfg.n_fft}) must be >= window_size ({cfg.window_size})")
  if cfg.window not in ("hann", "hamming"):
    bad(f"window must be 'hann' or 'hamming', not {cfg.window!r}")
  if cfg.spectrum not in ("rfft", "dft"):
    bad(f"spectrum must be 'rfft' or 'dft', not {cfg.spectrum!r}")
  if cfg.spectrum == "rfft" and cfg.n_fft & (cfg.n_fft - 1):
    bad(f"spectrum='rfft' needs a power-of-two n_fft, got {cfg.n_fft}; use spectrum='dft'")
  if cfg.power not in (1.0, 2.0):
    bad(f"power must be 1 (magnitude) or 2 (power), not {cfg.power!r}")
  if cfg.mel_scale not in ("htk", "slaney"):
    bad(f"mel_scale must be 'htk' or 'slaney', not {cfg.mel_scale!r}")
  if cfg.mel_norm not in (None, "slaney"):
    bad(f"mel_norm must be None or 'slaney', not {cfg.mel_norm!r}")
  if cfg.compression not in ("log", "db", "none"):
    bad(f"compression must be 'log', 'db' or 'none', not {cfg.compression!r}")
  fmax = cfg.sample_rate / 2 if cfg.fmax is None else cfg.fmax
  if not 0 <= cfg.fmin < fmax <= cfg.sample_rate / 2:
    bad(f"need 0 <= fmin < fmax <= sample_rate/2, got fmin={cfg.fmin}, fmax={fmax}")
  if cfg.num_mfcc is not None and not 0 < cfg.num_mfcc <= cfg.num_mels:
    bad(f"num_mfcc must be in 1..num_mels ({cfg.num_mels}), got {cfg.num_mfcc}")
  if cfg.win_length is not None and not 0 < cfg.win_length <= cfg.window_size:
    bad(f"win_length must be in 1..window_size ({cfg.window_size}), got {cfg.win_length}")
  if cfg.top_db_mode not in ("clip", "running"):
    bad(f"top_db_mode must be 'clip' or 'running', not {cfg.top_db_mode!r}")
  if cfg.pad_mode not in ("reflect", "constant"):
    bad(f"pad_mode must be 'reflect' or 'constant', not {cfg.pad_mode!r}")


def num_frames(cfg: FrontendConfig, num_samples: int) -> int:
  """Frames `featurize` returns for `num_samples` samples."""
  if cfg.center:
    return 1 + num_samples // cfg.hop_size
  return max(0, 1 + (num_samples - cfg.window_size) // cfg.hop_size)


# ------------------------------------------------------------------- params / state

@flax.struct.dataclass
class FrontendParams:
  """Constant arrays of the featurizer, plus its (static) config."""
  window: Array            # (window_size,)  used by the rfft path
  dft: Array | None        # (window_size, 2*used_bins) windowed DFT, dft path
  mel: Array               # (used_bins, num_mels)
  mel_index: Array         # (num_mels, width) int32: the bins each filter weighs
  mel_weights: Array       # (num_mels, width) their weights (0 past a filter's end)
  dct: Array | None        # (num_mels, num_mfcc)
  cfg: FrontendConfig = flax.struct.field(pytree_node=False)


def used_bins(cfg: FrontendConfig) -> int:
  """Spectrum bins up to the last one any mel filter weighs (the rest are not computed)."""
  nonzero = np.nonzero(mel_filterbank(cfg).any(axis=1))[0]
  return int(nonzero[-1]) + 1 if nonzero.size else 1


def banded_mel(mel: np.ndarray) -> dict[str, Array]:
  """The (bins, mels) filterbank as each filter's run of bins and their weights."""
  nonzero = mel != 0
  first = np.where(nonzero.any(axis=0), np.argmax(nonzero, axis=0), 0)
  end = np.where(nonzero.any(axis=0), mel.shape[0] - np.argmax(nonzero[::-1], axis=0), 1)
  width = int((end - first).max())
  index = first[:, None] + np.arange(width)[None, :]                     # (mels, width)
  inside = index < end[:, None]
  index = np.where(inside, index, first[:, None])
  weights = np.where(inside, mel.T[np.arange(mel.shape[1])[:, None], index], 0.0)
  return {"mel_index": jnp.asarray(index, jnp.int32),
          "mel_weights": jnp.asarray(weights, jnp.float32)}


def make_params(cfg: FrontendConfig) -> FrontendParams:
  validate(cfg)
  window = window_fn(cfg.window, cfg.window_size, cfg.win_length)
  bins = used_bins(cfg)
  mel = mel_filterbank(cfg)[:bins]
  return FrontendParams(
      window=jnp.asarray(window, jnp.float32),
      dft=(jnp.asarray(dft_matrix(window, cfg.n_fft, bins), jnp.float32)
           if cfg.spectrum == "dft" else None),
      mel=jnp.asarray(mel, jnp.float32),
      **banded_mel(mel),
      dct=(jnp.asarray(dct_matrix(cfg.num_mels, cfg.num_mfcc), jnp.float32)
           if cfg.num_mfcc else None),
      cfg=cfg)


# ---------------------------------------------------------------------- computation

def _scaled(cfg: FrontendConfig, audio: Array) -> Array:
  audio = to_float(audio)
  return audio * cfg.input_scale if cfg.input_scale != 1.0 else audio


def _finish(cfg: FrontendConfig, feats: Array) -> Array:
  if (cfg.out_scale, cfg.out_offset) == (1.0, 0.0):
    return feats
  return feats * cfg.out_scale + cfg.out_offset


def to_float(audio: Array) -> Array:
  """int16 samples to float32 in [-1, 1) (divided by 32768); floats pass through."""
  audio = jnp.asarray(audio)
  if audio.dtype == jnp.int16:
    return audio.astype(jnp.float32) * (1.0 / 32768.0)
  return audio.astype(jnp.float32)


def frame_signal(audio: Array, window_size: int, hop_size: int) -> Array:
  """(..., S) -> (..., T, window_size), frame t = audio[t*hop : t*hop + window_size]."""
  num_samples = audio.shape[-1]
  count = max(0, 1 + (num_samples - window_size) // hop_size)
  if window_size % hop_size == 0:
    # Frames are runs of whole hops: plain reshapes and slices, no gather.
    blocks_needed = count - 1 + window_size // hop_size
    blocks = audio[..., :blocks_needed * hop_size].reshape(
        audio.shape[:-1] + (blocks_needed, hop_size))
    parts = [blocks[..., j:j + count, :] for j in range(window_size // hop_size)]
    return jnp.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
  index = np.arange(count)[:, None] * hop_size + np.arange(window_size)[None, :]
  return audio[..., index]


def linear_spectrum(params: FrontendParams, frames: Array) -> Array:
  """(..., T, window_size) frames -> (..., T, used_bins) |DFT|^power."""
  cfg = params.cfg
  bins = params.mel.shape[0]
  if cfg.spectrum == "dft":
    reim = jnp.matmul(frames, params.dft, precision=jax.lax.Precision.HIGHEST)
    re, im = reim[..., :bins], reim[..., bins:]
    power = re * re + im * im
  else:
    re, im = half_length_rfft(frames * params.window, cfg.n_fft, bins)
    power = re * re + im * im
  return power if cfg.power == 2.0 else jnp.sqrt(power)


def half_length_rfft(x: Array, n: int, bins: int) -> tuple[Array, Array]:
  """Real and imaginary parts of `jnp.fft.rfft(x, n)[..., :bins]` (n even), from one complex
  FFT of n / 2 points: the even samples as its real part, the odd ones as its imaginary
  part, then one split (the textbook real-FFT identity).

  Why not `jnp.fft.rfft`: IREE runs a real FFT as a complex one of the full length, so this
  halves its work (the Cortex-M4's front end: 9 FFT stages of 512 points, 68 k instructions
  per hop -> 8 stages of 256, 33 k; BUILD.md section 5).
  """
  x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n - x.shape[-1])])
  half = n // 2
  z = jnp.fft.fft(jax.lax.complex(x[..., 0::2], x[..., 1::2]), axis=-1)
  k = np.arange(bins)
  z_k = z[..., k % half]
  z_mirror = jnp.conj(z[..., (half - k) % half])
  even = 0.5 * (z_k + z_mirror)
  odd = -0.5j * (z_k - z_mirror)
  twiddle = jnp.asarray(np.exp(-2j * np.pi * k / n), jnp.complex64)
  spec = even + twiddle * odd
  return jnp.real(spec), jnp.imag(spec)


def _compress(cfg: FrontendConfig, mel: Array) -> Array:
  if cfg.compression == "log":
    return jnp.log(jnp.maximum(mel, cfg.log_floor) + cfg.log_offset)
  if cfg.compression == "db":
    return (10.0 * jnp.log10(jnp.maximum(mel, cfg.db_amin))
            - 10.0 * math.log10(max(cfg.db_ref, cfg.db_amin)))
  return mel


def frames_to_features(params: FrontendParams, frames: Array) -> Array:
  """(..., T, window_size) raw frames -> (..., T, F), without top_db clamping."""
  spec = linear_spectrum(params, frames)
  # Each mel filter weighs a few neighbouring bins: a gather of those and a short sum,
  # not a (bins x mels) matrix product that is mostly zeros (21 k of the Cortex-M4's
  # instructions per hop for tf_speech_commands -> 8.8 k, and 20 KB less flash).
  mel = jnp.sum(spec[..., params.mel_index] * params.mel_weights, axis=-1)
  feats = _compress(params.cfg, mel)
  if params.dct is not None:
    feats = jnp.matmul(feats, params.dct, precision=jax.lax.Precision.HIGHEST)
  return feats


def featurize(params: FrontendParams, audio: Array) -> Array:
  """(..., S) float in [-1, 1] or int16 -> (..., num_frames(cfg, S), num_features) float32.

  With `top_db`, each example (the last two axes) is clamped to its own max - top_db,
  like librosa.power_to_db on one clip, or (top_db_mode="running") each frame to the
  max over that example's frames up to it, minus top_db.
  """
  cfg = params.cfg
  audio = _scaled(cfg, audio)
  if cfg.center:
    pad = cfg.window_size // 2
    widths = [(0, 0)] * (audio.ndim - 1) + [(pad, pad)]
    audio = jnp.pad(audio, widths, mode=cfg.pad_mode)
  frames = frame_signal(audio, cfg.window_size, cfg.hop_size)
  feats = frames_to_features(params, frames)
  if cfg.top_db is not None and cfg.compression == "db" and cfg.top_db_mode == "running":
    peak = jax.lax.cummax(jnp.max(feats, axis=-1, keepdims=True), axis=feats.ndim - 2)
    feats = jnp.maximum(feats, peak - cfg.top_db)
  elif cfg.top_db is not None and cfg.compression == "db":
    peak = jnp.max(feats, axis=(-2, -1), keepdims=True)
    feats = jnp.maximum(feats, peak - cfg.top_db)
  return _finish(cfg, feats)


def _running_floor(cfg: FrontendConfig) -> bool:
  return cfg.top_db is not None and cfg.compression == "db" and cfg.top_db_mode == "running"


def init_state(params: FrontendParams, batch_shape: tuple[int, ...] = ()) -> dict[str, Array]:
  """Streaming state: the last `window_size` samples (zeros before the stream starts), and
  with top_db_mode="running" the peak (dB) so far."""
  state = {"buffer": jnp.zeros(tuple(batch_shape) + (params.cfg.window_size,), jnp.float32)}
  if _running_floor(params.cfg):
    state["peak"] = jnp.full(tuple(batch_shape) + (1,), -1e30, jnp.float32)  # finite: exports
  return state


def step(params: FrontendParams, state: dict[str, Array],
         chunk: Array) -> tuple[dict[str, Array], Array]:
  """One hop of streaming audio in, one feature frame out.

  chunk: (..., hop_size) float or int16. Returns the new state and (..., F).

  Alignment: step k (0-based) sees samples [(k+1)*hop - window, (k+1)*hop) of
  the stream, zeros before sample 0. So scanning `step` over x gives exactly
  `featurize(non-centred cfg, concat(zeros(window - hop), x))` frame by frame;
  when window is a multiple of hop, step k == featurize(x)[k - (window/hop - 1)]
  for every k >= window/hop - 1 (ELL preset: step k == frame k).
  The step never centre-pads and never applies top_db_mode="clip" (it cannot see the
  rest of the clip); the floor `db_amin` still bounds the dB values. top_db_mode=
  "running" keeps the peak in the state, so scanning `step` equals `featurize`.
  """
  cfg = params.cfg
  chunk = _scaled(cfg, chunk)
  if chunk.shape[-1] != cfg.hop_size:
    raise ConfigError(f"streaming featurizer needs chunks of hop_size={cfg.hop_size} "
                      f"samples, got {chunk.shape[-1]}")
  joined = jnp.concatenate([state["buffer"], chunk], axis=-1)
  buffer = joined[..., -cfg.window_size:]
  frame = frames_to_features(params, buffer[..., None, :])[..., 0, :]
  new_state = {"buffer": buffer}
  if _running_floor(cfg):
    new_state["peak"] = jnp.maximum(state["peak"], jnp.max(frame, axis=-1, keepdims=True))
    frame = jnp.maximum(frame, new_state["peak"] - cfg.top_db)
  return new_state, _finish(cfg, frame)


def stream(params: FrontendParams, audio: Array, state: dict[str, Array] | None = None):
  """Scans `step` over whole hops of (..., S) audio -> (state, (..., S // hop, F))."""
  cfg = params.cfg
  audio = to_float(audio)    # `step` applies input_scale
  hops = audio.shape[-1] // cfg.hop_size
  chunks = audio[..., :hops * cfg.hop_size].reshape(audio.shape[:-1] + (hops, cfg.hop_size))
  if state is None:
    state = init_state(params, audio.shape[:-1])
  chunks = jnp.moveaxis(chunks, -2, 0)
  state, frames = jax.lax.scan(lambda s, c: step(params, s, c), state, chunks)
  return state, jnp.moveaxis(frames, 0, -2)
