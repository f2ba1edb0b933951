"""The study's stages, each a unit of work with outputs under the study directory.

A unit is skipped when its outputs exist, so a killed study picks up where it
stopped (a killed training run also resumes from its own checkpoints).
Units, in order: every pretraining run; the adaptation runs; the finetuning runs;
the harness's scoring of each pretrained, adapted and finetuned model; then the
analyses (`analyses.py`): the scaling fits; the harness summary; length
extrapolation; attention. Training and scoring units may run in worker processes
(`workers.py`), each once the unit it reads is done; the analyses run after them.
"""

import dataclasses
import os
from typing import Callable

import gin

import redllm_jax_tasks  # noqa: F401  pylint: disable=unused-import  # the study's eval tasks
from redllm_jax import checkpoints, flops, models
from redllm_jax.study import analyses
from redllm_jax.study.directory import Study, read_json, write_json
from redllm_jax.study.runs import RunSpec, parse_run, train_run, training_cost


@dataclasses.dataclass(frozen=True)
class Unit:
  name: str
  flops: float  # estimated work, for the progress bar's ETA
  outputs: tuple[str, ...]  # the unit is done when all exist
  run: Callable[[], bool]  # False: interrupted (SIGTERM); rerun the study to resume
  in_worker: bool = False  # training or scoring one run: may run in a worker process
  after: tuple[str, ...] = ()  # units that must be done first

  def done(self) -> bool:
    return all(os.path.exists(p) for p in self.outputs)


def _training_unit(study: Study, kind: str, spec: RunSpec) -> Unit:
  run_dir = study.path(kind, spec.name)
  extra = study.checkpoint_bindings(spec)
  parse_run(spec, run_dir, extra)
  model = models.from_gin()
  cost = training_cost(
    model,
    gin.query_parameter("%TRAIN_STEPS"),
    gin.query_parameter("%BATCH_SIZE"),
    dict(gin.query_parameter("%TASK_FEATURE_LENGTHS")),
  )

  def run() -> bool:
    if spec.branch_of:
      checkpoints.branch(study.path(kind, spec.branch_of), spec.branch_step, run_dir)
    result = train_run(spec, run_dir, extra)
    if result is None:
      return False
    if spec.parent:
      parent = read_json(study.path(spec.parent_kind, spec.parent, "result.json"))
      result.update(
        parent=spec.parent, parent_kind=spec.parent_kind, parent_train_flops=parent["train_flops"]
      )
    write_json(os.path.join(run_dir, "result.json"), {**result, "kind": kind})
    return True

  after = ((f"{spec.parent_kind} {spec.parent}",) if spec.parent else ()) + (
    (f"{kind} {spec.branch_of}",) if spec.branch_of else ()
  )
  # A branch trains only its cooldown (the progress bar's work, not its training FLOPs).
  work = cost["train_flops"] * (1 - spec.branch_step / spec.steps if spec.branch_of else 1)
  return Unit(
    unit_name(kind, spec),
    work,
    (os.path.join(run_dir, "result.json"),),
    run,
    in_worker=True,
    after=after,
  )


def training_specs(plan) -> list[tuple[str, RunSpec]]:
  """(stage, run) of every training run of the study: pretraining, adaptation, finetuning."""
  return (
    [("pretrain", spec) for spec in plan.pretrain_runs()]
    + [("adapt", spec) for spec in plan.adapt_runs()]
    + [("finetune", spec) for spec in plan.finetune_runs()]
  )


def unit_name(kind: str, spec: RunSpec) -> str:
  return f"{kind} {spec.name}"


def _scoring_unit(study: Study, kind: str, spec: RunSpec, add_eos: bool, work: float) -> Unit:
  return Unit(
    f"score {kind} {spec.name}",
    work,
    (analyses.harness_path(study, spec),),
    lambda: analyses.score_run(study, kind, spec, add_eos),
    in_worker=True,
    after=(unit_name(kind, spec),),
  )


def _scoring_work(study: Study) -> float:
  """One model's harness work, roughly: ~48 tokens per exemplar or question, 4 options,
  over the study's items, in the largest DecLLM's forward FLOPs."""
  plan = study.plan
  items = sum(len(t.examples) for t in analyses.study_tasks(plan))
  shots_tokens = sum((k + 1) for k in plan.shots) * 48 * 4 * items
  return shots_tokens * _forward_flops_per_token(study)


def worker_unit(study: Study, name: str) -> Unit | None:
  """The training or scoring unit called `name` (e.g. "pretrain decllm_s_250_s0"), or None."""
  for kind, spec in training_specs(study.plan):
    if unit_name(kind, spec) == name:
      return _training_unit(study, kind, spec)
  for _, kind, spec, add_eos in analyses.harness_models(study.plan):
    if name == f"score {kind} {spec.name}":
      return _scoring_unit(study, kind, spec, add_eos, 0.0)
  return None


def worker_units(study: Study) -> list[Unit]:
  """Every training unit, then every scoring unit."""
  work = _scoring_work(study)
  return [_training_unit(study, kind, spec) for kind, spec in training_specs(study.plan)] + [
    _scoring_unit(study, kind, spec, add_eos, work)
    for _, kind, spec, add_eos in analyses.harness_models(study.plan)
  ]


def critical_paths(units: list[Unit]) -> dict[str, float]:
  """Each unit's work plus the most work of any chain of units that wait on it. Starting
  the ready unit with the longest chain first (list scheduling) keeps every worker busy
  to the end: the largest DecLLM, which adaptation, finetuning and scoring wait on,
  goes before the small sizes."""
  waiting_on: dict[str, list[Unit]] = {}
  for unit in units:
    for name in unit.after:
      waiting_on.setdefault(name, []).append(unit)
  paths: dict[str, float] = {}

  def path(unit: Unit) -> float:
    if unit.name not in paths:
      paths[unit.name] = unit.flops + max(map(path, waiting_on.get(unit.name, [])), default=0.0)
    return paths[unit.name]

  for unit in units:
    path(unit)
  return paths


def _forward_flops_per_token(study: Study) -> float:
  """Of the largest DecLLM: the analysis stages' work is priced in its forward passes."""
  parse_run(study.plan.source_run("decllm", study.plan.seeds[0]), study.path("pretrain", "unused"))
  cfg = models.from_gin().config
  length = study.plan.training_length
  return flops.forward_flops(cfg, "decllm", 0, length) / length


def units(study: Study) -> list[Unit]:
  """Every unit of the study, in the order it runs."""
  plan = study.plan
  per_token = _forward_flops_per_token(study)
  length = plan.training_length
  windows_tokens = plan.extrapolation_windows * length * sum(plan.extrapolation_factors)
  out = worker_units(study)
  out.append(
    Unit(
      "scaling fits",
      per_token,
      (study.path("scaling", "fits.json"),),
      lambda: analyses.run_scaling(study),
    )
  )
  out.append(
    Unit(
      "harness",
      per_token,
      (study.path("harness", "harness.json"),),
      lambda: analyses.run_harness(study),
    )
  )
  out.append(
    Unit(
      "extrapolation",
      2 * windows_tokens * per_token,
      (study.path("extrapolation", "extrapolation.json"),),
      lambda: analyses.run_extrapolation(study),
    )
  )
  out.append(
    Unit(
      "attention",
      2 * plan.attention_windows * length * per_token,
      (study.path("attention", "locality.json"),),
      lambda: analyses.run_attention(study),
    )
  )
  return out
