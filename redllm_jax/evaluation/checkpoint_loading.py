"""Shared plumbing of the evaluation entry points (eval, infer, export, harness, ...).

`model_and_params()` builds `%MODEL` and restores `%CHECKPOINT_PATH` through
`redllm_jax.checkpoints.load_params`; gin macros are read with `gin_utils.macro_value`.
"""
import dataclasses
from typing import Any, Sequence

import gin
import numpy as np

from redllm_jax import checkpoints, gin_utils

def load_params(checkpoint_path: str, model) -> Any:
  """Parameters of `model` from a trainer checkpoint (one-line ConfigError on failure)."""
  return checkpoints.load_params(checkpoint_path, model)


def load_checkpoint_spec(spec: str) -> tuple[str, Any, Any]:
  """`NAME=GIN_FILE[,GIN_FILE...]@CHECKPOINT_PATH` -> (name, model, params).

  The side-by-side commands (harness, extrapolation, attention analysis) take one
  such flag per checkpoint.
  """
  try:
    name, rest = spec.split("=", 1)
    gin_files, path = rest.rsplit("@", 1)
  except ValueError:
    raise gin_utils.ConfigError(
        f"--checkpoint={spec}: expected NAME=GIN_FILE[,...]@PATH") from None
  gin.clear_config()
  gin_utils.parse_gin(gin_files.split(","), [])
  model = gin_utils.build_model()
  return name, model, load_params(path, model)


def model_and_params(checkpoint_macro: str = "CHECKPOINT_PATH"):
  """(model from %MODEL, params restored from %CHECKPOINT_PATH)."""
  gin_utils.check_required_macros()
  model = gin_utils.build_model()
  return model, load_params(str(gin_utils.macro_value(checkpoint_macro)), model)


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
