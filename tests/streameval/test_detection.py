import numpy as np
import pytest

from kws_jax.errors import DataError
from kws_jax.streameval import detection as dm
from kws_jax.streameval import keyword_stream as st


def test_streaming_accuracy_counts_like_tf():
  truth = [("yes", 1000.0), ("no", 4000.0), ("_unknown_", 7000.0), ("up", 10000.0)]
  found = [
      ("yes", 1500.0),       # correct
      ("yes", 1600.0),       # same word again: wrong (already matched)
      ("left", 4300.0),      # wrong label
      ("_silence_", 5000.0), # ignored
      ("down", 8500.0),      # nothing within 750 ms: false positive
      ("_unknown_", 7200.0), # correct
  ]
  acc = dm.streaming_accuracy(found, truth, time_tolerance_ms=750)
  assert acc.num_ground_truth == 4
  assert acc.correct == pytest.approx(50.0)   # yes, _unknown_
  assert acc.wrong == pytest.approx(50.0)     # second yes, left
  assert acc.false_positive == pytest.approx(25.0)
  assert acc.matched == pytest.approx(75.0)   # 3 distinct words matched; "up" missed
  assert "75.0% matched" in acc.summary()


def test_detection_errors_and_frr_at_fa():
  truth = [("yes", 0.0), ("no", 3000.0), ("_unknown_", 6000.0), ("yes", 9000.0)]
  found = [("yes", 600.0), ("yes", 700.0), ("no", 6100.0), ("_unknown_", 6200.0)]
  e = dm.detection_errors(found, truth, keywords=["yes", "no"], duration_s=3600.0)
  # hits: yes@0; second yes is a false accept; no@6100 is too far from no@3000: false accept.
  assert e.false_accepts == 2 and e.false_accepts_per_hour == pytest.approx(2.0)
  assert e.false_reject_rate == pytest.approx(2 / 3)
  curve = [dm.DetectionErrors(0.9, 0.5, 0, 0.0), dm.DetectionErrors(0.5, 0.2, 1, 1.0),
           dm.DetectionErrors(0.3, 0.1, 5, 5.0)]
  assert dm.frr_at_fa_per_hour(curve, 0.5) == 0.5
  assert dm.frr_at_fa_per_hour(curve, 1.0) == 0.2
  assert dm.frr_at_fa_per_hour(curve[2:], 1.0) == 1.0


def test_labels_roundtrip_and_errors(tmp_path):
  path = tmp_path / "labels.txt"
  dm.write_labels(str(path), [("no", 20.5), ("yes", 3.0)])
  assert dm.read_labels(str(path)) == [("yes", 3.0), ("no", 20.5)]
  with pytest.raises(DataError, match="not found"):
    dm.read_labels(str(tmp_path / "missing.txt"))
  (tmp_path / "bad.txt").write_text("yes, soon\n")
  with pytest.raises(DataError, match="bad.txt:1"):
    dm.read_labels(str(tmp_path / "bad.txt"))


def test_mix_in_matches_tf_envelope():
  # The case of TF's generate_streaming_test_wav_test, plus the ramp values.
  track = np.zeros(10000)
  st.mix_in(track, 2000, np.ones(1000), 0, 1000, 1.0, 100, 100)
  assert track[2500] == pytest.approx(1.0) and track[3500] == pytest.approx(0.0)
  assert track[2050] == pytest.approx(0.5) and track[2000 + 950] == pytest.approx(0.5)


def test_make_stream_places_words_deterministically():
  rng = np.random.default_rng(1)
  clips = {w: [rng.uniform(-0.3, 0.3, 16000).astype(np.float32) for _ in range(3)]
           for w in ("yes", "no", "_unknown_")}
  noise = [rng.normal(0, 0.1, 40000).astype(np.float32)]
  cfg = st.StreamTestConfig(duration_s=30, seed=7)
  audio, labels = st.make_stream(clips, ["yes", "no"], noise, cfg)
  audio2, labels2 = st.make_stream(clips, ["yes", "no"], noise, cfg)
  assert audio.shape == (30 * 16000,) and audio.dtype == np.float32
  np.testing.assert_array_equal(audio, audio2)
  assert labels == labels2
  assert len(labels) == 30 // 3
  for i, (label, t) in enumerate(labels):
    assert label in ("yes", "no", "_unknown_")
    assert i * 3000 <= t < i * 3000 + 2000  # one word per 3 s stride, inside the gap
    # The word is there: energy right after its start is well above the noise floor.
    start = int(t * 16)
    assert np.std(audio[start + 1000:start + 15000]) > 0.15



def test_det_figure_steps_from_the_first_point_on_a_non_negative_axis():
  curve = [dm.DetectionErrors(0.99, 1.0, 0, 0.0), dm.DetectionErrors(0.9, 0.82, 1, 60.0),
           dm.DetectionErrors(0.5, 0.4, 3, 180.0), dm.DetectionErrors(0.3, 0.5, 5, 300.0)]
  fig = dm.det_figure(curve, "dscnn (jax: runs/qs)")
  ax = fig.axes[0]
  line = ax.lines[0]
  assert line.get_drawstyle() == "steps-post"
  np.testing.assert_array_equal(line.get_xdata(), [0.0, 60.0, 180.0, 300.0])
  # The lowest false-reject rate reachable so far: (300 FA/h, 50 %) does not undo 40 %.
  np.testing.assert_array_equal(line.get_ydata(), [100.0, 82.0, 40.0, 40.0])
  assert ax.get_xlim()[0] == 0.0
  fig.canvas.draw()
  assert min(ax.get_xticks()[(ax.get_xticks() >= ax.get_xlim()[0])]) >= 0.0
  assert all(not t.get_text().startswith(("-", "\u2212")) for t in ax.get_xticklabels())
  assert "dscnn (jax: runs/qs)" in ax.get_title()


def test_jax_and_iree_runs_write_different_default_det_pngs():
  from kws_jax.streameval import cli
  assert cli.default_det_png("runs/long.wav", "jax", "never") == "runs/long_det_jax_never.png"
  assert cli.default_det_png("runs/long.wav", "iree", "never") == "runs/long_det_iree_never.png"
