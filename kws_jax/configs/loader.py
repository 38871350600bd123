"""Loading experiment files and applying `--config.key=value` overrides.

An experiment is a Python file defining `get_config() -> ml_collections.ConfigDict`.
Overrides are type checked against the value already in the config: an unknown
key or a value of the wrong type is a `ConfigError` naming the key (with close
matches), so a typo never silently trains the wrong thing.

Why not `ml_collections.config_flags`: it needs absl's global FLAGS, while every
kws_jax CLI is a plain `main(argv)`; the parsing here is small and explicit.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import os
import pathlib
from typing import Any, Iterable, Sequence

import ml_collections

from kws_jax.errors import ConfigError

OVERRIDE_PREFIX = "--config."


def load_experiment(path: str | os.PathLike) -> ml_collections.ConfigDict:
  """Imports an experiment file and returns its `get_config()`."""
  path = pathlib.Path(path)
  if not path.is_file():
    here = pathlib.Path(__file__).resolve().parents[2] / "experiments"
    known = sorted(p.name for p in here.glob("*.py")) if here.is_dir() else []
    hint = f" (experiments shipped: {', '.join(known)})" if known else ""
    raise ConfigError(f"{path}: no such experiment file{hint}")
  spec = importlib.util.spec_from_file_location(f"kws_experiment_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:
    raise ConfigError(f"{path}: cannot import the experiment file "
                      f"({type(e).__name__}: {e})") from e
  if not hasattr(module, "get_config"):
    raise ConfigError(f"{path}: an experiment file must define get_config()")
  config = module.get_config()
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"{path}: get_config() must return an ml_collections.ConfigDict, "
                      f"got {type(config).__name__}")
  return config


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
  """Separates `--config.a.b=v` / `--config.a.b v` from the other arguments."""
  rest, overrides = [], []
  argv = list(argv)
  i = 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith(OVERRIDE_PREFIX):
      body = arg[len(OVERRIDE_PREFIX):]
      if "=" in body:
        key, value = body.split("=", 1)
      elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
        key, value = body, argv[i + 1]
        i += 1
      else:
        raise ConfigError(f"--config.{body}: missing value (write --config.{body}=VALUE)")
      if not key:
        raise ConfigError(f"{arg}: empty config key")
      overrides.append((key, value))
    else:
      rest.append(arg)
    i += 1
  return rest, overrides


def all_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """Every dotted leaf key of `config` (sections included)."""
  keys = []
  for name, value in config.items():
    key = f"{prefix}{name}"
    keys.append(key)
    if isinstance(value, ml_collections.ConfigDict):
      keys.extend(all_keys(value, key + "."))
  return keys


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Iterable[tuple[str, str]]) -> ml_collections.ConfigDict:
  """Sets each dotted `key` to `value` (a string parsed to the existing type)."""
  for key, text in overrides:
    parent, leaf = _resolve(config, key)
    current = parent[leaf]
    if isinstance(current, ml_collections.ConfigDict):
      raise ConfigError(f"--config.{key}: is a section, not a value; set one of its "
                        f"keys, e.g. --config.{key}.{next(iter(current.keys()), 'x')}=...")
    value = parse_value(key, text, current)
    with config.unlocked():
      try:
        parent[leaf] = value
      except TypeError as e:  # ConfigDict's own type lock (e.g. a FieldReference).
        raise ConfigError(f"--config.{key}={text}: {e}") from None
  return config


def parse_value(key: str, text: str, current: Any) -> Any:
  """Parses `text` as the type of `current` (the value the experiment set)."""
  def wrong(kind: str) -> ConfigError:
    return ConfigError(f"--config.{key}={text}: expected {kind} "
                       f"(the experiment has {current!r})")

  if isinstance(current, bool):
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
      return True
    if lowered in ("false", "0", "no", "off"):
      return False
    raise wrong("true or false")
  if isinstance(current, int):
    try:
      return int(text)
    except ValueError:
      raise wrong("an integer") from None
  if isinstance(current, float):
    try:
      return float(text)
    except ValueError:
      raise wrong("a number") from None
  if isinstance(current, str):
    return text
  if isinstance(current, (tuple, list)):
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      # A bare comma list of words: --config.data.wanted_words=yes,no
      value = tuple(part.strip() for part in text.split(",") if part.strip())
    if not isinstance(value, (tuple, list)):
      value = (value,)
    if current and value:
      element = type(current[0])
      if element is float and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                  for v in value):
        value = [float(v) for v in value]
      elif not all(isinstance(v, element) for v in value):
        raise wrong(f"a list of {element.__name__}")
    return type(current)(value)
  if current is None:
    # No type to check against: a Python literal, else the string itself.
    try:
      return ast.literal_eval(text)
    except (ValueError, SyntaxError):
      return text
  raise ConfigError(f"--config.{key}: values of type {type(current).__name__} cannot be "
                    "set from the command line; edit the experiment file")


def _resolve(config: ml_collections.ConfigDict, key: str):
  parts = key.split(".")
  node = config
  for depth, part in enumerate(parts):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      raise ConfigError(_unknown_key_message(config, key))
    if depth < len(parts) - 1:
      node = node[part]
  return node, parts[-1]


def _unknown_key_message(config: ml_collections.ConfigDict, key: str) -> str:
  keys = all_keys(config)
  # Keys at the same depth first: `train.epoch` should suggest `train.epochs`, not `train`.
  depth = key.count(".")
  close = difflib.get_close_matches(key, [k for k in keys if k.count(".") == depth], n=3,
                                    cutoff=0.6) or difflib.get_close_matches(key, keys, n=3,
                                                                             cutoff=0.6)
  if not close:  # A typo in the leaf only: compare leaf names.
    leaf = key.split(".")[-1]
    close = [k for k in keys if difflib.get_close_matches(leaf, [k.split(".")[-1]], cutoff=0.75)][:3]
  hint = f"; did you mean {', '.join('--config.' + c for c in close)}?" if close else ""
  return f"--config.{key}: unknown config key{hint}"


def to_json(config: ml_collections.ConfigDict) -> str:
  return json.dumps(to_dict(config), indent=2, sort_keys=True)


def to_dict(config: ml_collections.ConfigDict) -> dict:
  """Plain dict of a ConfigDict (tuples become lists)."""
  return json.loads(config.to_json_best_effort())


def from_dict(data: dict) -> ml_collections.ConfigDict:
  """The ConfigDict a `config.json` was written from (lists read back as tuples)."""
  def convert(value):
    if isinstance(value, dict):
      return ml_collections.ConfigDict({k: convert(v) for k, v in value.items()})
    if isinstance(value, list):
      return tuple(convert(v) for v in value)
    return value
  return convert(data)


def load_json(path: str | os.PathLike) -> ml_collections.ConfigDict:
  path = pathlib.Path(path)
  if not path.is_file():
    raise ConfigError(f"{path}: no config.json here; is this a training workdir?")
  try:
    return from_dict(json.loads(path.read_text()))
  except json.JSONDecodeError as e:
    raise ConfigError(f"{path}: not valid JSON ({e})") from None
