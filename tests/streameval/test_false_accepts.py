import pytest

from kws_jax.deploy import streaming_step
from kws_jax.streameval import false_accepts as fa

KEYWORDS = ["yes", "no"]
RATE = 16000


def _manifest():
  """Keyword stream 0-20 s, then 1 h of negatives in four parts (900 s each)."""
  bounds = [("keywords", 0, 20), ("real_words", 20, 920), ("noise", 920, 1820),
            ("synthetic_speech", 1820, 2720), ("confusables", 2720, 3620)]
  manifest = {"sample_rate": RATE,
              "parts": [{"kind": k, "start": a * RATE, "end": b * RATE} for k, a, b in bounds]}
  # Two confusable words, at 2999.5-3000.2 s and 3099.8-3100.5 s.
  manifest["parts"][-1]["utterances"] = [[int(2999.5 * RATE), int(3000.2 * RATE), "snow"],
                                         [int(3099.8 * RATE), int(3100.5 * RATE), "chess"]]
  return manifest


TRUTH = [("yes", 1000.0), ("no", 5000.0), ("_unknown_", 9000.0), ("yes", 13000.0),
         ("no", 17000.0)]


def test_planted_false_accepts_are_attributed_to_their_part():
  found = [("yes", 1200.0),          # hit
           ("no", 9100.0),           # on the _unknown_ word: false accept in the keyword stream
           ("no", 17300.0),          # hit
           ("yes", 100_000.0),       # real_words
           ("no", 1_000_000.0),      # noise
           ("yes", 2_000_000.0),     # synthetic_speech
           ("no", 3_000_000.0),      # confusables
           ("yes", 3_100_000.0),     # confusables
           ("_unknown_", 500_000.0)]  # not a keyword: no accept
  result = fa.report([found], [0.7], 0, TRUTH, KEYWORDS, 750.0, 3620.0, _manifest())
  assert result["false_accepts_by_part"] == {"real_words": 1, "noise": 1,
                                             "synthetic_speech": 1, "confusables": 2}
  assert result["false_accepts_in_keyword_stream"] == 1
  assert [e["kind"] for e in result["false_accept_list"]] == [
      "real_words", "noise", "synthetic_speech", "confusables", "confusables"]
  assert result["false_accept_list"][0] == {"label": "yes", "time_s": 100.0, "part": 1,
                                            "kind": "real_words", "text": None}
  # The confusable false accepts are traced to the word under (or just before) them.
  assert [e["text"] for e in result["false_accept_list"][3:]] == ["snow", "chess"]
  assert result["false_accepts_by_confusable"] == {"snow -> no": 1, "chess -> yes": 1}
  late = fa.report([[("no", 3_002_000.0)]], [0.7], 0, TRUTH, KEYWORDS, 750.0, 3620.0,
                   _manifest())
  assert late["false_accept_list"][0]["text"] is None      # 1.8 s after "snow": a pause
  # Hand count: 5 false accepts on exactly 1 h of negatives; 2 of 4 keyword words missed.
  assert result["negative_hours"] == pytest.approx(1.0)
  assert result["false_accepts"] == 5 and result["fa_per_hour"] == pytest.approx(5.0)
  assert result["frr"] == pytest.approx(0.5)
  assert result["frr_per_keyword"] == {"yes": 0.5, "no": 0.5}


def test_frr_at_fa_per_hour_over_a_sweep_equals_a_hand_count():
  # Three thresholds over 2 h of negatives (no manifest: the whole 7200 s count).
  strict = [("yes", 1100.0)]
  middle = [("yes", 1100.0), ("no", 5200.0), ("yes", 100_000.0)]
  loose = middle + [("yes", 13100.0), ("no", 17100.0), ("no", 200_000.0), ("yes", 300_000.0)]
  found, thresholds = [loose, middle, strict], [0.3, 0.6, 0.9]
  result = fa.report(found, thresholds, 1, TRUTH, KEYWORDS, 750.0, 7200.0, None,
                     fa_target=0.5)
  curve = {p["threshold"]: p for p in result["det_curve"]}
  assert curve[0.9]["false_reject_rate"] == pytest.approx(0.75)
  assert curve[0.9]["false_accepts_per_hour"] == 0.0
  assert curve[0.6]["false_reject_rate"] == pytest.approx(0.5)
  assert curve[0.6]["false_accepts_per_hour"] == pytest.approx(0.5)   # 1 in 2 h
  assert curve[0.3]["false_reject_rate"] == 0.0
  assert curve[0.3]["false_accepts_per_hour"] == pytest.approx(1.5)   # 3 in 2 h
  assert result["frr_at_fa_per_hour"] == {"0.1": 0.75, "0.5": 0.5, "1": 0.5}
  assert result["frr_at_0.5fa_per_hour"] == 0.5
  # Each keyword alone (its own words, its own false accepts, its own threshold), by hand:
  # "yes" misses the word at 13 s above threshold 0.3 and false-accepts 0 / 1 / 2 times in
  # 2 h at 0.9 / 0.6 / 0.3; "no" hits nothing at 0.9, the word at 5 s at 0.6, both at 0.3
  # with one false accept (0.5 FA/h).
  assert result["frr_at_fa_per_hour_per_keyword"] == {
      "yes": {"0.1": 0.5, "0.5": 0.5, "1": 0.0}, "no": {"0.1": 0.5, "0.5": 0.0, "1": 0.0}}
  assert "each keyword alone, FRR at 0.5 FA/h of its own: yes 50%, no 0%" in fa.summary(result)
  assert result["threshold_for_fa_per_hour"] == {"target": 0.5, "threshold": pytest.approx(0.6),
                                                 "frr": 0.5, "fa_per_hour": 0.5}
  assert fa.threshold_for([fa.DetectionErrors(0.5, 0.1, 9, 9.0)], 1.0) is None
  assert "threshold to ship for <= 0.5 FA/h: 0.6000" in fa.summary(result)


def test_each_word_is_hit_once_by_its_own_label():
  truth = [("yes", 1000.0), ("yes", 1400.0)]
  m = fa.match([("no", 1000.0), ("yes", 1100.0), ("yes", 1200.0), ("yes", 1300.0)], truth,
               KEYWORDS, 750.0)
  assert m.hit.tolist() == [True, True]
  assert m.false_accepts == [("no", 1000.0), ("yes", 1300.0)]


def test_shipping_threshold_goes_into_the_smoothing_section():
  import ml_collections

  from kws_jax.errors import ConfigError
  config = ml_collections.ConfigDict({"model": {"name": "gru"}})
  config.lock()
  streaming_step.set_shipping_threshold(config, 0.93)
  assert config.smoothing.to_dict() == {"average_window_ms": 500.0, "suppression_ms": 1500.0,
                                        "minimum_count": 3, "detection_threshold": 0.93}
  with pytest.raises(ConfigError, match="--detection-threshold"):
    streaming_step.set_shipping_threshold(config, 1.5)
