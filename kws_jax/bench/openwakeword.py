"""kws_jax's IREE host-cpu step vs openWakeWord's way of running the same two ONNX models.

openWakeWord (dscripka/openWakeWord, `AudioFeatures`) streams 1280-sample chunks (80 ms):
melspectrogram.onnx on the chunk plus the 480 samples before it (8 new frames,
x/10 + 2), then embedding_model.onnx on the last 76 frames (one embedding per chunk),
then its classifier on the last embeddings. Here the classifier is the kws_jax model's
own head (its weights, in NumPy, a few thousand MACs) so both sides compute the same
thing; onnxruntime runs with one intra-op and one inter-op thread. kws_jax runs the
exported, compiled streaming step (IREE local-sync: one thread) over the same audio,
8 hops (1280 samples) per call through the chunk module, exported both ways
(`--chunk-hops 8`, with and without `--chunk-unroll`). Each side's time is the best
of `rounds` passes over the audio; the real-time factor is time / audio duration.
"""

from __future__ import annotations

import pathlib
import tempfile
import time
from typing import Any

import numpy as np

CHUNK = 1280          # openWakeWord's samples per call
MEL_CONTEXT = 480     # samples before the chunk that its 8 frames need (512 - 160 + 128)


class OnnxStreamer:
  """openWakeWord's streaming feature path on onnxruntime, one thread."""

  def __init__(self, head: Any):
    import onnxruntime as ort

    from kws_jax.models import onnx_import
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    self.mel = ort.InferenceSession(onnx_import.resource_path(onnx_import.MELSPECTROGRAM_FILE),
                                    options, providers=["CPUExecutionProvider"])
    self.embedding = ort.InferenceSession(onnx_import.resource_path(onnx_import.EMBEDDING_FILE),
                                          options, providers=["CPUExecutionProvider"])
    self.head = head

  def run(self, audio_int16_scale: np.ndarray) -> np.ndarray:
    """Scores after every 1280-sample chunk, (chunks, classes)."""
    raw = np.zeros(MEL_CONTEXT, np.float32)
    frames = np.zeros((76, 32), np.float32)
    embeddings = np.zeros((self.head.num_embeddings, 96), np.float32)
    scores = []
    for start in range(0, audio_int16_scale.size - CHUNK + 1, CHUNK):
      chunk = audio_int16_scale[start:start + CHUNK]
      joined = np.concatenate([raw, chunk])
      raw = joined[-MEL_CONTEXT:]
      mel = self.mel.run(None, {"input": joined[None]})[0][0, 0] / 10.0 + 2.0   # (8, 32)
      frames = np.concatenate([frames[len(mel):], mel])
      emb = self.embedding.run(None, {"input_1": frames[None, :, :, None]})[0][0, 0]
      embeddings = np.concatenate([embeddings[1:], emb], axis=0)
      scores.append(self.head(embeddings))
    return np.stack(scores)


class NumpyHead:
  """The head of a SpeechEmbeddingKws (`head` flatten or pool) in NumPy."""

  def __init__(self, params: dict, num_embeddings: int, head: str):
    self.p = {k: {n: np.asarray(v) for n, v in layer.items()} for k, layer in params.items()
              if k != "embedding"}
    self.num_embeddings = num_embeddings
    self.head = head

  def __call__(self, embeddings: np.ndarray) -> np.ndarray:
    norm = self.p["norm"]
    mean = embeddings.mean(-1, keepdims=True)
    var = embeddings.var(-1, keepdims=True)
    y = (embeddings - mean) / np.sqrt(var + 1e-6) * norm["scale"] + norm["bias"]
    y = np.concatenate([y.mean(0), y.max(0)]) if self.head == "pool" else y.reshape(-1)
    for name in ("hidden_0", "hidden_1"):
      y = np.maximum(y @ self.p[name]["kernel"] + self.p[name]["bias"], 0.0)
    logits = y @ self.p["out"]["kernel"] + self.p["out"]["bias"]
    e = np.exp(logits - logits.max())
    return e / e.sum()


def bench_audio(seconds: float, shared_dir: pathlib.Path | None) -> np.ndarray:
  """`seconds` of real test clips joined end to end (synthetic noise and tones without them)."""
  from kws_jax import audio as audio_io
  total = int(seconds * 16000)
  files = sorted(shared_dir.glob("*/*.wav"))[::97] if shared_dir and shared_dir.is_dir() else []
  parts, have = [], 0
  for path in files:
    if have >= total:
      break
    parts.append(audio_io.read_audio(str(path), 16000))
    have += parts[-1].size
  if have < total:
    rng = np.random.default_rng(0)
    t = np.arange(total - have) / 16000
    parts.append((0.1 * np.sin(2 * np.pi * 300 * t * (1 + 0.3 * np.sin(t)))
                  + 0.01 * rng.standard_normal(t.size)).astype(np.float32))
  audio = np.concatenate(parts)[:total]
  return audio[:audio.size // CHUNK * CHUNK].astype(np.float32)


def _best_time(fn, rounds: int) -> float:
  best = float("inf")
  for _ in range(rounds):
    start = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - start)
  return best


def run(trained: Any, audio: np.ndarray, rounds: int = 3) -> dict[str, Any]:
  """Real-time factors of both sides over `audio` (float32 in [-1, 1))."""
  from kws_jax.deploy import iree_compile, iree_runner
  from kws_jax.deploy import stablehlo_export as export
  model = trained.model
  head = NumpyHead(trained.variables["params"], model.used_embeddings, model.head)
  onnx = OnnxStreamer(head)
  kws_seconds = {}
  for unroll in (False, True):
    with tempfile.TemporaryDirectory() as tmp:
      out = pathlib.Path(tmp)
      export.export_trained(trained, out / "export", vad=False, smoothing=False,
                            chunk_hops=CHUNK // 160, chunk_unroll=unroll)
      iree_compile.compile_export(out / "export", "host-cpu", out / "host-cpu")
      runner = iree_runner.IreeStep(out / "host-cpu")
      runner.run(audio[:CHUNK * 4])                     # warm up
      kws_seconds[unroll] = _best_time(lambda r=runner: r.run(audio), rounds)
  scaled = audio * 32768.0
  onnx.run(scaled[:CHUNK * 4])
  onnx_seconds = _best_time(lambda: onnx.run(scaled), rounds)
  duration = audio.size / 16000
  # The unrolled chunk is the faster export (IREE fuses across its 8 hops; the scanned one
  # runs them as loop iterations), so it is the headline figure; both are reported.
  return {"audio_seconds": duration, "kws_jax_iree_seconds": kws_seconds[True],
          "kws_jax_iree_scan_seconds": kws_seconds[False],
          "onnxruntime_seconds": onnx_seconds, "kws_jax_rtf": kws_seconds[True] / duration,
          "kws_jax_scan_rtf": kws_seconds[False] / duration,
          "onnxruntime_rtf": onnx_seconds / duration,
          "speedup": onnx_seconds / kws_seconds[True],
          "speedup_scan": onnx_seconds / kws_seconds[False], "chunk_samples": CHUNK,
          "rounds": rounds}


def format_result(r: dict[str, Any]) -> str:
  return "\n".join([
      "| runtime (one thread) | seconds for %.0f s of audio | real-time factor |" % r["audio_seconds"],
      "|---|---|---|",
      "| kws_jax, IREE host-cpu, 8 hops per call (chunk unrolled) | %.3f | %.5f |" % (
          r["kws_jax_iree_seconds"], r["kws_jax_rtf"]),
      "| kws_jax, IREE host-cpu, 8 hops per call (chunk scanned) | %.3f | %.5f |" % (
          r["kws_jax_iree_scan_seconds"], r["kws_jax_scan_rtf"]),
      "| openWakeWord's way, onnxruntime (1280-sample chunks) | %.3f | %.5f |" % (
          r["onnxruntime_seconds"], r["onnxruntime_rtf"]),
      "",
      "kws_jax / onnxruntime speed ratio: %.2fx unrolled, %.2fx scanned" % (
          r["speedup"], r["speedup_scan"])])


def _random_trained(num_classes: int = 12):
  """A speech_embedding model with a random head: speed does not depend on the weights."""
  import jax
  import ml_collections

  from kws_jax.models import builder
  from kws_jax.runs.trained_model import Trained
  config = ml_collections.ConfigDict({"features": {"preset": "speech_embedding"},
                                      "model": {"name": "speech_embedding"}})
  frontend_params, model, frames, features = builder.build(config, num_classes, 16000)
  variables = builder.init_variables(model, frames, features, jax.random.key(0))
  return Trained(config=config, label_names=[f"c{i}" for i in range(num_classes)],
                 frontend=frontend_params, model=model, variables=variables, num_frames=frames,
                 num_features=features, clip_samples=16000, sample_rate=16000, step=0,
                 workdir=pathlib.Path("."))


def main(argv) -> int:
  """`python -m kws_jax.bench openwakeword [--workdir W] [--seconds S] [--rounds R]`."""
  import argparse
  import json

  from kws_jax.errors import KwsError
  parser = argparse.ArgumentParser(
      prog="python -m kws_jax.bench openwakeword",
      description="kws_jax's IREE host-cpu step vs openWakeWord's onnxruntime streaming, "
                  "one thread each, same audio: real-time factors.")
  parser.add_argument("--workdir", help="a trained speech_embedding workdir (default: random head)")
  parser.add_argument("--seconds", type=float, default=30.0, help="audio length (default 30)")
  parser.add_argument("--rounds", type=int, default=3, help="timed passes, best kept (default 3)")
  parser.add_argument("--data-dir", default="../shared/data/sc_v2_test12_dev",
                      help="real clips to stream (synthetic audio when absent)")
  parser.add_argument("--out", type=pathlib.Path, help="also write openwakeword.json here")
  args = parser.parse_args(argv)
  if args.seconds < 1 or args.rounds < 1:
    raise KwsError("--seconds must be >= 1 and --rounds >= 1")
  if args.workdir:
    from kws_jax.runs import trained_model as trained_lib
    bundle = trained_lib.load(args.workdir)
    if bundle.config.model.name != "speech_embedding":
      raise KwsError(f"{args.workdir}: model {bundle.config.model.name!r}, not speech_embedding")
  else:
    bundle = _random_trained()
  result = run(bundle, bench_audio(args.seconds, pathlib.Path(args.data_dir)), args.rounds)
  print(format_result(result))
  if args.out:
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "openwakeword.json").write_text(json.dumps(result, indent=2) + "\n")
  return 0
