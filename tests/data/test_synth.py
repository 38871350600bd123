"""The offline synthetic keyword set (espeak-ng, flite and Piper)."""

from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
import pytest
import soundfile as sf

from kws_jax.configs import default as config_default
from kws_jax.data import pipeline, synth, tts
from kws_jax.errors import KwsError

pytest.importorskip("espeakng_loader")

TINY = dict(speakers_per_accent=1, unknown_words_per_speaker=1, seed=0)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
  out = tmp_path_factory.mktemp("synth") / "set"
  code = synth.main(["--out", str(out), "--speakers-per-accent", "1",
                     "--unknown-words-per-speaker", "1", "--workers", "2"])
  assert code == 0
  return out


def test_plan_is_deterministic_and_splits_by_accent():
  params = synth.SynthParams(speakers_per_accent=3, unknown_words_per_speaker=2)
  first, splits = synth.plan(params)
  again, _ = synth.plan(params)
  assert first == again
  accents = len(synth.TRAIN_ACCENTS) + len(synth.VALIDATION_ACCENTS) + len(synth.TEST_ACCENTS)
  assert len(first) == accents * 3 * (len(synth.KEYWORDS) + 2)
  assert len(splits) == accents * 3
  for u in first:
    accent = u.voice.split("+")[0]
    speaker = u.relpath.split("/")[1].split("_nohash_")[0]
    expected = ("validation" if accent in synth.VALIDATION_ACCENTS else
                "test" if accent in synth.TEST_ACCENTS else "train")
    assert splits[speaker] == expected
  other, _ = synth.plan(synth.SynthParams(speakers_per_accent=3, unknown_words_per_speaker=2,
                                          seed=1))
  assert [u.seed for u in other] != [u.seed for u in first]


def test_generated_folder_layout_and_audio(tiny_set):
  info = json.loads((tiny_set / synth.INFO_FILE).read_text())
  utterances, splits = synth.plan(synth.SynthParams(**TINY))
  assert info["clips"] == len(utterances) == 8 * 11
  for u in utterances:
    audio, rate = sf.read(str(tiny_set / u.relpath), dtype="int16")
    assert rate == 16000 and audio.shape == (16000,)
    assert np.abs(audio).max() > 1000  # a word, not silence
  for name, split in (("validation_list.txt", "validation"), ("testing_list.txt", "test")):
    listed = (tiny_set / name).read_text().split()
    speaker_of = {u.relpath: u.relpath.split("/")[1].split("_nohash_")[0] for u in utterances}
    assert sorted(listed) == sorted(p for p, s in speaker_of.items() if splits[s] == split)
  noises = sorted(os.listdir(tiny_set / "_background_noise_"))
  assert len(noises) == 4
  for name in noises:
    noise, _ = sf.read(str(tiny_set / "_background_noise_" / name))
    assert len(noise) == 60 * 16000 and 0.001 < np.sqrt(np.mean(noise**2)) < 0.02


def test_generation_is_reproducible(tmp_path):
  params = synth.SynthParams(keywords=("yes", "no"), unknown_words=("cat",), seed=5,
                             speakers_per_accent=1, unknown_words_per_speaker=1, workers=2)
  synth.generate(str(tmp_path / "a"), params, progress=False)
  synth.generate(str(tmp_path / "b"), params, progress=False)
  utterances, _ = synth.plan(params)
  assert len(utterances) == 24
  for u in utterances:
    assert (tmp_path / "a" / u.relpath).read_bytes() == (tmp_path / "b" / u.relpath).read_bytes()


def test_pipeline_reuses_a_matching_set_and_regenerates_on_change(tiny_set, tmp_path):
  cfg = config_default.data_config()
  cfg.synthetic_dir = str(tiny_set)
  cfg.cache_dir = str(tmp_path / "cache")
  cfg.synthetic.update(TINY)
  stamp = os.path.getmtime(tiny_set / synth.INFO_FILE)
  ds = pipeline.load_dataset(cfg, 0)
  assert os.path.getmtime(tiny_set / synth.INFO_FILE) == stamp  # reused, not regenerated
  assert ds.label_names[2:] == list(synth.KEYWORDS)
  # Training speakers never speak in validation/test (split by accent).
  assert not set(ds.train.speakers) & (set(ds.validation.speakers) | set(ds.test.speakers) - {""})
  assert np.bincount(ds.train.labels, minlength=12)[2:].tolist() == [6] * 10
  small = synth.SynthParams(keywords=("yes",), unknown_words=("cat",), seed=3,
                            speakers_per_accent=1, unknown_words_per_speaker=1, workers=1)
  target = tmp_path / "regen"
  synth.ensure_generated(str(target), small)
  first = (target / synth.INFO_FILE).read_text()
  synth.ensure_generated(str(target), small)
  assert (target / synth.INFO_FILE).read_text() == first
  changed = synth.SynthParams(**{**small.__dict__, "seed": 4})
  synth.ensure_generated(str(target), changed)
  assert json.loads((target / synth.INFO_FILE).read_text())["seed"] == 4


def test_refuses_a_foreign_folder_and_names_the_extra(tmp_path, monkeypatch):
  (tmp_path / "mine").mkdir()
  (tmp_path / "mine" / "notes.txt").write_text("x")
  with pytest.raises(KwsError, match="not a synthetic keyword set"):
    synth.ensure_generated(str(tmp_path / "mine"))
  monkeypatch.setitem(sys.modules, "espeakng_loader", None)
  with pytest.raises(KwsError, match=r"pip install 'kws_jax\[synth\]'"):
    synth.generate(str(tmp_path / "new"))


def test_synthetic_mix_adds_synthetic_clips_to_real_training_only(tiny_set, word_folder, tmp_path):
  cfg = config_default.data_config()
  cfg.update(source="folder", data_dir=str(word_folder), cache_dir=str(tmp_path / "cache"),
             wanted_words="yes,no", validation_percentage=25.0, testing_percentage=25.0,
             synthetic_dir=str(tiny_set), rebalance_eval=False)
  cfg.synthetic.update(TINY)
  base = pipeline.load_dataset(cfg, 0)
  synthetic_speakers = set(synth.plan(synth.SynthParams(**TINY))[1])
  for fraction in (1.0, 0.5):
    cfg.synthetic_mix = fraction
    mixed = pipeline.load_dataset(cfg, 0)
    added = mixed.train.speakers[len(base.train):]
    assert len(added) == round(88 * fraction) == mixed.info["synthetic_clips_mixed"]
    assert set(added) <= synthetic_speakers
    np.testing.assert_array_equal(mixed.train.audio[:len(base.train)], base.train.audio)
    np.testing.assert_array_equal(mixed.test.labels, base.test.labels)
    np.testing.assert_array_equal(mixed.validation.labels, base.validation.labels)
    labels = mixed.train.labels[len(base.train):]
    assert set(np.unique(labels)) <= {1, 2, 3}  # other synthetic words are _unknown_
    if fraction == 1.0:
      assert np.sum(labels == 2) == np.sum(labels == 3) == 8  # one "yes"/"no" per speaker
  cfg.source = "synthetic"
  with pytest.raises(KwsError, match="synthetic_mix"):
    pipeline.load_dataset(cfg, 0)


def test_train_on_synthetic_test_on_a_real_folder(tiny_set, word_folder, tmp_path):
  cfg = config_default.data_config()
  cfg.update(synthetic_dir=str(tiny_set), cache_dir=str(tmp_path / "cache"),
             test_dir=str(word_folder), wanted_words="yes,no")
  cfg.synthetic.update(TINY)
  ds = pipeline.load_dataset(cfg, 0)
  assert ds.label_names == ["_silence_", "_unknown_", "yes", "no"]
  assert set(ds.train.speakers) <= set(synth.plan(synth.SynthParams(**TINY))[1])
  real_speakers = {s for s in ds.test.speakers if s}
  assert real_speakers and all(len(s) == 8 for s in real_speakers)  # the folder's hex ids
  # The whole real folder is the test split: 12 speakers x (2 yes + 2 no), TF-rebalanced.
  assert np.sum(ds.test.labels >= 2) == 48 and np.sum(ds.test.labels == 0) == 5


# ----------------------------------------------------------------------------- flite and Piper

ALL_ENGINES = ("espeak", "flite", "piper")
needs_flite = pytest.mark.skipif(shutil.which("flite") is None,
                                 reason="Debian's flite is not installed (apt-get install flite)")


def test_flite_and_piper_speakers_all_train_and_leave_the_espeak_plan_alone():
  espeak_only = synth.SynthParams(speakers_per_accent=2, unknown_words_per_speaker=2)
  both = synth.SynthParams(speakers_per_accent=2, unknown_words_per_speaker=2,
                           engines=ALL_ENGINES, speakers_per_engine=6)
  first, _ = synth.plan(espeak_only)
  utterances, splits = synth.plan(both)
  assert utterances[:len(first)] == first  # the espeak clips (and so their audio) unchanged
  added = utterances[len(first):]
  assert len(added) == 2 * 6 * (len(synth.KEYWORDS) + 2)
  for engine, keys in (("flite", {"duration_stretch", "f0_mean"}),
                       ("piper", {"length_scale", "noise_scale", "noise_w_scale"})):
    mine = [u for u in added if u.engine == engine]
    speakers = {u.relpath.split("/")[1].split("_nohash_")[0] for u in mine}
    assert len(speakers) == 6 and {splits[s] for s in speakers} == {"train"}
    assert all(dict(u.settings).keys() == keys and 0.85 <= u.speed <= 1.2 for u in mine)
    for speaker in speakers:  # one speed per speaker, the settings jittered per word
      said = [u for u in mine if f"/{speaker}_nohash_" in u.relpath]
      assert len({u.speed for u in said}) == 1 and len({u.settings for u in said}) == len(said)
  assert {u.voice for u in added if u.engine == "flite"} == set(tts.FLITE_VOICES)


@pytest.mark.parametrize("engines, says", [
    (("flite",), "list 'espeak' first"), (("espeak", "flite", "flite"), "each engine once"),
    (("espeak", "festival"), "unknown synthesis engine 'festival'")])
def test_bad_engine_lists_are_refused_in_one_line(engines, says):
  with pytest.raises(KwsError, match=says):
    synth.plan(synth.SynthParams(engines=engines))


def test_a_missing_engine_says_how_to_install_it(tmp_path, monkeypatch):
  monkeypatch.setattr(tts.shutil, "which", lambda name: None)
  with pytest.raises(KwsError, match=r"apt-get install flite \(or leave it out"):
    synth.generate(str(tmp_path / "x"), synth.SynthParams(engines=("espeak", "flite")))
  monkeypatch.setitem(sys.modules, "piper", None)
  with pytest.raises(KwsError, match=r"pip install 'kws_jax\[synth\]' \(or leave it out"):
    synth.generate(str(tmp_path / "x"), synth.SynthParams(engines=("espeak", "piper")))
  assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()


@needs_flite
def test_flite_settings_change_the_voice():
  engine = tts.Flite()
  slow = engine.say("seven", "slt", duration_stretch=1.5, f0_mean=180)
  fast = engine.say("seven", "slt", duration_stretch=0.8, f0_mean=180)
  assert 1.5 < slow.size / fast.size < 2.2
  low = engine.say("seven", "awb", duration_stretch=1.0, f0_mean=90)
  assert np.abs(low).max() > 0.05 and low.dtype == np.float32
  with pytest.raises(KwsError, match="flite voice 'bob'"):
    engine.say("seven", "bob", duration_stretch=1.0, f0_mean=90)


@needs_flite
def test_a_set_with_flite_and_piper_is_rendered_and_flite_is_reproducible(tmp_path):
  pytest.importorskip("piper")
  params = synth.SynthParams(keywords=("yes", "stop"), unknown_words=("cat",), seed=2,
                             speakers_per_accent=1, unknown_words_per_speaker=1,
                             engines=ALL_ENGINES, speakers_per_engine=2, workers=2)
  summary = synth.generate(str(tmp_path / "a"), params, progress=False)
  assert summary["clips_per_engine"] == {"espeak": 24, "flite": 6, "piper": 6}
  synth.generate(str(tmp_path / "b"), params, progress=False)
  utterances, _ = synth.plan(params)
  for u in utterances:
    audio, rate = sf.read(str(tmp_path / "a" / u.relpath), dtype="int16")
    assert rate == 16000 and audio.shape == (16000,) and np.abs(audio).max() > 1000, u.relpath
    same = (tmp_path / "a" / u.relpath).read_bytes() == (tmp_path / "b" / u.relpath).read_bytes()
    assert same or u.engine == "piper", u.relpath  # Piper's graph draws unseeded noise


def test_the_pipeline_keeps_one_cache_folder_per_engine_list_and_hard_negatives(tmp_path,
                                                                               monkeypatch):
  made = []
  monkeypatch.setattr(synth, "ensure_generated", lambda out, params: made.append(
      (os.path.basename(out), params.engines, params.hard_negatives_per_speaker)) or out)
  cfg = config_default.data_config()
  cfg.cache_dir = str(tmp_path)
  for engines, hard in ((("espeak",), 0), (("espeak", "piper"), 0), (("espeak",), 4)):
    cfg.synthetic.engines = engines
    cfg.synthetic.hard_negatives_per_speaker = hard
    pipeline._synthetic_folder(cfg)
  assert made == [(f"synthetic-{synth.VERSION}-espeak", ("espeak",), 0),
                  (f"synthetic-{synth.VERSION}-espeak+piper", ("espeak", "piper"), 0),
                  (f"synthetic-{synth.VERSION}-espeak-hard4", ("espeak",), 4)]


def test_custom_wanted_words_are_synthesised_and_the_cap_spares_the_synthetic_mix(
    tiny_set, word_folder, tmp_path):
  cfg = config_default.data_config()
  cfg.update(cache_dir=str(tmp_path / "cache"), wanted_words="marvin,yes")
  cfg.synthetic.update(TINY)
  ds = pipeline.load_dataset(cfg, 0)
  assert ds.label_names == ["_silence_", "_unknown_", "marvin", "yes"]
  folder = tmp_path / "cache" / f"synthetic-{synth.VERSION}-espeak-marvin+yes"
  info = json.loads((folder / synth.INFO_FILE).read_text())
  assert info["keywords"] == ["marvin", "yes"] and "marvin" not in info["unknown_words"]
  assert {"no", "go"} <= set(info["unknown_words"])  # the other keywords become _unknown_
  assert np.sum(ds.train.labels == 2) == np.sum(ds.train.labels == 3) == 6  # 6 train speakers
  # A few-shot folder: max_files_per_directory caps its word folders, not the synthetic speech.
  cfg.update(source="folder", data_dir=str(word_folder), wanted_words="yes,no",
             validation_percentage=25.0, testing_percentage=25.0, synthetic_dir=str(tiny_set),
             rebalance_eval=False, synthetic_mix=1.0, max_files_per_directory=1)
  capped = pipeline.load_dataset(cfg, 0)
  assert capped.info["synthetic_clips_mixed"] == 88
  real = np.array([s not in set(synth.plan(synth.SynthParams(**TINY))[1])
                   for s in capped.train.speakers])
  assert 0 < np.sum(real & (capped.train.labels == 2)) <= 1  # one real "yes" left


def test_hard_negatives_are_new_words_spoken_as_unknown_and_change_nothing_when_off():
  from kws_jax.streameval import speech_parts
  hard = set(synth.HARD_NEGATIVES)
  assert len(hard) == len(synth.HARD_NEGATIVES)
  measured_on = {w for words in speech_parts.CONFUSABLES.values() for w in words}
  # The false-accept audio's confusables stay unseen words; no keyword, no Speech Commands word.
  assert not hard & measured_on and not hard & set(synth.KEYWORDS)
  assert not hard & set(synth.UNKNOWN_WORDS)
  base = dict(speakers_per_accent=2, unknown_words_per_speaker=2, engines=ALL_ENGINES,
              speakers_per_engine=3)
  off, _ = synth.plan(synth.SynthParams(**base))
  assert off == synth.plan(synth.SynthParams(**base, hard_negatives_per_speaker=0))[0]
  assert "hard_negatives_per_speaker" not in synth.SynthParams(**base).identity()
  on, splits = synth.plan(synth.SynthParams(**base, hard_negatives_per_speaker=3))
  speakers = {u.relpath.split("/")[1].split("_nohash_")[0] for u in on}
  assert len(speakers) == len(splits) and len(on) == len(off) + 3 * len(speakers)
  for speaker in speakers:
    said = [u.word for u in on if f"/{speaker}_nohash_" in u.relpath]
    assert len([w for w in said if w in hard]) == 3

