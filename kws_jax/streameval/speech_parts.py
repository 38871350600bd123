"""Keyword-free speech for negative audio: sentences and confusable words read by espeak-ng.

Text comes from Debian's `fortunes-min` (sentences) or `wamerican` (word sequences) when
installed, else from sentences built here from a fixed vocabulary, so tests and machines without
those packages still work. Every token that is a keyword is dropped from the text: the negatives
must hold no keyword. Confusable words are phonetic neighbours of each keyword (rhymes, shared
onsets, words that begin with it); exact homophones ("know", "write") are left out, since no
audio model can tell them from the keyword.

espeak-ng has global state and its output depends on what the process said before, so speech is
rendered by worker processes that each take a fixed share of the parts in a fixed order (as in
kws_jax.data.synth): the audio depends on (seed, number of workers).
"""

from __future__ import annotations

import multiprocessing
import os
import re
from typing import Iterator, Sequence

import numpy as np

from kws_jax.data import synth, tts
from kws_jax.data.running_speech import split_sentences, strip_keywords  # noqa: F401 (API)

FORTUNES = "/usr/share/games/fortunes/fortunes"
WORDS = "/usr/share/dict/words"

CONFUSABLES = {
    "yes": ("yet", "yeah", "yellow", "chess", "guess", "less", "mess", "dress", "yesterday",
            "bless", "yesman", "jest"),
    "no": ("snow", "now", "note", "nose", "slow", "so", "noon", "known", "nobody", "toe"),
    "up": ("cup", "pup", "upper", "app", "hop", "supper", "hub", "cop", "upward", "pop"),
    "down": ("town", "brown", "gown", "clown", "noun", "sound", "dawn", "done", "round",
             "frown", "downtown"),
    "left": ("lift", "loft", "theft", "laughed", "deft", "leaf", "lest", "lefty", "heft",
             "cleft"),
    "right": ("bright", "light", "night", "white", "bite", "ride", "rice", "fight", "rights",
              "rye"),
    "on": ("an", "own", "in", "onion", "don", "con", "honor", "gone", "swan", "one"),
    "off": ("of", "cough", "often", "awful", "toff", "scoff", "offer", "laugh", "oaf", "doff"),
    "stop": ("stock", "shop", "top", "step", "stoop", "stomp", "strap", "drop", "spot", "stab"),
    "go": ("goat", "show", "grow", "ago", "goal", "dough", "ghost", "glow", "gold", "though"),
}

_VOCABULARY = (
    "the a this that my your our their some every small large old new quiet loud green blue "
    "house garden river window table letter story music morning evening winter summer city "
    "village teacher doctor friend brother sister family kitchen station market bridge "
    "walks reads writes brings carries finds opens closes likes watches visits remembers "
    "slowly quickly often never always today tomorrow again together before after because "
    "while and but with from into near under above behind beside through across").split()

_ACCENTS = synth.TRAIN_ACCENTS + synth.VALIDATION_ACCENTS + synth.TEST_ACCENTS


def confusables_for(keywords: Sequence[str]) -> list[str]:
  """Confusable words of the given keywords (none of them a keyword)."""
  wanted = {k.lower() for k in keywords}
  words = sorted({w for k in wanted for w in CONFUSABLES.get(k, ())} - wanted)
  return words


def sentences(keywords: Sequence[str], seed: int, fortunes: str = FORTUNES,
              words: str = WORDS, count: int = 2000) -> tuple[list[str], str]:
  """`count` keyword-free sentences and where they came from.

  Fortunes' sentences first (real English prosody), topped up with random word sequences from
  the dictionary (or the built-in vocabulary) to `count`.
  """
  rng = np.random.default_rng([seed, 31])
  found: list[str] = []
  sources = []
  if os.path.isfile(fortunes):
    with open(fortunes, encoding="utf-8", errors="replace") as f:
      raw = split_sentences(f.read())
    found = [s for s in (strip_keywords(r, keywords) for r in raw) if len(s.split()) >= 3]
    sources.append(fortunes)
  vocabulary, source = list(_VOCABULARY), "built-in vocabulary"
  if os.path.isfile(words):
    with open(words, encoding="utf-8", errors="replace") as f:
      vocabulary = [w.strip() for w in f if re.fullmatch(r"[a-z]{2,10}", w.strip())]
    source = words
  wanted = {k.lower() for k in keywords}
  vocabulary = [w for w in vocabulary if w not in wanted]
  if len(found) < count:
    sources.append(source)
    lengths = rng.integers(4, 12, count - len(found))
    picks = rng.integers(0, len(vocabulary), int(lengths.sum()))
    ends = np.cumsum(lengths)
    found += [" ".join(vocabulary[i] for i in picks[end - n:end]) for n, end in zip(lengths, ends)]
  return found[:count], " + ".join(sources)


def _voice(rng: np.random.Generator) -> dict:
  """A random espeak speaker: accent + variant, pitch, pitch range and rate."""
  return dict(voice=f"{rng.choice(_ACCENTS)}+{rng.choice(synth.VARIANTS)}",
              pitch=int(rng.integers(15, 85)), pitch_range=int(rng.integers(15, 85)),
              rate=int(rng.integers(110, 190)), seed=int(rng.integers(1, 2**31 - 1)))


def render_part(engine, kind: str, samples: int, seed: int, texts: Sequence[str]
                ) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
  """`samples` of foreground speech: sentences (one voice per part) or words (many voices),
  and the utterances as (first sample, one past the last, text) within the part.

  Utterances follow each other with random pauses; the last one is cut at the part's end.
  """
  from scipy import signal
  rng = np.random.default_rng(seed)
  out = np.zeros(samples, np.float32)
  said = []
  position = int(rng.integers(0, synth.SAMPLE_RATE // 2))
  speaker = _voice(rng)
  while position < samples:
    text = texts[int(rng.integers(len(texts)))]
    if kind == "confusables":
      speaker = _voice(rng)  # every word in another voice
    speech = engine.say(text, speaker["voice"], rate=speaker["rate"], pitch=speaker["pitch"],
                        pitch_range=speaker["pitch_range"], seed=speaker["seed"])
    speech = signal.resample_poly(speech, 320, 441).astype(np.float32)
    if speech.size:
      speech *= 10 ** rng.uniform(-1.0, -0.05) / max(float(np.abs(speech).max()), 1e-6)
      n = min(speech.size, samples - position)
      out[position:position + n] = speech[:n]
      said.append((position, position + n, text))
      position += speech.size
    pause = (0.3, 1.2) if kind == "confusables" else (0.15, 0.9)
    position += int(rng.uniform(*pause) * synth.SAMPLE_RATE)
  return out, said


# ----------------------------------------------------------------------------- worker processes

_ENGINE = None
_TEXTS: dict[str, list[str]] = {}


def _init_worker(texts: dict[str, list[str]]) -> None:
  global _ENGINE, _TEXTS
  _ENGINE = tts.Espeak()
  _TEXTS = texts


def _render_task(task: tuple[str, int, int]) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
  kind, samples, seed = task
  return render_part(_ENGINE, kind, samples, seed, _TEXTS[kind])


def render_in_order(tasks: Sequence[tuple[str, int, int]], texts: dict[str, list[str]],
                    workers: int = 2, ahead: int = 3
                    ) -> Iterator[tuple[np.ndarray, list[tuple[int, int, str]]]]:
  """Yields `render_part`'s (audio, utterances) of each (kind, samples, seed) task, in order.

  Worker w renders tasks w, w + workers, ... in a fresh process; at most `ahead` results per
  worker wait in memory, so hours of speech never do.
  """
  if not tasks:
    return
  tts.check_available("espeak")
  workers = max(1, min(workers, len(tasks)))
  ctx = multiprocessing.get_context("spawn")  # espeak-ng (global state) and JAX dislike fork.
  pools = [ctx.Pool(1, initializer=_init_worker, initargs=(texts,)) for _ in range(workers)]
  try:
    pending: dict[int, object] = {}
    submitted = 0
    for index in range(len(tasks)):
      while submitted < len(tasks) and submitted < index + ahead * workers:
        pending[submitted] = pools[submitted % workers].apply_async(_render_task,
                                                                    (tasks[submitted],))
        submitted += 1
      yield pending.pop(index).get()
  finally:
    for pool in pools:
      pool.terminate()
