"""Running speech for the synthetic set's `_unknown_` class: 1-second windows of sentences.

A keyword spotter listens to conversation, not to isolated words: trained on isolated words
only, its `_unknown_` class never hears a window that starts or ends mid-word, and running
speech is where most false accepts come from (BENCHMARKS.md section 9). Each synthetic
speaker can also read sentences (`SynthParams.running_speech_per_speaker`); a random
1-second window of each becomes an `_unknown_` clip in `running_speech/`.

Text: Debian's fortunes-min `literature` and `riddles` files, keyword tokens removed. The
negative audio that false accepts are measured on reads the `fortunes` file (and wamerican),
so no training sentence is a test sentence (tests/data/test_running_speech.py checks). Without
fortunes-min the sentences are random sequences of the set's other words.
"""

from __future__ import annotations

import os
import re
from typing import Sequence

import numpy as np

FOLDER = "running_speech"  # a word folder of the synthetic set; not a keyword: `_unknown_`
TEXT_FILES = ("/usr/share/games/fortunes/literature", "/usr/share/games/fortunes/riddles")
MIN_WORDS = 6  # shorter sentences rarely fill a 1-second window
MAX_WORDS = 30  # longer ones (a few legal jokes) would only cost synthesis time

_TOKEN = re.compile(r"[A-Za-z']+")


def strip_keywords(text: str, keywords: Sequence[str]) -> str:
  """The text's word tokens without any keyword ("Go on, stop!" -> "" for those keywords)."""
  wanted = {k.lower() for k in keywords}
  return " ".join(t for t in _TOKEN.findall(text) if t.lower().strip("'") not in wanted)


def split_sentences(raw: str) -> list[str]:
  """Sentences of a fortune file: split at sentence ends and the `%` separators."""
  return re.split(r"[.!?;\n]\s*(?=[A-Z\"])|\n%\n", raw)


def sentences(keywords: Sequence[str], fallback_words: Sequence[str],
              files: Sequence[str] = TEXT_FILES) -> list[str]:
  """Keyword-free sentences of MIN_WORDS to MAX_WORDS words from `files`, in file order.

  Without any of the files: 200 fixed random sequences of `fallback_words` (minus keywords).
  """
  found: list[str] = []
  for path in files:
    if os.path.isfile(path):
      with open(path, encoding="utf-8", errors="replace") as f:
        found += [s for s in (strip_keywords(r, keywords) for r in split_sentences(f.read()))
                  if MIN_WORDS <= len(s.split()) <= MAX_WORDS]
  if found:
    return found
  words = sorted({w for w in fallback_words if w.lower() not in {k.lower() for k in keywords}})
  rng = np.random.default_rng(17)
  return [" ".join(rng.choice(words, int(rng.integers(MIN_WORDS, 12)))) for _ in range(200)]


def cut_window(speech: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
  """A uniformly placed `samples`-long window of `speech` (zero-padded, at a random offset,
  when the speech is shorter): words cut at its edges, as a streaming window sees them."""
  out = np.zeros(samples, np.float32)
  if speech.size >= samples:
    start = int(rng.integers(0, speech.size - samples + 1))
    out[:] = speech[start:start + samples]
  else:
    start = int(rng.integers(0, samples - speech.size + 1))
    out[start:start + speech.size] = speech
  return out
