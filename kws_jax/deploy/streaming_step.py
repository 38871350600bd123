"""The stateful streaming step: one hop of raw audio in, class scores out.

`make_step(trained)` chains frontend.step (hop of samples -> feature frame), the
optional VAD (ELL's add_vad: the recurrent model state is reset to its initial
value while no voice is detected), the model's `step` and optional smoothing
(TF RecognizeCommands) into one pure function

    state, outputs = step(state, samples)      # samples: float32 (hop_size,)

with all state explicit, which is what `kws_jax.deploy.stablehlo_export` writes as StableHLO. The
weights are an explicit argument of `StreamingStep.apply` so that
`kws_jax.deploy.int8` can rewrite the matrix products they feed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from kws_jax.deploy import protocol
from kws_jax.deploy.classifier_stride import ClassifierStride
from kws_jax.errors import ConfigError, ExportError
from kws_jax.ops import frontend
from kws_jax.ops import smoothing as smoothing_ops
from kws_jax.ops import vad as vad_ops
from kws_jax.runs.trained_model import Trained

State = Any
Outputs = dict[str, jax.Array]

# Silence after a voice before the VAD resets the recurrent state. ELL resets on the
# 1 -> 0 edge itself (0 ms); that cuts a word's posteriors off before TF's 500 ms
# smoothing window has averaged them. Tuned on a 10-minute stream of the validation
# speakers (ell_gru128, `stream make-test --split validation`): matched 71.5 % at 0 ms,
# 86.0 % at 200, 88.0 % at 300 and 400 (0.5 % false positives at 400), 89.5 % at 600
# with 4 % false positives; the `never` mode gave 81.5 % matched, 14.5 % false positives.
DEFAULT_VAD_RESET_DELAY_MS = 400.0


@dataclasses.dataclass(frozen=True)
class StreamingStep:
  """A pure streaming step with its weights, initial state and description.

  Attributes:
    apply: `apply(params, state, samples) -> (state, outputs)`; `samples` is a
      float32 `(hop_size,)` chunk in [-1, 1], `outputs` a dict of arrays
      (always "logits" and "scores", the softmax of the logits).
    params: the weights `apply` needs (a pytree of arrays).
    init_state: `init_state() -> state`, the state before the first hop.
    hop_size: samples per step.
    sample_rate: Hz.
    label_names: class names in score order.
    info: JSON-able description (frontend, VAD, smoothing, model) for meta.json.
  """
  apply: Callable[[Any, State, jax.Array], tuple[State, Outputs]]
  params: Any
  init_state: Callable[[], State]
  hop_size: int
  sample_rate: int
  label_names: tuple[str, ...]
  info: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def initial_state(self) -> State:
    return self.init_state()

  def __call__(self, state: State, samples: jax.Array) -> tuple[State, Outputs]:
    return self.apply(self.params, state, samples)

  def step(self, state: State, samples: np.ndarray | jax.Array) -> tuple[State, Outputs]:
    """One hop, jitted (the protocol's `step`; `__call__` is the traceable form)."""
    return _step_jit(self.apply, self.params, state, jnp.asarray(samples, jnp.float32))

  def run(self, audio: np.ndarray, state: State | None = None) -> tuple[State, Outputs]:
    """Steps over `audio` (S,) hop by hop (S a multiple of hop_size) with lax.scan.

    Returns the final state and the outputs stacked over steps `(steps, ...)`.
    """
    audio = jnp.asarray(audio, jnp.float32)
    if audio.ndim != 1 or audio.shape[0] % self.hop_size:
      raise ExportError(f"run() needs 1-D audio whose length is a multiple of the hop size "
                        f"{self.hop_size}; got shape {tuple(audio.shape)}")
    state = self.initial_state() if state is None else state
    return protocol.scan_step(self.apply, self.params, state, audio.reshape(-1, self.hop_size))


@functools.partial(jax.jit, static_argnums=0)
def _step_jit(apply, params, state, samples):
  return apply(params, state, samples)


def _reset_where(reset: jax.Array, state: State, initial: State) -> State:
  return jax.tree.map(lambda s, s0: jnp.where(reset, s0.astype(s.dtype), s), state, initial)


def make_step_from_parts(frontend_params: Any,
                         model: Any,
                         variables: Any,
                         label_names: list[str] | tuple[str, ...],
                         *,
                         vad_params: Any = None,
                         vad_reset_delay_ms: float = DEFAULT_VAD_RESET_DELAY_MS,
                         smoothing_params: Any = None,
                         info: Mapping[str, Any] | None = None) -> StreamingStep:
  """Builds the step from a frontend, a Flax model with `initial_state`/`step`, VAD and smoothing.

  Args:
    frontend_params: `kws_jax.ops.frontend.FrontendParams`.
    model: a Flax module with `initial_state(batch_size)` and `step(state, frame)` methods.
    variables: the model's variables (`{"params": ..., ...}`).
    label_names: class names, one per logit.
    vad_params: `kws_jax.ops.vad.VadParams` or None (no VAD).
    vad_reset_delay_ms: the recurrent state is reset once the VAD has been off for this long
      after a voice (0: on the first silent hop, ELL's 1 -> 0 edge). The delay lets the
      posteriors of a word that just ended reach the smoothing window before the reset
      wipes the memory of it.
    smoothing_params: `kws_jax.ops.smoothing.SmoothingParams` or None (no smoothing).
    info: extra description merged into `StreamingStep.info`.

  (Its length: `init_state` and `apply` are closures over the same static parts, which is
  what export traces; the VAD-reset logic is commented where it happens.)
  """
  cfg = frontend_params_config(frontend_params)
  label_names = tuple(label_names)
  if vad_reset_delay_ms < 0:
    raise ConfigError(f"vad reset_delay_ms must be >= 0, got {vad_reset_delay_ms}")
  # Silent hops after a voice at which the reset fires (1: the 1 -> 0 edge itself).
  reset_after_hops = 1 + int(round(vad_reset_delay_ms * cfg.sample_rate / 1000 / cfg.hop_size))

  def init_state() -> dict[str, Any]:
    state = {
        "frontend": frontend.init_state(frontend_params, batch_shape=()),
        "model": model.apply(variables, 1, method="initial_state"),
    }
    if vad_params is not None:
      state["vad"] = vad_ops.init_state(vad_params)
      # Consecutive silent hops since the last voice, saturating one past the reset point;
      # it starts there so that the silence before the first voice triggers nothing.
      state["vad_silent_hops"] = jnp.asarray(reset_after_hops + 1, jnp.int32)
    if smoothing_params is not None:
      state["smoothing"] = smoothing_ops.init_state(smoothing_params)
    return state

  def apply(params, state, samples):
    new_state = dict(state)
    new_state["frontend"], frame = frontend.step(frontend_params, state["frontend"], samples)
    model_state, logits = model.apply(params, state["model"], frame[None, :], method="step")
    logits = logits[0]
    scores = jax.nn.softmax(logits)
    outputs = {"logits": logits, "scores": scores}
    if vad_params is not None:
      new_state["vad"], active = vad_ops.step(vad_params, state["vad"], frame)
      active = jnp.asarray(active, jnp.int32)
      # ELL's add_vad drives the recurrent layers' reset trigger, which fires on its 1 -> 0
      # edge: when a voice stops, the model state goes back to its initial value once, so
      # the next word starts fresh while silence still flows through the model. Here the
      # reset may wait `vad_reset_delay_ms` of continuous silence after the edge.
      silent_hops = jnp.where(active == 1, 0,
                              jnp.minimum(state["vad_silent_hops"] + 1, reset_after_hops + 1))
      voice_ended = silent_hops == reset_after_hops
      initial = model.apply(params, 1, method="initial_state")
      # Models may limit the reset to their recurrent part (RNNs: h and c, not the output window).
      model_state = dict(model_state)
      for key in getattr(model, "reset_state_keys", tuple(model_state)):
        if key in model_state:
          model_state[key] = _reset_where(voice_ended, model_state[key], initial[key])
      new_state["vad_silent_hops"] = silent_hops.astype(jnp.int32)
      outputs["vad_active"] = active
    new_state["model"] = model_state
    if smoothing_params is not None:
      new_state["smoothing"], smoothed = smoothing_ops.step(smoothing_params, state["smoothing"],
                                                        scores)
      outputs.update(_named_outputs("smoothed", smoothed))
    return new_state, outputs

  description = {
      "frontend": _jsonable(cfg),
      "vad": _jsonable(vad_params) if vad_params is not None else None,
      "vad_reset_delay_ms": float(vad_reset_delay_ms) if vad_params is not None else None,
      "smoothing": _jsonable(smoothing_params) if smoothing_params is not None else None,
  }
  description.update(info or {})
  return StreamingStep(apply=apply, params=variables, init_state=init_state,
                       hop_size=int(cfg.hop_size), sample_rate=int(cfg.sample_rate),
                       label_names=label_names, info=description)


def make_step(trained: Trained,
              *,
              vad: bool | None = None,
              smoothing: bool | None = None,
              spectrum: str | None = None,
              vad_options: Mapping[str, Any] | None = None,
              classifier_stride: int = 1) -> StreamingStep:
  """The streaming step of a trained model.

  Args:
    trained: a loaded workdir (`kws_jax.runs.trained_model.Trained`).
    vad: include the VAD (None: when the experiment config has a `vad` section).
    vad_options: VAD settings over the config's `vad` section: the tracker constants of
      `kws_jax.ops.vad` and `reset_delay_ms` (see `make_step_from_parts`).
    smoothing: include smoothing (None: when the config has a `smoothing` section).
    spectrum: override the frontend's spectrum ("rfft" or "dft", DFT-as-matmul, which
      IREE's Vulkan backend needs); None keeps the trained featurizer. Both compute
      the same features up to float rounding.
    classifier_stride: run a window model's network every k hops only, holding its
      scores in between (kws_jax.deploy.classifier_stride); 1: every hop.
  """
  frontend_params = trained.frontend
  if spectrum is not None:
    frontend_params = with_spectrum(frontend_params, spectrum)
  config = getattr(trained, "config", None)
  vad_params = None
  vad_settings = {**dict(_section(config, "vad") or {}), **dict(vad_options or {})}
  reset_delay_ms = float(vad_settings.pop("reset_delay_ms", DEFAULT_VAD_RESET_DELAY_MS))
  if vad or (vad is None and _section(config, "vad") is not None):
    vad_params = make_vad_params(frontend_params, vad_settings)
  smoothing_params = None
  if smoothing or (smoothing is None and _section(config, "smoothing") is not None):
    smoothing_params = make_smoothing_params(frontend_params, len(trained.label_names),
                                             _section(config, "smoothing") or {})
  model_section = _section(config, "model")
  info = {"model": _jsonable(model_section) if model_section is not None else
          {"name": type(trained.model).__name__}}
  # The audio one decision looks at; streaming scores date detections from its start (TF).
  data_section = _section(config, "data")
  info["window_ms"] = float(data_section.get("clip_duration_ms", 1000.0)
                            if data_section is not None else 1000.0)
  model = trained.model
  if classifier_stride != 1:
    model = ClassifierStride(model, classifier_stride)
    info["classifier_stride"] = int(classifier_stride)
  return make_step_from_parts(frontend_params, model, trained.variables,
                              trained.label_names, vad_params=vad_params,
                              vad_reset_delay_ms=reset_delay_ms,
                              smoothing_params=smoothing_params, info=info)


def frontend_params_config(frontend_params: Any) -> Any:
  """The static FrontendConfig inside FrontendParams."""
  for name in ("cfg", "config"):
    cfg = getattr(frontend_params, name, None)
    if cfg is not None:
      return cfg
  raise ConfigError("frontend params carry no config (expected a `cfg` field); "
                    "build them with kws_jax.ops.frontend.make_params(cfg)")


def with_spectrum(frontend_params: Any, spectrum: str) -> Any:
  """The same featurizer with its spectrum computed by "rfft" or "dft" (matmul)."""
  cfg = frontend_params_config(frontend_params)
  if getattr(cfg, "spectrum", None) == spectrum:
    return frontend_params
  if not hasattr(cfg, "spectrum"):
    raise ConfigError(f"this frontend has no `spectrum` option, so it cannot switch to "
                      f"{spectrum!r}")
  return frontend.make_params(dataclasses.replace(cfg, spectrum=spectrum))


def set_shipping_threshold(config: ml_collections.ConfigDict, threshold: float) -> None:
  """Writes the smoothing that `stream eval` measures at `threshold` into a training config's
  `smoothing` section, which the export bakes into the step. The other settings default to TF
  test_streaming_accuracy's (kws_jax.streameval.settings.TEST_STREAMING_ACCURACY_DEFAULTS)."""
  if not 0.0 < threshold < 1.0:
    raise ConfigError(f"--detection-threshold {threshold}: a posterior threshold in (0, 1)")
  old = config.get("smoothing")
  section = dict(old.to_dict() if hasattr(old, "to_dict") else old or {})
  section.setdefault("average_window_ms", 500.0)
  section.setdefault("suppression_ms", 1500.0)
  section.setdefault("minimum_count", 3)
  section["detection_threshold"] = float(threshold)
  with config.unlocked():
    config.smoothing = ml_collections.ConfigDict(section)


def parse_vad_options(items: Sequence[str] | None) -> dict[str, float]:
  """`["reset_delay_ms=300", "threshold_up=6"]` (command-line form) -> {key: float}."""
  options = {}
  for item in items or ():
    key, sep, value = item.partition("=")
    try:
      if not sep:
        raise ValueError
      options[key.strip()] = float(value)
    except ValueError:
      raise ConfigError(f"--vad-option {item!r}: expected KEY=NUMBER, e.g. "
                        "reset_delay_ms=300") from None
  return options


def make_vad_params(frontend_params: Any, overrides: Mapping[str, Any]) -> Any:
  """VAD params fed by this featurizer's frames; `overrides` are the config's `vad` section."""
  return vad_ops.params_for_frontend(frontend_params_config(frontend_params), **dict(overrides))


def make_smoothing_params(frontend_params: Any, num_classes: int,
                          overrides: Mapping[str, Any]) -> Any:
  """Smoothing over one posterior per hop; `overrides` are the config's `smoothing` section."""
  cfg = frontend_params_config(frontend_params)
  try:
    return smoothing_ops.make_params(num_classes, 1000.0 * cfg.hop_size / cfg.sample_rate,
                                 **dict(overrides))
  except TypeError as e:
    raise ConfigError(f"bad `smoothing` config section {dict(overrides)}: {e}") from None


def _named_outputs(prefix: str, value: Any) -> dict[str, jax.Array]:
  """Flattens a smoothing output (array, tuple, dict or dataclass) into named int/float arrays."""
  leaves = jax.tree_util.tree_flatten_with_path(value)[0]
  named = {}
  for path, leaf in leaves:
    suffix = jax.tree_util.keystr(path, simple=True, separator=".")
    name = f"{prefix}.{suffix}" if suffix else prefix
    leaf = jnp.asarray(leaf)
    named[name] = leaf.astype(jnp.int32) if leaf.dtype == jnp.bool_ else leaf
  return named


def _section(config: Any, name: str) -> Any:
  if config is None:
    return None
  try:
    value = config.get(name) if hasattr(config, "get") else getattr(config, name, None)
  except (AttributeError, KeyError):
    return None
  if value is None:
    return None
  return value.to_dict() if hasattr(value, "to_dict") else value


def _jsonable(obj: Any) -> Any:
  """A JSON-able view of configs/params: dataclass fields, arrays summarised by shape."""
  if obj is None or isinstance(obj, (bool, int, str)):
    return obj
  if isinstance(obj, float):
    return obj if math.isfinite(obj) else str(obj)
  if isinstance(obj, (np.generic,)):
    return _jsonable(obj.item())
  if isinstance(obj, (np.ndarray, jax.Array)):
    if obj.size <= 16:
      return _jsonable(np.asarray(obj).tolist())
    return {"array": list(obj.shape), "dtype": str(obj.dtype)}
  if isinstance(obj, Mapping):
    return {str(k): _jsonable(v) for k, v in obj.items()}
  if hasattr(obj, "to_dict"):
    return _jsonable(obj.to_dict())
  if dataclasses.is_dataclass(obj):
    return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
  if isinstance(obj, (list, tuple)):
    return [_jsonable(v) for v in obj]
  return str(obj)
