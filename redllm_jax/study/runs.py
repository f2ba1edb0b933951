"""One training run of the study (pretraining or finetuning), and what it cost.

A run is an experiment gin plus extra gin files (e.g. a size) and bindings; it
trains through `train.train`, so it resumes from its MODEL_DIR after a kill.
"""

import dataclasses
import os
import time
from typing import Any, Optional, Sequence

import gin

from redllm_jax import flops, gin_utils, models
from redllm_jax import train as train_module


@dataclasses.dataclass(frozen=True)
class RunSpec:
  name: str
  architecture: str  # decllm, decllm_biattn or redllm
  gin_files: tuple[str, ...]
  point: str = ""  # the study point this run is one seed of (the name less its seed)
  bindings: tuple[str, ...] = ()
  size: str = ""
  steps: int = 0  # the training budget in steps (0: as the experiment gin sets it)
  parent: str = ""  # the run a finetuning or adaptation run starts from
  parent_kind: str = "pretrain"  # the parent's stage directory (pretrain or adapt)
  branch_of: str = ""  # a shorter budget: the longer run (same stage) it branches off
  branch_step: int = 0  # the step it branches at (where its cooldown starts)
  seed: int = 0  # parameter init, data order and dropout


def training_cost(
  model, steps: int, batch_size: int, feature_lengths: dict[str, int]
) -> dict[str, float]:
  """Training FLOPs and target tokens of `steps` batches (RedLLM splits pretraining chunks)."""
  arch = model.architecture  # decllm (BiAttn included) or redllm, as flops expects
  if "inputs" in feature_lengths:  # Finetuning: separate inputs and targets.
    inputs, targets = feature_lengths["inputs"], feature_lengths["targets"]
  else:  # Pretraining chunks; RedLLM reads the first half and predicts the second.
    length = feature_lengths["targets"]
    inputs = length // 2 if arch == "redllm" else 0
    targets = length - inputs
  sequences = steps * batch_size
  return {
    "train_flops": sequences * flops.training_flops(model.config, arch, inputs, targets),
    "target_tokens": sequences * targets,
    "inputs_length": inputs,
    "targets_length": targets,
  }


def parse_run(spec: RunSpec, model_dir: str, extra_bindings: Sequence[str] = ()) -> None:
  """Parses the run's gin (fresh global config) with MODEL_DIR and TRAIN_STEPS bound."""
  gin.clear_config()
  bindings = [
    f"MODEL_DIR = '{os.path.abspath(model_dir)}'",
    f"train.train.seed = {spec.seed}",
    *spec.bindings,
    *extra_bindings,
  ]
  if spec.steps:
    bindings.append(f"TRAIN_STEPS = {spec.steps}")
  gin_utils.parse_gin(list(spec.gin_files), bindings)


def train_run(
  spec: RunSpec, model_dir: str, extra_bindings: Sequence[str] = ()
) -> Optional[dict[str, Any]]:
  """Trains (or resumes) one run; its final eval metrics and cost, or None if preempted."""
  parse_run(spec, model_dir, extra_bindings)
  model = models.from_gin()
  steps, batch = gin.query_parameter("%TRAIN_STEPS"), gin.query_parameter("%BATCH_SIZE")
  lengths = dict(gin.query_parameter("%TASK_FEATURE_LENGTHS"))
  start = time.perf_counter()
  metrics = train_module.train()
  if not metrics:  # A preempted run returns without its final evaluation.
    return None
  params = flops.count_params(model.abstract_params())
  return {
    "name": spec.name,
    "point": spec.point,
    "architecture": spec.architecture,
    "size": spec.size,
    "steps": steps,
    "batch_size": batch,
    "seed": spec.seed,
    "params": params.total,
    "non_embedding_params": params.non_embedding,
    **training_cost(model, steps, batch, lengths),
    "seconds": time.perf_counter() - start,
    "metrics": metrics,
    "gin_files": list(spec.gin_files),
    "bindings": list(spec.bindings),
    "config": model.describe()["config"],
  }
