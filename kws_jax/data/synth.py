"""Offline synthetic keyword set: `python -m kws_jax.data.synth --out DIR`.

Writes a Speech Commands-layout folder (one sub-folder per word,
`<speaker>_nohash_<n>.wav` clips, `validation_list.txt`, `testing_list.txt`,
`_background_noise_/`) from offline text-to-speech (`kws_jax.data.tts`): espeak-ng
always, and Debian's flite and the neural Piper voice where `engines` names them.

Each espeak speaker is an accent + voice variant + base pitch, pitch range and
speaking rate; each flite speaker a voice + duration stretch + mean pitch; each
Piper speaker a length scale and two noise scales; flite and Piper speakers are
also played 0.85-1.2x as fast (resampled: another vocal-tract length and pitch).
Every utterance jitters its speaker's settings and then gets a random level, an
optional microphone band-pass, optional room reverb (exponentially decaying noise
impulse response) and optional added noise (white/pink/brown noise or mains hum).
Validation and test speakers are espeak voices in accents that no training speaker
has, so their voices are unseen in training; flite and Piper speakers all train.

Generation is reproducible for a given seed and number of worker processes
(except Piper's clips: see `kws_jax.data.tts`): every clip's parameters are drawn
in the main process in a fixed order, and each engine's clips are rendered by fresh
worker processes (espeak-ng has global state: no threads), each a fixed share in a
fixed order (espeak-ng's output depends on what the same process synthesised
before, whatever its random seed).
"""

from __future__ import annotations

import argparse
import dataclasses
import fractions
import json
import multiprocessing
import os
import shutil
import sys
import time
import zlib
from typing import Sequence

import numpy as np

from kws_jax import audio as audio_io
from kws_jax.configs.default import KEYWORDS
from kws_jax.data import running_speech, tts
from kws_jax.data.synth_effects import NOISE_KINDS, SAMPLE_RATE, noise_signal, reverb, trim_silence
from kws_jax.data.words import HARD_NEGATIVES, UNKNOWN_WORDS  # noqa: F401 (re-exported)
from kws_jax.errors import DataError, add_verbose_flag, run_cli

VERSION = "2"  # Bump when the generated audio changes: cached sets are then regenerated.
CLIP_SAMPLES = 16000
TRAIN_ACCENTS = ("en-us", "en", "en-gb-x-rp", "en-gb-x-gbclan", "en-029", "en-us-nyc")
VALIDATION_ACCENTS = ("en-gb-x-gbcwmd",)
TEST_ACCENTS = ("en-gb-scotland",)
# espeak-ng voice variants that sound like (robotic) people; novelty voices left out.
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
            "klatt", "klatt2", "klatt3", "klatt4", "Andy", "Annie", "aunty", "belinda",
            "benjamin", "david", "edward", "grandma", "grandpa", "ian", "john", "linda", "max",
            "michael", "paul", "rob", "robert", "steph", "travis", "victor", "zac")
BACKGROUND_SECONDS = 60
INFO_FILE = "synth_info.json"


@dataclasses.dataclass(frozen=True)
class SynthParams:
  """What to generate (all recorded in synth_info.json; a change regenerates a cache)."""
  speakers_per_accent: int = 24
  unknown_words_per_speaker: int = 5
  seed: int = 0
  workers: int = 2  # processes (part of the identity: see _render_in_processes)
  keywords: tuple[str, ...] = KEYWORDS
  unknown_words: tuple[str, ...] = UNKNOWN_WORDS
  engines: tuple[str, ...] = ("espeak",)  # espeak first; "flite", "piper" add training speakers
  speakers_per_engine: int = 144  # training speakers of each engine other than espeak
  # Words of HARD_NEGATIVES each speaker also says (as `_unknown_`); 0: none.
  hard_negatives_per_speaker: int = 0
  # 1-second windows of sentences each speaker also reads (`running_speech/`, `_unknown_`).
  running_speech_per_speaker: int = 0

  def identity(self) -> dict:
    d = dataclasses.asdict(self)
    for key in ("keywords", "unknown_words", "engines"):
      d[key] = list(d[key])
    for key in ("hard_negatives_per_speaker", "running_speech_per_speaker"):
      if not d[key]:
        del d[key]   # sets made before the field existed stay valid
    return {"version": VERSION, **d}


@dataclasses.dataclass(frozen=True)
class Utterance:
  word: str
  relpath: str
  voice: str  # espeak accent+variant, flite voice or "joe" (Piper)
  seed: int  # the engine's random seed and the post-processing seed
  engine: str = "espeak"
  settings: tuple[tuple[str, float], ...] = ()  # keyword arguments of the engine's `say`
  speed: float = 1.0  # played this much faster (resampled)


def plan(params: SynthParams) -> tuple[list[Utterance], dict[str, str]]:
  """Every clip to render, in a fixed order, and each speaker's split."""
  if params.speakers_per_accent < 1:
    raise DataError("speakers_per_accent must be at least 1")
  engines = tuple(params.engines)
  for engine in engines:
    tts.check_known(engine)
  if not engines or engines[0] != "espeak" or len(set(engines)) != len(engines):
    raise DataError(f"data.synthetic.engines={','.join(engines)}: list 'espeak' first (its "
                    "held-out accents are the validation and test voices), each engine once")
  rng = np.random.default_rng([params.seed, 1])
  texts = _running_texts(params)
  utterances: list[Utterance] = []
  speaker_split: dict[str, str] = {}
  accents = ([(a, "train") for a in TRAIN_ACCENTS] + [(a, "validation") for a in VALIDATION_ACCENTS]
             + [(a, "test") for a in TEST_ACCENTS])
  for accent, split in accents:
    variants = rng.permutation(len(VARIANTS))
    for k in range(params.speakers_per_accent):
      variant = VARIANTS[variants[k % len(VARIANTS)]]
      speaker = f"{accent}-{variant.lower()}-{k:03d}"
      speaker_split[speaker] = split
      pitch, pitch_range = int(rng.integers(20, 80)), int(rng.integers(20, 80))
      rate = int(rng.integers(95, 175))  # words/min; slower than espeak's 175 (words too short)
      for word, relpath, r in _speaker_texts(params, rng, speaker, texts):
        settings = (("pitch", int(np.clip(pitch + r.integers(-6, 7), 0, 99))),
                    ("pitch_range", pitch_range), ("rate", int(rate + r.integers(-15, 16))))
        utterances.append(Utterance(
            word=word, relpath=relpath, voice=f"{accent}+{variant}",
            settings=settings, seed=int(r.integers(1, 2**31 - 1))))
  for engine in engines[1:]:
    utterances += _plan_training_speakers(engine, params, speaker_split, texts)
  return utterances, speaker_split


def _running_texts(params: SynthParams) -> list[str]:
  if params.running_speech_per_speaker <= 0:
    return []
  return running_speech.sentences(params.keywords, params.unknown_words + HARD_NEGATIVES)


def _speaker_texts(params: SynthParams, rng: np.random.Generator, speaker: str,
                   texts: Sequence[str]) -> list[tuple[str, str, np.random.Generator]]:
  """(text, relpath, generator for its settings) of everything one speaker says: its words
  (drawn from `rng`), then its sentences (from the speaker's own generator, so that the plan
  without sentences stays the same)."""
  said = [(word, f"{word}/{speaker}_nohash_0.wav", rng) for word in _speaker_words(params, rng)]
  if params.running_speech_per_speaker > 0:
    own = np.random.default_rng([params.seed, 5, zlib.crc32(speaker.encode())])
    picks = own.choice(len(texts), min(params.running_speech_per_speaker, len(texts)),
                       replace=False)
    said += [(texts[i], f"{running_speech.FOLDER}/{speaker}_nohash_{n}.wav", own)
             for n, i in enumerate(sorted(picks))]
  return said


def _speaker_words(params: SynthParams, rng: np.random.Generator) -> list[str]:
  """What one speaker says: every keyword, `unknown_words_per_speaker` other words, then
  `hard_negatives_per_speaker` hard negatives (none drawn when 0: the plan is unchanged)."""
  num_unknown = min(params.unknown_words_per_speaker, len(params.unknown_words))
  others = rng.choice(len(params.unknown_words), num_unknown, replace=False)
  words = list(params.keywords) + [params.unknown_words[i] for i in sorted(others)]
  hard = [w for w in HARD_NEGATIVES if w not in params.keywords]
  if params.hard_negatives_per_speaker > 0:
    picks = rng.choice(len(hard), min(params.hard_negatives_per_speaker, len(hard)), replace=False)
    words += [hard[i] for i in sorted(picks)]
  return words


def _plan_training_speakers(engine: str, params: SynthParams, speaker_split: dict[str, str],
                            texts: Sequence[str]) -> list[Utterance]:
  """`speakers_per_engine` flite or Piper training speakers, each saying every keyword."""
  rng = np.random.default_rng([params.seed, 3, tts.ENGINES.index(engine)])
  utterances = []
  for k in range(params.speakers_per_engine):
    voice = tts.FLITE_VOICES[k % len(tts.FLITE_VOICES)] if engine == "flite" else "joe"
    speaker = f"{engine}-{voice}-{k:03d}"
    speaker_split[speaker] = "train"
    speed = round(float(rng.uniform(0.85, 1.2)), 3)
    if engine == "flite":
      base = dict(duration_stretch=rng.uniform(0.8, 1.6), f0_mean=rng.uniform(80, 220))
    else:
      base = dict(length_scale=rng.uniform(0.8, 1.5), noise_scale=rng.uniform(0.3, 1.0),
                  noise_w_scale=rng.uniform(0.4, 1.2))
    for word, relpath, r in _speaker_texts(params, rng, speaker, texts):
      settings = tuple((key, round(float(value * r.uniform(0.92, 1.08)), 3))
                       for key, value in base.items())  # each utterance a little different
      utterances.append(Utterance(
          word=word, relpath=relpath, voice=voice, engine=engine,
          settings=settings, speed=speed, seed=int(r.integers(1, 2**31 - 1))))
  return utterances


def generate(out_dir: str, params: SynthParams = SynthParams(), *, progress: bool = True) -> dict:
  """Writes the synthetic set into `out_dir` (replaced if it exists); returns its summary."""
  utterances, speaker_split = plan(params)
  for engine in params.engines:
    tts.check_available(engine)  # Fail early with the install hint.
  tmp_dir = out_dir.rstrip(os.sep) + ".partial"
  shutil.rmtree(tmp_dir, ignore_errors=True)
  for folder in sorted({u.relpath.split("/")[0] for u in utterances}):
    os.makedirs(os.path.join(tmp_dir, folder), exist_ok=True)
  start = time.perf_counter()
  for engine in params.engines:  # Fresh processes per engine: espeak's order stays fixed.
    share = [u for u in utterances if u.engine == engine]
    workers = max(1, min(int(params.workers), len(share)))
    _render_in_processes(engine, share, tmp_dir, workers, progress)
  _write_background(os.path.join(tmp_dir, "_background_noise_"), params.seed)
  seconds = time.perf_counter() - start
  for split, name in (("validation", "validation_list.txt"), ("test", "testing_list.txt")):
    with open(os.path.join(tmp_dir, name), "w") as f:
      for u in utterances:
        if speaker_split[u.relpath.split("/")[1].split("_nohash_")[0]] == split:
          f.write(u.relpath + "\n")
  summary = {
      **params.identity(), "clips": len(utterances), "seconds": round(seconds, 2),
      "clips_per_second": round(len(utterances) / seconds, 1),
      "speakers": len(speaker_split),
      "voices": len({(u.engine, u.voice) for u in utterances}),
      "clips_per_engine": {e: sum(u.engine == e for u in utterances) for e in params.engines},
      "speakers_per_split": {s: sum(v == s for v in speaker_split.values())
                             for s in ("train", "validation", "test")},
      "accents": {"train": list(TRAIN_ACCENTS), "validation": list(VALIDATION_ACCENTS),
                  "test": list(TEST_ACCENTS)},
  }
  with open(os.path.join(tmp_dir, INFO_FILE), "w") as f:
    json.dump(summary, f, indent=1)
  shutil.rmtree(out_dir, ignore_errors=True)
  os.replace(tmp_dir, out_dir)
  return summary


def ensure_generated(out_dir: str, params: SynthParams = SynthParams()) -> str:
  """`out_dir` holding the set for `params`: generated on first use, reused afterwards."""
  info_path = os.path.join(out_dir, INFO_FILE)
  if os.path.exists(info_path):
    with open(info_path) as f:
      info = json.load(f)
    if {k: info.get(k) for k in params.identity()} == params.identity():
      return out_dir
    print(f"synthetic keyword set in {out_dir} was made by another generator version or "
          "with other parameters: regenerating", file=sys.stderr)
  elif os.path.exists(out_dir) and os.listdir(out_dir):
    raise DataError(f"{out_dir} exists and is not a synthetic keyword set ({INFO_FILE} missing); "
                    "give an empty or new data.synthetic_dir")
  os.makedirs(os.path.dirname(os.path.abspath(out_dir)), exist_ok=True)
  summary = generate(out_dir, params)
  print(f"synthetic keyword set: {summary['clips']} clips from {summary['speakers']} speakers "
        f"({summary['voices']} voices) in {summary['seconds']:.1f} s "
        f"({summary['clips_per_second']:.0f} clips/s) -> {out_dir}", file=sys.stderr)
  return out_dir


# ----------------------------------------------------------------------------- rendering


def _render_in_processes(engine: str, utterances: list[Utterance], out_dir: str, workers: int,
                         progress: bool) -> None:
  """Worker w renders utterances w, w + workers, ... in order, each in a fresh process.

  espeak-ng carries state from one utterance to the next (the same call gives
  slightly different audio depending on what was said before, whatever the random
  seed), so the output is reproducible only for a fixed order per fresh process:
  the set depends on (params, workers), and `workers` is part of its identity.
  """
  from tqdm import tqdm
  ctx = multiprocessing.get_context("spawn")  # espeak-ng (global state) and JAX dislike fork.
  queue = ctx.Queue()
  processes = [ctx.Process(target=_render_worker,
                           args=(engine, utterances[w::workers], out_dir, queue), daemon=True)
               for w in range(workers)]
  for process in processes:
    process.start()
  done = 0
  with tqdm(total=len(utterances), desc=f"synthesising keyword clips ({engine})", unit="clip",
            disable=not progress) as bar:
    while done < len(utterances):
      try:
        message = queue.get(timeout=5)
      except Exception:  # queue.Empty: check that the workers are alive
        if any(p.exitcode not in (None, 0) for p in processes):
          break
        continue
      if isinstance(message, str):
        for process in processes:
          process.terminate()
        raise DataError(f"speech synthesis failed: {message}")
      done += message
      bar.update(message)
  for process in processes:
    process.join()
  if done < len(utterances):
    raise DataError(f"speech synthesis worker died (exit codes "
                    f"{[p.exitcode for p in processes]}); try data.synthetic.workers=1")


def _render_worker(engine_name: str, utterances: list[Utterance], out_dir: str, queue) -> None:
  try:
    engine = tts.make(engine_name)
    for u in utterances:
      audio_io.write_wav(os.path.join(out_dir, u.relpath), render(engine, u), SAMPLE_RATE)
      queue.put(1)
  except Exception as e:  # Reported to the parent as one line.
    queue.put(f"{u.relpath if 'u' in locals() else 'init'}: {e}")


def render(engine, u: Utterance) -> np.ndarray:
  """One 1-second float32 clip at 16 kHz: speech, level, mic colour, reverb, noise."""
  from scipy import signal
  rng = np.random.default_rng(u.seed)
  speech = engine.say(u.word, u.voice, **dict(u.settings), seed=u.seed)
  # To 16 kHz, `speed` times as fast: 22050 -> 16000 Hz is 320/441.
  ratio = fractions.Fraction(SAMPLE_RATE, engine.sample_rate) / fractions.Fraction(str(u.speed))
  ratio = ratio.limit_denominator(1000)
  if ratio != 1:
    speech = signal.resample_poly(speech, ratio.numerator, ratio.denominator).astype(np.float32)
  running = u.relpath.startswith(running_speech.FOLDER + "/")
  speech = trim_silence(speech)
  if speech.size == 0:
    raise DataError(f"{u.engine} produced no audio for {u.word!r} with voice {u.voice}")
  if rng.uniform() < 0.5:  # microphone / channel colouring
    low, high = rng.uniform(60, 300), rng.uniform(3000, 7600)
    sos = signal.butter(2, [low, high], btype="bandpass", fs=SAMPLE_RATE, output="sos")
    speech = signal.sosfilt(sos, speech).astype(np.float32)
  if rng.uniform() < 0.5:
    speech = reverb(speech, rng)
  if running:  # a window anywhere in the sentence, words cut at its edges
    clip = speech = running_speech.cut_window(speech, CLIP_SAMPLES, rng)
    offset = 0
  else:  # Speech Commands clips are centred on the loudest part: centre, with jitter.
    speech = speech[:CLIP_SAMPLES]
    room = CLIP_SAMPLES - speech.size
    offset = int(np.clip(room / 2 + rng.normal(0, room / 6 + 1), 0, room))
    clip = np.zeros(CLIP_SAMPLES, np.float32)
    clip[offset:offset + speech.size] = speech
  clip *= 10 ** rng.uniform(np.log10(0.05), np.log10(0.9)) / max(np.abs(clip).max(), 1e-6)
  if rng.uniform() < 0.8:
    noise = noise_signal(str(rng.choice(NOISE_KINDS)), CLIP_SAMPLES, rng)
    speech_rms = np.sqrt(np.mean(clip[offset:offset + speech.size] ** 2)) + 1e-9
    snr_db = rng.uniform(5, 40)
    clip += noise * (speech_rms / (np.sqrt(np.mean(noise**2)) + 1e-12) / 10 ** (snr_db / 20))
  return np.clip(clip, -1, 1)


def _write_background(path: str, seed: int) -> None:
  """`_background_noise_`: 60 s recordings of synthetic noise at Speech Commands' levels."""
  os.makedirs(path, exist_ok=True)
  rng = np.random.default_rng([seed, 2])
  for kind in ("white", "pink", "brown", "hum"):
    noise = noise_signal(kind, BACKGROUND_SECONDS * SAMPLE_RATE, rng)
    # Slow level changes, like a fan or traffic coming and going.
    envelope = 1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) *
                                np.arange(noise.size) / SAMPLE_RATE)
    noise = noise * envelope * 0.004 / np.sqrt(np.mean((noise * envelope) ** 2))
    audio_io.write_wav(os.path.join(path, f"{kind}_noise.wav"), noise, SAMPLE_RATE)


# ----------------------------------------------------------------------------- CLI


def main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(prog="python -m kws_jax.data.synth", description=__doc__.split(
      "\n")[0])
  parser.add_argument("--out", required=True,
                      help="output folder: new, empty, or an earlier synthetic set (replaced); "
                           "a folder holding anything else is refused")
  defaults = SynthParams()
  parser.add_argument("--speakers-per-accent", type=int, default=defaults.speakers_per_accent,
                      help=f"synthetic speakers per accent ({len(TRAIN_ACCENTS)} training, "
                      f"{len(VALIDATION_ACCENTS)} validation, {len(TEST_ACCENTS)} test accents)")
  parser.add_argument("--unknown-words-per-speaker", type=int,
                      default=defaults.unknown_words_per_speaker,
                      help="non-keyword words each speaker says (default: %(default)s)")
  parser.add_argument("--seed", type=int, default=defaults.seed,
                      help="voice and word draws (default: %(default)s)")
  parser.add_argument("--workers", type=int, default=defaults.workers,
                      help="processes (default: %(default)s)")
  parser.add_argument("--engines", default=",".join(defaults.engines),
                      help=f"comma-separated, espeak first, from {', '.join(tts.ENGINES)} "
                      "(default: %(default)s)")
  parser.add_argument("--speakers-per-engine", type=int, default=defaults.speakers_per_engine,
                      help="training speakers of each engine after espeak (default: %(default)s)")
  add_verbose_flag(parser)
  args = parser.parse_args(argv)
  out = os.path.abspath(args.out)
  if os.path.exists(out) and os.listdir(out) and not os.path.exists(os.path.join(out, INFO_FILE)):
    raise DataError(f"{out} exists and is not a synthetic keyword set; give a new or empty folder")
  engines = tuple(e.strip() for e in args.engines.split(",") if e.strip())
  summary = generate(out, SynthParams(
      speakers_per_accent=args.speakers_per_accent,
      unknown_words_per_speaker=args.unknown_words_per_speaker, seed=args.seed,
      workers=args.workers, engines=engines, speakers_per_engine=args.speakers_per_engine))
  print(f"wrote {summary['clips']} clips ({summary['speakers']} speakers, {summary['voices']} "
        f"voices) in {summary['seconds']:.1f} s = "
        f"{summary['clips_per_second']:.0f} clips/s with {summary['workers']} processes -> {out}")
  return 0


if __name__ == "__main__":
  run_cli(main)
