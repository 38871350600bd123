"""`python -m kws_jax.features` end to end, in a subprocess like a user runs it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from kws_jax import audio as kaudio
from kws_jax import errors, features
from kws_jax.ops import frontend


def run_cli(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "kws_jax.features", *args],
                        capture_output=True, text=True, timeout=120)


def tone(seconds=1.0, rate=16000):
  t = np.arange(int(seconds * rate)) / rate
  return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_writes_preset_features(tmp_path):
  wav, out = tmp_path / "in.wav", tmp_path / "sub" / "out.npy"
  kaudio.write_wav(wav, tone())
  result = run_cli("--preset", "torchaudio", "--wav", str(wav), "--out", str(out))
  assert result.returncode == 0, result.stderr
  feats = np.load(out)
  cfg = frontend.get_config("torchaudio")
  expected = np.asarray(frontend.featurize(frontend.make_params(cfg), kaudio.read_audio(wav)))
  assert feats.dtype == np.float32 and feats.shape == (frontend.num_frames(cfg, 16000), 64)
  np.testing.assert_allclose(feats, expected, atol=1e-4)


def _bad_files(tmp_path):
  t = tone()
  stereo = tmp_path / "stereo.wav"
  sf.write(stereo, np.stack([t, t], 1), 16000, subtype="PCM_16")
  rate = tmp_path / "8k.wav"
  sf.write(rate, t[:8000], 8000, subtype="PCM_16")
  empty = tmp_path / "empty.wav"
  empty.write_bytes(b"")
  corrupt = tmp_path / "corrupt.wav"
  corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 10)
  return {"channels": stereo, "sample rate": rate, "empty": empty,
          "not a readable audio file": corrupt}


def test_bad_inputs_give_one_line_errors(tmp_path):
  for expected, path in _bad_files(tmp_path).items():
    result = run_cli("--preset", "ell", "--wav", str(path), "--out", str(tmp_path / "o.npy"))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (path, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0] and "Traceback" not in result.stderr


@pytest.mark.parametrize("case,expected", [
    ("short", "shorter than one ell frame"), ("missing", "no such file"),
    ("preset", "unknown featurizer preset 'mfcc13'")])
def test_more_user_errors_in_process(tmp_path, capsys, case, expected):
  wav = tmp_path / "in.wav"
  kaudio.write_wav(wav, tone(0.1 if case == "preset" else 100 / 16000))
  argv = ["--preset", "mfcc13" if case == "preset" else "ell",
          "--wav", str(tmp_path / "missing.wav" if case == "missing" else wav),
          "--out", str(tmp_path / "o.npy")]
  with pytest.raises(SystemExit) as exit_info:
    errors.run_cli(features.main, argv)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: ") and expected in err and len(err.splitlines()) == 1
