"""Shared plumbing of the evaluation entry points (eval, infer, export, harness, ...).

Gin macros are read with one-line `ConfigError`s, in the style of `gin_utils`:
`macro_value("OUTPUT_DIR")` evaluates a macro (references such as
`@get_vocabulary()` included), and `model_and_params()` builds `%MODEL` and restores
`%CHECKPOINT_PATH` through `redllm_jax.checkpoints.load_params`.
"""
import dataclasses
from typing import Any, Sequence

import gin
import numpy as np

from redllm_jax import gin_utils

_MISSING = object()


@gin.configurable
def _macro_value(value=gin.REQUIRED):
  return value


def macro_value(name: str, default: Any = _MISSING) -> Any:
  """The evaluated value of gin macro `name`; `default` (if given) when it is unset."""
  try:
    gin.query_parameter(f"%{name}")
  except ValueError:
    if default is not _MISSING:
      return default
    raise gin_utils.ConfigError(f"missing required gin macro {name}: pass --gin.{name}=...") from None
  gin.parse_config(f"_macro_value.value = %{name}")
  try:
    return _macro_value()
  except (ValueError, TypeError, KeyError) as e:
    raise gin_utils.ConfigError(f"evaluating %{name}: {gin_utils.first_line(e)}") from None


def check_required_macros() -> None:
  """One-line ConfigError for the first unset macro of the run gin's REQUIRED_MACROS."""
  for name in macro_value("REQUIRED_MACROS", []):
    gin_utils.required_macro(name)


def load_params(checkpoint_path: str, model) -> Any:
  """Parameters of `model` from a trainer checkpoint (one-line ConfigError on failure)."""
  from redllm_jax import checkpoints  # pylint: disable=g-import-not-at-top  # trainer's module
  return checkpoints.load_params(checkpoint_path, model)


def model_and_params(checkpoint_macro: str = "CHECKPOINT_PATH"):
  """(model from %MODEL, params restored from %CHECKPOINT_PATH)."""
  check_required_macros()
  model = gin_utils.build_model()
  return model, load_params(str(macro_value(checkpoint_macro)), model)


def model_name(model) -> str:
  """decllm, decllm_biattn or redllm."""
  if model.architecture == "decllm" and getattr(model, "inputs_bidirectional_attention", False):
    return "decllm_biattn"
  return model.architecture


def config_dict(model) -> dict:
  return dataclasses.asdict(model.config)


def pad_rows(rows: Sequence[Sequence[int]], width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Right-padded int32 [b, width] and lengths [b] of token-id rows."""
  lengths = np.array([len(r) for r in rows], np.int32)
  width = int(lengths.max()) if width is None else width
  out = np.zeros((len(rows), width), np.int32)
  for i, r in enumerate(rows):
    out[i, :len(r)] = r
  return out, lengths


def bucket_size(n: int, minimum: int = 8) -> int:
  """The next power of two >= n (>= minimum): few distinct shapes, few compiles."""
  size = minimum
  while size < n:
    size *= 2
  return size
