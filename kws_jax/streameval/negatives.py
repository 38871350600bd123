"""Hours of keyword-free audio after a keyword stream, each part labelled in a manifest.

The output WAV is the keyword stream (TF-style words of unseen speakers) followed by negative
parts of `part_seconds` each, one kind per part:
- `real_words`: non-keyword words of real speakers (Speech Commands `_unknown_` words),
- `noise`: the background-noise recordings (or synthetic noise when there are none),
- `synthetic_speech`: keyword-free sentences read by espeak-ng, one voice per part,
- `confusables`: phonetic neighbours of the keywords, each in another espeak voice.
Speech parts are mixed over noise at a random SNR. The manifest (JSON) lists every part with its
first and last sample, so it accounts for every second of the file, and each speech part's
utterances (`[first sample, one past the last, text]`), so a false accept can be traced to the
word or sentence under it. Audio is written part by
part with soundfile: hours never sit in memory. Deterministic for (seed, workers).

With `positive_snr_db`, the keyword stream's words keep their recorded (full) volume and a bed of
synthetic speech and noise is laid under them at that SNR (Picovoice's benchmark uses 10 dB).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Sequence

import numpy as np
import soundfile as sf
from tqdm import tqdm

from kws_jax.data import synth_effects
from kws_jax.errors import ConfigError, DataError
from kws_jax.streameval import speech_parts
from kws_jax.streameval.detection import Event

KEYWORD_PART = "keywords"
NEGATIVE_KINDS = ("real_words", "noise", "synthetic_speech", "confusables")
DEFAULT_SHARES = {"real_words": 0.2, "noise": 0.2, "synthetic_speech": 0.4, "confusables": 0.2}
SPEECH_KINDS = ("synthetic_speech", "confusables")


@dataclasses.dataclass
class NegativeConfig:
  hours: float = 2.0
  sample_rate: int = 16000
  part_seconds: float = 30.0
  snr_db: tuple[float, float] = (0.0, 20.0)  # speech over noise, drawn per part
  noise_rms: tuple[float, float] = (0.002, 0.08)  # noise-only parts, log-uniform
  shares: dict[str, float] = dataclasses.field(default_factory=lambda: dict(DEFAULT_SHARES))
  workers: int = 2
  seed: int = 0


@dataclasses.dataclass
class Part:
  kind: str
  start: int  # first sample
  end: int    # one past the last sample
  seed: int
  details: dict[str, Any] = dataclasses.field(default_factory=dict)


def plan(config: NegativeConfig, offset: int, available: Sequence[str]) -> list[Part]:
  """Negative parts from sample `offset` on, kinds in shuffled share proportions."""
  if config.hours <= 0:
    raise ConfigError(f"--negative-hours must be > 0, got {config.hours}")
  unknown = sorted(set(config.shares) - set(NEGATIVE_KINDS))
  if unknown:
    raise ConfigError(f"negative shares: unknown kind(s) {unknown}; kinds: {NEGATIVE_KINDS}")
  shares = {k: v for k, v in config.shares.items() if k in available and v > 0}
  if not shares:
    raise ConfigError("no negative audio source left (no real words, no espeak-ng?)")
  rng = np.random.default_rng([config.seed, 4099])
  total = int(round(config.hours * 3600 * config.sample_rate))
  part = int(config.part_seconds * config.sample_rate)
  count = -(-total // part)
  weights = np.array(list(shares.values()), np.float64)
  counts = np.floor(weights / weights.sum() * count).astype(int)
  # Largest remainders get the parts left over, so the kinds add up to `count`.
  for i in np.argsort(-(weights / weights.sum() * count - counts))[:count - counts.sum()]:
    counts[i] += 1
  kinds = rng.permutation(np.repeat(list(shares), counts))
  return [Part(str(kind), offset + i * part, offset + min((i + 1) * part, total),
               int(rng.integers(1, 2**31 - 1))) for i, kind in enumerate(kinds)]


def noise_bed(samples: int, noises: Sequence[np.ndarray], rng: np.random.Generator
              ) -> tuple[np.ndarray, str]:
  """Unit-RMS noise of `samples`: a looped background recording, or synthetic noise."""
  if noises:
    index = int(rng.integers(len(noises)))
    source = noises[index]
    reps = -(-(samples + source.size) // source.size)
    start = int(rng.integers(source.size))
    x = np.tile(source, reps)[start:start + samples].astype(np.float64)
    name = f"background {index}"
  else:
    name = str(rng.choice(synth_effects.NOISE_KINDS))
    x = synth_effects.noise_signal(name, samples, rng).astype(np.float64)
  return (x / (np.sqrt(np.mean(x**2)) + 1e-12)).astype(np.float32), name


def _rms_active(x: np.ndarray) -> float:
  """RMS of the samples of `x` that belong to speech (above 1 % of the peak)."""
  active = x[np.abs(x) > 0.01 * (np.abs(x).max() + 1e-12)]
  return float(np.sqrt(np.mean(active**2))) if active.size else 0.0


def over_noise(foreground: np.ndarray, noises: Sequence[np.ndarray], rng: np.random.Generator,
               snr_db: float) -> tuple[np.ndarray, str]:
  bed, name = noise_bed(foreground.size, noises, rng)
  level = _rms_active(foreground) / 10 ** (snr_db / 20)
  return foreground + level * bed, name


def real_word_part(samples: int, words: Sequence[np.ndarray], rng: np.random.Generator
                   ) -> np.ndarray:
  """Real non-keyword words one after another, each trimmed of its padding, random gaps."""
  out = np.zeros(samples, np.float32)
  position = int(rng.integers(0, 8000))
  while position < samples:
    clip = words[int(rng.integers(len(words)))]
    loud = np.flatnonzero(np.abs(clip) > 0.1 * (np.abs(clip).max() + 1e-9))
    clip = clip[max(0, loud[0] - 1600):loud[-1] + 1600] if loud.size else clip
    clip = clip * 10 ** rng.uniform(-0.4, 0.2)
    n = min(clip.size, samples - position)
    out[position:position + n] = clip[:n]
    position += clip.size + int(rng.uniform(0.2, 1.2) * 16000)
  return out


def render(part: Part, config: NegativeConfig, noises: Sequence[np.ndarray],
           words: Sequence[np.ndarray],
           speech: tuple[np.ndarray, list[tuple[int, int, str]]] | None) -> np.ndarray:
  """A part's audio (float32, clipped to [-1, 1]); records what went in into `part.details`.

  `speech`: `speech_parts.render_part`'s (audio, utterances) for the speech kinds."""
  rng = np.random.default_rng(part.seed)
  samples = part.end - part.start
  if part.kind == "noise":
    bed, name = noise_bed(samples, noises, rng)
    rms = float(np.exp(rng.uniform(*np.log(config.noise_rms))))
    part.details.update(source=name, rms=round(rms, 5))
    return np.clip(bed * rms, -1, 1)
  if part.kind == "real_words":
    foreground = real_word_part(samples, words, rng)
  else:
    foreground, said = speech
    part.details["utterances"] = [[part.start + a, part.start + b, text] for a, b, text in said]
  snr = float(rng.uniform(*config.snr_db))
  mixed, name = over_noise(foreground, noises, rng, snr)
  part.details.update(noise=name, snr_db=round(snr, 2))
  return np.clip(mixed, -1, 1)


def texts_for(keywords: Sequence[str], seed: int) -> tuple[dict[str, list[str]], str]:
  """The sentences and confusable words the speech workers read, and the text source."""
  found, source = speech_parts.sentences(keywords, seed)
  return {"synthetic_speech": found, "confusables": speech_parts.confusables_for(keywords)}, source


def write_long_test(out_wav: str, manifest_path: str, keyword_audio: np.ndarray,
                    keyword_labels: Sequence[Event], keywords: Sequence[str],
                    config: NegativeConfig, noises: Sequence[np.ndarray],
                    real_words: Sequence[np.ndarray], *, positive_snr_db: float | None = None,
                    progress: bool = True) -> dict[str, Any]:
  """Writes keyword stream + negatives to `out_wav` and the manifest; returns the manifest."""
  available = [k for k in NEGATIVE_KINDS if k != "real_words" or len(real_words)]
  offset = keyword_audio.shape[0]
  parts = plan(config, offset, available) if config.hours > 0 else []
  bed_parts = []
  if positive_snr_db is not None:
    bed_config = dataclasses.replace(config, hours=offset / config.sample_rate / 3600,
                                     shares={"synthetic_speech": 1.0}, seed=config.seed + 1)
    bed_parts = plan(bed_config, 0, ["synthetic_speech"])
  tasks = [(p.kind, p.end - p.start, p.seed) for p in bed_parts + parts if p.kind in SPEECH_KINDS]
  texts, text_source = texts_for(keywords, config.seed) if tasks else ({"confusables": []}, "")
  speech = speech_parts.render_in_order(tasks, texts, config.workers)
  total_seconds = (offset + sum(p.end - p.start for p in parts)) / config.sample_rate
  head = {"kind": KEYWORD_PART, "start": 0, "end": offset, "words": len(keyword_labels)}
  with sf.SoundFile(out_wav, "w", config.sample_rate, 1, subtype="PCM_16") as f, \
      tqdm(total=round(total_seconds), desc="writing test stream", unit="s",
           disable=not progress) as bar:
    if bed_parts:
      bed = np.concatenate([render(p, config, noises, real_words, next(speech))
                            for p in bed_parts])
      keyword_audio = under_keywords(keyword_audio, bed, keyword_labels, positive_snr_db,
                                     config.sample_rate)
      head.update(positive_snr_db=positive_snr_db, background="synthetic_speech over noise")
    f.write(keyword_audio)
    bar.update(round(offset / config.sample_rate))
    for part in parts:
      audio = render(part, config, noises, real_words,
                     next(speech) if part.kind in SPEECH_KINDS else None)
      f.write(audio)
      bar.update(round((part.end - part.start) / config.sample_rate))
  manifest = {
      "sample_rate": config.sample_rate, "samples": offset + sum(p.end - p.start for p in parts),
      "negative_seconds": sum(p.end - p.start for p in parts) / config.sample_rate,
      "text_source": text_source, "keywords": list(keywords),
      "confusable_words": texts["confusables"], "seed": config.seed, "workers": config.workers,
      "parts": [head] + [{"kind": p.kind, "start": p.start, "end": p.end, **p.details}
                         for p in parts]}
  with open(manifest_path, "w") as f:
    json.dump(manifest, f, indent=1)
  return manifest


def under_keywords(words: np.ndarray, bed: np.ndarray, labels: Sequence[Event], snr_db: float,
                   sample_rate: int, clip_ms: float = 1000.0) -> np.ndarray:
  """`words` (full volume) plus `bed` scaled so each word sits `snr_db` above it.

  The bed's gain is set at each word's centre and interpolated linearly between words (no level
  jumps that a detector could hear).
  """
  bed = bed[:words.size]
  clip = int(clip_ms * sample_rate / 1000)
  centres, gains = [], []
  for _, time_ms in labels:
    a = int(time_ms * sample_rate / 1000)
    word, under = words[a:a + clip], bed[a:a + clip]
    if not word.size:
      continue
    bed_rms = float(np.sqrt(np.mean(under.astype(np.float64)**2))) + 1e-9
    centres.append(a + clip // 2)
    gains.append(_rms_active(word) / (bed_rms * 10 ** (snr_db / 20)))
  if not gains:
    return words
  gain = np.interp(np.arange(words.size), centres, gains).astype(np.float32)
  return np.clip(words + gain * bed, -1, 1).astype(np.float32)


def read_manifest(path: str) -> dict[str, Any]:
  try:
    with open(path) as f:
      manifest = json.load(f)
  except FileNotFoundError:
    raise DataError(f"{path}: manifest not found (make-test --negative-hours writes it)") from None
  except json.JSONDecodeError as e:
    raise DataError(f"{path}: not a JSON manifest ({e})") from None
  if not isinstance(manifest, dict) or "parts" not in manifest or "sample_rate" not in manifest:
    raise DataError(f"{path}: a manifest needs the keys 'parts' and 'sample_rate'")
  return manifest
