import numpy as np
import pytest
import soundfile as sf

from kws_jax import audio
from kws_jax.errors import AudioError


def _write(path, data, rate=16000, subtype="PCM_16"):
  sf.write(str(path), data, rate, subtype=subtype)
  return path


def test_reads_mono_16k_as_float(tmp_path):
  x = (0.5 * np.sin(np.linspace(0, 100, 16000))).astype(np.float32)
  got = audio.read_audio(_write(tmp_path / "a.wav", x))
  assert got.dtype == np.float32 and got.shape == (16000,)
  np.testing.assert_allclose(got, x, atol=1 / 32767)


@pytest.mark.parametrize("content,match", [
    (b"", "empty file"),
    (b"RIFF\x00\x00garbage-not-a-wav" * 3, "not a readable audio file"),
])
def test_bad_bytes_name_the_file(tmp_path, content, match):
  path = tmp_path / "bad.wav"
  path.write_bytes(content)
  with pytest.raises(AudioError, match=match) as e:
    audio.read_audio(path)
  assert "bad.wav" in str(e.value)


def test_wrong_rate_refused_or_resampled(tmp_path):
  x = np.sin(np.linspace(0, 200, 8000)).astype(np.float32) * 0.3
  path = _write(tmp_path / "r8k.wav", x, rate=8000)
  with pytest.raises(AudioError, match="8000 Hz"):
    audio.read_audio(path)
  y = audio.read_audio(path, resample=True)
  assert y.shape == (16000,)


def test_stereo_refused_or_mixed(tmp_path):
  x = np.stack([np.full(1600, 0.25), np.full(1600, -0.75)], axis=1).astype(np.float32)
  path = _write(tmp_path / "st.wav", x)
  with pytest.raises(AudioError, match="2 channels"):
    audio.read_audio(path)
  np.testing.assert_allclose(audio.read_audio(path, stereo="mix"), -0.25, atol=1e-4)


def test_float_wav_with_nan_refused(tmp_path):
  x = np.zeros(1600, np.float32)
  x[10] = np.nan
  with pytest.raises(AudioError, match="NaN"):
    audio.read_audio(_write(tmp_path / "nan.wav", x, subtype="FLOAT"))


def test_truncated_file(tmp_path):
  x = (np.random.default_rng(0).uniform(-0.5, 0.5, 16000)).astype(np.float32)
  good = _write(tmp_path / "full.wav", x)
  data = good.read_bytes()
  cut = tmp_path / "cut.wav"
  cut.write_bytes(data[: len(data) // 2])
  # libsndfile reads what is there; either a clear error or the shorter audio.
  try:
    y = audio.read_audio(cut)
  except AudioError as e:
    assert "cut.wav" in str(e)
  else:
    assert 0 < y.shape[0] < 16000


def test_too_long(tmp_path):
  with pytest.raises(AudioError, match="10.0 s long"):
    audio.read_audio(_write(tmp_path / "long.wav", np.zeros(160000, np.float32)), max_seconds=2)


def test_int16_roundtrip_and_fit_length(tmp_path):
  x = np.array([0.0, 0.5, -1.0, 1.2], np.float32)
  np.testing.assert_array_equal(audio.to_int16(x), [0, 16384, -32768, 32767])
  # The one scale: int16 -> float -> int16 is exact.
  every = np.arange(-32768, 32768, dtype=np.int16)
  np.testing.assert_array_equal(audio.to_int16(audio.from_int16(every)), every)
  assert audio.fit_length(np.ones(5), 8).tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
  assert audio.fit_length(np.ones(9), 8).shape == (8,)
  audio.write_wav(tmp_path / "w.wav", x)
  np.testing.assert_allclose(audio.read_audio(tmp_path / "w.wav"), np.clip(x, -1, 1), atol=1e-4)


def test_wav_cut_inside_its_samples_is_refused(tmp_path):
  path = tmp_path / "cut.wav"
  audio.write_wav(path, np.zeros(16000, np.float32))
  data = path.read_bytes()
  path.write_bytes(data[:-1000])  # the header still promises 16000 samples
  assert audio.wav_missing_bytes(str(path)) == 1000
  with pytest.raises(AudioError, match="truncated"):
    audio.read_audio(path)
