"""The study directory: where each run and stage writes, and JSON written atomically."""

import dataclasses
import json
import os
from typing import Any, Optional

import jax

from redllm_jax import checkpoints
from redllm_jax.study.plan import StudyPlan
from redllm_jax.study.runs import RunSpec


def read_json(path: str) -> Optional[Any]:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def write_json(path: str, value: Any) -> None:
  """Written to a temporary name, then renamed: a kill never leaves half a file.

  Only process 0 writes: every process of a multi-host run computes the same.
  """
  if jax.process_index() != 0:
    return
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump(value, f, indent=1)
  os.replace(path + ".tmp", path)


def share_compilations(root: str) -> None:
  """This process reads and writes the study's persistent compilation cache: runs of one
  shape (the seeds of a point; the eval steps of every budget) compile once, whichever
  process (the study's or a worker's) compiles first."""
  jax.config.update("jax_compilation_cache_dir", os.path.join(root, "jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


@dataclasses.dataclass(frozen=True)
class Study:
  plan: StudyPlan
  root: str

  def path(self, *parts: str) -> str:
    return os.path.join(self.root, *parts)

  def result(self, kind: str, spec: RunSpec) -> Optional[dict]:
    return read_json(self.path(kind, spec.name, "result.json"))

  def load(self, kind: str, spec: RunSpec):
    """(model, final parameters) of a finished run."""
    return checkpoints.load_model_and_params(self.path(kind, spec.name))

  def checkpoint_bindings(self, spec: RunSpec) -> list[str]:
    """Finetuning and adaptation start from their parent run's final parameters."""
    if not spec.parent:
      return []
    return [f"INITIAL_CHECKPOINT_PATH = '{self.path(spec.parent_kind, spec.parent)}'"]
