"""The study's stages, each a unit of work with outputs under the study directory.

A unit is skipped when its outputs exist, so a killed study picks up where it
stopped (a killed training run also resumes from its own checkpoints).
Units, in order: every pretraining run; the adaptation runs; the finetuning runs;
then the analyses (`analyses.py`): the scaling fits; the harness before and after
finetuning; length extrapolation; attention. Training units may run in worker
processes (`workers.py`), each once the unit it starts from is done; the analyses
run after every training unit.
"""
import dataclasses
import glob
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
  trains: bool = False  # a training run: may run in a worker process
  after: tuple[str, ...] = ()  # units that must be done first

  def done(self) -> bool:
    return all(os.path.exists(p) for p in self.outputs)


def _training_unit(study: Study, kind: str, spec: RunSpec) -> Unit:
  run_dir = study.path(kind, spec.name)
  extra = study.checkpoint_bindings(spec)
  parse_run(spec, run_dir, extra)
  model = models.from_gin()
  cost = training_cost(model, gin.query_parameter("%TRAIN_STEPS"),
                       gin.query_parameter("%BATCH_SIZE"),
                       dict(gin.query_parameter("%TASK_FEATURE_LENGTHS")))

  def run() -> bool:
    if spec.branch_of:
      checkpoints.branch(study.path(kind, spec.branch_of), spec.branch_step, run_dir)
    result = train_run(spec, run_dir, extra)
    if result is None:
      return False
    if spec.parent:
      parent = read_json(study.path(spec.parent_kind, spec.parent, "result.json"))
      result.update(parent=spec.parent, parent_kind=spec.parent_kind,
                    parent_train_flops=parent["train_flops"])
    write_json(os.path.join(run_dir, "result.json"), {**result, "kind": kind})
    return True

  after = ((f"{spec.parent_kind} {spec.parent}",) if spec.parent else ()) + (
      (f"{kind} {spec.branch_of}",) if spec.branch_of else ())
  # A branch trains only its cooldown (the progress bar's work, not its training FLOPs).
  work = cost["train_flops"] * (1 - spec.branch_step / spec.steps if spec.branch_of else 1)
  return Unit(unit_name(kind, spec), work,
              (os.path.join(run_dir, "result.json"),), run, trains=True, after=after)


def training_specs(plan) -> list[tuple[str, RunSpec]]:
  """(stage, run) of every training run of the study: pretraining, adaptation, finetuning."""
  return ([("pretrain", spec) for spec in plan.pretrain_runs()]
          + [("adapt", spec) for spec in plan.adapt_runs()]
          + [("finetune", spec) for spec in plan.finetune_runs()])


def unit_name(kind: str, spec: RunSpec) -> str:
  return f"{kind} {spec.name}"


def training_unit(study: Study, name: str) -> Unit | None:
  """The training unit called `name` (e.g. "pretrain decllm_s_250_s0"), or None."""
  return next((_training_unit(study, kind, spec) for kind, spec in training_specs(study.plan)
               if unit_name(kind, spec) == name), None)


def training_units(study: Study) -> list[Unit]:
  return [_training_unit(study, kind, spec) for kind, spec in training_specs(study.plan)]


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
  # Harness work, roughly: ~48 tokens per exemplar or question, 4 options, ~300 items
  # per task (or the plan's cap), per task file and model scored.
  tasks = len(glob.glob(plan.harness_tasks))
  shots_tokens = (sum((k + 1) for k in plan.shots) * 48 * 4 * tasks
                  * (plan.harness_max_examples or 300))
  out = training_units(study)
  out.append(Unit("scaling fits", per_token, (study.path("scaling", "fits.json"),),
                  lambda: analyses.run_scaling(study)))
  # Per seed: the pretrained pair, each adapted model before tuning, each finetuned one.
  models_scored = len(plan.seeds) * (2 + len(plan.adapt_experiments)
                                     + len(plan.finetune_experiments))
  out.append(Unit("harness", models_scored * shots_tokens * per_token,
                  (study.path("harness", "harness.json"),), lambda: analyses.run_harness(study)))
  out.append(Unit("extrapolation", 2 * windows_tokens * per_token,
                  (study.path("extrapolation", "extrapolation.json"),),
                  lambda: analyses.run_extrapolation(study)))
  out.append(Unit("attention", 2 * plan.attention_windows * length * per_token,
                  (study.path("attention", "locality.json"),), lambda: analyses.run_attention(study)))
  return out
