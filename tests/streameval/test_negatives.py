import json

import numpy as np
import pytest
import soundfile as sf

from kws_jax import audio
from kws_jax.data import folder as folder_lib
from kws_jax.streameval import detection as dm
from kws_jax.streameval import keyword_stream, long_test, negatives, speech_parts

KEYWORDS = ["yes", "no"]


def _folder(root, words=("yes", "no", "cat"), speakers=6):
  for word in words:
    for speaker in range(speakers):
      x = np.zeros(16000, np.float32)
      x[4000:10000] = 0.4 * np.sin(np.arange(6000) * (0.05 + 0.02 * len(word) + 0.01 * speaker))
      audio.write_wav(root / word / f"{speaker:08x}_nohash_0.wav", x)
  noise = np.random.default_rng(0).normal(0, 0.1, 16000 * 3).astype(np.float32)
  audio.write_wav(root / "_background_noise_" / "n.wav", noise)
  return root


def test_text_and_confusables_hold_no_keyword(tmp_path):
  assert speech_parts.strip_keywords("Go on, stop! Yes, it's no good: Stop.", ["go", "on",
                                     "stop", "yes", "no"]) == "it's good"
  keywords = list(speech_parts.CONFUSABLES)
  confusables = speech_parts.confusables_for(keywords)
  assert len(confusables) > 80 and not set(confusables) & set(keywords)
  fortunes = tmp_path / "fortunes"
  fortunes.write_text("Go west, young man.\n%\nNo news is good news!\n%\nStop and smell it.\n")
  for path in (str(fortunes), "/nonexistent"):  # the file, then the built-in fallback
    found, _ = speech_parts.sentences(keywords, 0, fortunes=path, words="/nonexistent",
                                      count=50)
    assert len(found) == 50
    tokens = {t.lower() for s in found for t in s.split()}
    assert not tokens & set(keywords)
  assert "west young man" in speech_parts.sentences(keywords, 0, str(fortunes), "/x", 50)[0]


def test_manifest_accounts_for_every_sample_and_holds_no_keyword(tmp_path):
  data = _folder(tmp_path / "data")
  out = tmp_path / "a.wav"
  wav, labels, n = keyword_stream.make_test(str(data), str(out), minutes=0.2, split="all",
                                    wanted_words="yes,no", seed=1, negative_hours=16 / 3600,
                                    workers=1)
  manifest = json.loads((tmp_path / "a_manifest.json").read_text())
  frames = sf.info(str(out)).frames
  parts = manifest["parts"]
  assert parts[0]["kind"] == "keywords" and parts[0]["start"] == 0 and parts[0]["end"] == 12 * 16000
  assert [p["start"] for p in parts[1:]] == [p["end"] for p in parts[:-1]]  # no gap, no overlap
  assert parts[-1]["end"] == manifest["samples"] == frames == (12 + 16) * 16000
  assert manifest["negative_seconds"] == pytest.approx(16.0)
  assert {p["kind"] for p in parts[1:]} <= set(negatives.NEGATIVE_KINDS)
  # Every keyword word lies in the keyword part; the negatives hold none.
  truth = dm.read_labels(labels)
  assert n == len(truth) and all(t / 1000 * 16000 + 16000 <= parts[0]["end"] for _, t in truth)
  assert not set(manifest["confusable_words"]) & set(KEYWORDS)
  negative_audio = sf.read(str(out), dtype="float32")[0][parts[0]["end"]:]
  assert np.std(negative_audio) > 1e-3  # something was written there


def _write(tmp_path, name, words, seed, **kw):
  config = negatives.NegativeConfig(hours=40 / 3600, part_seconds=5, seed=seed,
                                    shares={"real_words": 0.5, "noise": 0.5})
  keyword_audio = np.zeros(32000, np.float32)
  noise = [np.random.default_rng(5).normal(0, 0.1, 50000).astype(np.float32)]
  manifest = negatives.write_long_test(str(tmp_path / f"{name}.wav"),
                                       str(tmp_path / f"{name}.json"), keyword_audio, [],
                                       KEYWORDS, config, noise, words, progress=False, **kw)
  return (tmp_path / f"{name}.wav").read_bytes(), manifest


def test_negatives_are_deterministic_for_a_seed(tmp_path):
  words = [np.sin(np.arange(16000) * f).astype(np.float32) * 0.3 for f in (0.05, 0.1, 0.2)]
  a, manifest_a = _write(tmp_path, "a", words, seed=4)
  b, manifest_b = _write(tmp_path, "b", words, seed=4)
  c, _ = _write(tmp_path, "c", words, seed=5)
  assert a == b and manifest_a == manifest_b and a != c
  kinds = [p["kind"] for p in manifest_a["parts"]]
  assert kinds.count("real_words") == 4 and kinds.count("noise") == 4
  assert all(-1 <= p.get("snr_db", 0) and p.get("snr_db", 0) <= 20 for p in manifest_a["parts"])


def test_plan_shares_and_kinds():
  config = negatives.NegativeConfig(hours=0.1, part_seconds=30, seed=3)
  parts = negatives.plan(config, 100, list(negatives.NEGATIVE_KINDS))
  assert len(parts) == 12 and parts[0].start == 100 and parts[-1].end == 100 + 360 * 16000
  counts = {k: sum(p.kind == k for p in parts) for k in negatives.NEGATIVE_KINDS}
  assert counts == {"real_words": 2, "noise": 3, "synthetic_speech": 5, "confusables": 2} or \
      sum(counts.values()) == 12 and counts["synthetic_speech"] >= 4
  no_words = negatives.plan(config, 0, ["noise", "synthetic_speech", "confusables"])
  assert all(p.kind != "real_words" for p in no_words)


def test_real_negative_words_keep_split_speakers_and_non_keywords(tmp_path):
  data = _folder(tmp_path / "data", speakers=4)
  extra = _folder(tmp_path / "extra", words=("yes", "bed"), speakers=8)
  options = folder_lib.FolderOptions()
  src = long_test.load_sources(str(data), "all", KEYWORDS, options, str(tmp_path / "cache"))
  assert src.speakers == {f"{s:08x}" for s in range(4)}
  words = long_test.real_negative_words(src, [str(extra)], options)
  # 4 `cat` clips of the folder + `bed` of the same 4 speakers; no `yes`, no other speakers.
  assert len(words) == 8


def test_keywords_sit_at_the_asked_snr():
  rng = np.random.default_rng(0)
  words = np.zeros(16000 * 9, np.float32)
  labels = [("yes", 0.0), ("no", 3000.0), ("yes", 6000.0)]
  for _, t in labels:
    a = int(t * 16)
    words[a + 4000:a + 12000] = 0.3 * np.sin(np.arange(8000) * 0.1)
  bed = rng.normal(0, 1, words.size).astype(np.float32)
  mixed = negatives.under_keywords(words, bed, labels, 10.0, 16000)
  a = 3000 * 16
  noise = mixed[a:a + 4000] - words[a:a + 4000]
  speech_rms = 0.3 / np.sqrt(2)
  assert 20 * np.log10(speech_rms / np.sqrt(np.mean(noise**2))) == pytest.approx(10.0, abs=0.5)


def test_make_test_needs_no_training_split(tmp_path):
  # Every speaker in the test band (as TF's plain hash puts sc_v2_test12_dev): no training clips.
  data = _folder(tmp_path / "data")
  wav, labels, n = keyword_stream.make_test(str(data), str(tmp_path / "t.wav"), minutes=0.2,
                                    split="test", wanted_words="yes,no", validation_percentage=0,
                                    testing_percentage=100, seed=2)
  assert n == 4 and sf.info(wav).frames == 12 * 16000
  with pytest.raises(Exception, match="--split 'train'"):
    keyword_stream.make_test(str(data), str(tmp_path / "u.wav"), split="train")


class _ToneEngine:
  """Stands in for espeak-ng: a 0.2 s tone at 22,050 Hz per text, longer texts longer."""

  def say(self, text, voice, **kw):
    n = 4410 * len(text.split())
    return np.sin(np.arange(n) * 0.3).astype(np.float32)


def test_speech_parts_record_where_each_utterance_lies():
  samples = 5 * 16000
  audio_, said = speech_parts.render_part(_ToneEngine(), "confusables", samples, 3,
                                          ["snow", "cup of tea"])
  assert said and all(text in ("snow", "cup of tea") for _, _, text in said)
  spoken = np.zeros(samples, bool)
  for start, end, _ in said:
    assert 0 <= start < end <= samples
    assert np.abs(audio_[start:end]).max() > 0.05     # the utterance is there
    spoken[start:end] = True
  assert not np.any(audio_[~spoken])                  # and nothing else is
  # render() moves them into the part's manifest entry, in file samples.
  part = negatives.Part("confusables", 160000, 160000 + samples, 7)
  noise = [np.random.default_rng(5).normal(0, 0.1, 50000).astype(np.float32)]
  negatives.render(part, negatives.NegativeConfig(), noise, [], (audio_, said))
  assert part.details["utterances"] == [[160000 + a, 160000 + b, t] for a, b, t in said]
