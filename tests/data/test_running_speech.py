"""Running-speech windows of the synthetic set: keyword-free text, windows, plan, rendering."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from kws_jax.data import folder as folder_lib
from kws_jax.data import running_speech, synth
from kws_jax.streameval import speech_parts

ENGINES = ("espeak", "flite", "piper")


def test_sentences_are_keyword_free_long_enough_and_not_the_negatives_text():
  keywords = list(synth.KEYWORDS)
  found = running_speech.sentences(keywords, synth.UNKNOWN_WORDS)
  assert len(found) >= 100
  for sentence in found:
    tokens = [t.lower().strip("'") for t in sentence.split()]
    assert running_speech.MIN_WORDS <= len(tokens) <= running_speech.MAX_WORDS
    assert not set(tokens) & set(keywords)
  if any(os.path.isfile(f) for f in running_speech.TEXT_FILES):
    # The false-accept audio reads other text: no training sentence is one of its sentences.
    measured_on, _ = speech_parts.sentences(keywords, 0, count=5000)
    assert not set(found) & set(measured_on)
  # Without fortunes-min: fixed sequences of the fallback words, keywords left out.
  fallback = running_speech.sentences(keywords, ["bed", "yes", "cat", "tree"], files=())
  assert fallback == running_speech.sentences(keywords, ["bed", "yes", "cat", "tree"], files=())
  assert {w for s in fallback for w in s.split()} == {"bed", "cat", "tree"}


def test_cut_window_is_a_slice_of_long_speech_and_pads_short_speech():
  rng = np.random.default_rng(0)
  speech = np.arange(1, 50001, dtype=np.float32)
  starts = set()
  for _ in range(20):
    window = running_speech.cut_window(speech, 16000, rng)
    start = int(window[0]) - 1
    np.testing.assert_array_equal(window, speech[start:start + 16000])
    starts.add(start)
  assert len(starts) > 10 and max(starts) <= 50000 - 16000
  short = running_speech.cut_window(np.ones(4000, np.float32), 16000, rng)
  assert short.shape == (16000,) and short.sum() == 4000
  nonzero = np.flatnonzero(short)
  assert nonzero[-1] - nonzero[0] == 3999   # the speech whole, in one piece


def test_plan_adds_sentences_per_speaker_and_changes_nothing_when_off():
  base = dict(speakers_per_accent=2, unknown_words_per_speaker=2, engines=ENGINES,
              speakers_per_engine=3)
  off, _ = synth.plan(synth.SynthParams(**base))
  assert off == synth.plan(synth.SynthParams(**base, running_speech_per_speaker=0))[0]
  assert "running_speech_per_speaker" not in synth.SynthParams(**base).identity()
  on, splits = synth.plan(synth.SynthParams(**base, running_speech_per_speaker=2))
  assert synth.SynthParams(**base, running_speech_per_speaker=2).identity()[
      "running_speech_per_speaker"] == 2
  assert [u for u in on if not u.relpath.startswith("running_speech/")] == off
  running = [u for u in on if u.relpath.startswith("running_speech/")]
  assert len(running) == 2 * len(splits) and len({u.relpath for u in running}) == len(running)
  sentences = set(running_speech.sentences(synth.KEYWORDS, synth.UNKNOWN_WORDS
                                           + synth.HARD_NEGATIVES))
  assert all(u.word in sentences for u in running)


def test_a_generated_set_holds_one_second_windows_of_speech_read_as_unknown(tmp_path):
  pytest.importorskip("espeakng_loader")
  params = synth.SynthParams(speakers_per_accent=1, unknown_words_per_speaker=1,
                             running_speech_per_speaker=1)
  summary = synth.generate(str(tmp_path / "set"), params, progress=False)
  planned = [u for u in synth.plan(params)[0] if u.relpath.startswith("running_speech/")]
  assert summary["running_speech_per_speaker"] == 1 and len(planned) == summary["speakers"]
  labels = folder_lib.label_names_for(list(synth.KEYWORDS), str(tmp_path / "set"))
  entries = folder_lib.scan(str(tmp_path / "set"), labels, folder_lib.FolderOptions(), "train")
  running = [e for e in entries if e.relpath.startswith("running_speech/")]
  # Not a keyword folder: the folder reader labels its clips `_unknown_`.
  assert sorted(e.relpath for e in running) == sorted(u.relpath for u in planned)
  assert {e.label for e in running} == {"_unknown_"}
  for e in running:
    clip, rate = sf.read(tmp_path / "set" / e.relpath, dtype="float32")
    assert rate == synth.SAMPLE_RATE and clip.shape == (synth.CLIP_SAMPLES,)
    rms = np.sqrt((clip.reshape(-1, 160) ** 2).mean(1))
    assert (rms > 0.1 * rms.max()).mean() > 0.3  # speech over most of the window
