"""The study's stages, each a unit of work with outputs under the study directory.

A unit is skipped when its outputs exist, so a killed study picks up where it
stopped (a killed training run also resumes from its own checkpoints).
Units, in order: every pretraining run; the scaling fits; the finetuning runs; the
harness before and after finetuning; length extrapolation; attention analysis.
"""
import dataclasses
import json
import os
from typing import Any, Callable, Optional

import gin
import jax
import numpy as np

import redllm_jax_tasks  # noqa: F401  pylint: disable=unused-import  # the study's eval tasks
from redllm_jax import checkpoints, flops, models
from redllm_jax.evaluation import attention, extrapolation, harness, windows
from redllm_jax.study import scaling
from redllm_jax.study.plan import ARCHITECTURES, StudyPlan
from redllm_jax.study.runs import RunSpec, parse_run, train_run, training_cost


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
    """Finetuning starts from its parent pretraining run's final parameters."""
    if not spec.parent:
      return []
    return [f"INITIAL_CHECKPOINT_PATH = '{self.path('pretrain', spec.parent)}'"]


@dataclasses.dataclass(frozen=True)
class Unit:
  name: str
  flops: float  # estimated work, for the progress bar's ETA
  outputs: tuple[str, ...]  # the unit is done when all exist
  run: Callable[[], bool]  # False: interrupted (SIGTERM); rerun the study to resume

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
    result = train_run(spec, run_dir, extra)
    if result is None:
      return False
    write_json(os.path.join(run_dir, "result.json"), {**result, "kind": kind})
    return True

  return Unit(f"{kind} {spec.name}", cost["train_flops"],
              (os.path.join(run_dir, "result.json"),), run)


def _forward_flops_per_token(study: Study) -> float:
  """Of the largest DecLLM: the analysis stages' work is priced in its forward passes."""
  parse_run(study.plan.source_run("decllm"), study.path("pretrain", "unused"))
  cfg = models.from_gin().config
  length = study.plan.training_length
  return flops.forward_flops(cfg, "decllm", 0, length) / length


def _pretrained(study: Study) -> dict[str, tuple[Any, Any]]:
  return {arch: study.load("pretrain", study.plan.source_run(arch)) for arch in ARCHITECTURES}


def run_harness(study: Study) -> bool:
  """Zero- and few-shot scores (through lm-eval) of the pretrained pair and of every
  finetuned model, each read with its checkpoint's own vocabulary."""
  plan = study.plan
  tasks = harness.load_tasks(plan.harness_tasks, plan.harness_max_examples)
  results, costs = {}, {}
  # Pretrained models read plain continuations; finetuned ones the FLAN format (EOS-ended).
  for stage, kind, specs, add_eos in (
      ("pretrained", "pretrain", {a: plan.source_run(a) for a in ARCHITECTURES}, False),
      ("flan", "finetune", {s.architecture: s for s in plan.finetune_runs()}, True)):
    for arch, spec in specs.items():
      name = f"{arch}/{stage}"
      settings = harness.Settings(add_eos=add_eos, seed=plan.seed)
      lm = harness.make_lm(study.path(kind, spec.name), settings, plan.harness_vocab)
      results[name] = harness.evaluate(lm, tasks, plan.shots, settings,
                                       plan.harness_length_normalization)
      costs[name] = flops.inference_flops(lm.model.config, lm.model.architecture,
                                          plan.inference_prompt_length,
                                          plan.inference_output_length)
  write_json(study.path("harness", "harness.json"),
             {"results": results, "inference_flops": costs, "shots": list(plan.shots),
              "tasks": [t.name for t in tasks],
              "examples": {t.name: len(t.examples) for t in tasks},
              "chance": {t.name: harness.chance_score(t) for t in tasks}})
  with open(study.path("harness", "harness.md"), "w") as f:
    f.write(harness.format_table(results) + "\n")
  chance = float(np.mean([harness.chance_score(t) for t in tasks]))
  scaling.plot_pareto(results, costs, plan.shots, chance, study.path("harness", "pareto.png"))
  return True


def run_extrapolation(study: Study) -> bool:
  plan = study.plan
  texts, vocab = windows.task_texts(plan.in_domain)
  factors = list(plan.extrapolation_factors)
  token_windows = windows.token_windows(texts, vocab.encode,
                                        plan.training_length * max(factors),
                                        plan.extrapolation_windows)
  extrapolation.run(_pretrained(study), token_windows, plan.training_length, factors,
                    study.path("extrapolation"))
  return True


def run_attention(study: Study) -> bool:
  plan = study.plan
  texts, vocab = windows.task_texts(plan.in_domain)
  token_windows = windows.token_windows(texts, vocab.encode, plan.training_length,
                                        plan.attention_windows)
  offsets = attention.default_query_offsets(plan.training_length)
  results = {name: attention.analyze(model, params, token_windows, offsets)
             for name, (model, params) in _pretrained(study).items()}
  attention.write_outputs(results, study.path("attention"))
  return True


def run_scaling(study: Study) -> bool:
  results = [study.result("pretrain", spec) for spec in study.plan.pretrain_runs()]
  scaling.write_scaling(results, study.plan, study.path("scaling"))
  return True


def units(study: Study) -> list[Unit]:
  """Every unit of the study, in the order it runs."""
  plan = study.plan
  per_token = _forward_flops_per_token(study)
  length = plan.training_length
  windows_tokens = plan.extrapolation_windows * length * sum(plan.extrapolation_factors)
  # Harness work, roughly: ~48 tokens per exemplar or question, 4 options, ~100 items
  # per task, 2 tasks, 5 models.
  shots_tokens = sum((k + 1) for k in plan.shots) * 48 * 4 * (plan.harness_max_examples or 100)
  out = [_training_unit(study, "pretrain", spec) for spec in plan.pretrain_runs()]
  out.append(Unit("scaling fits", per_token, (study.path("scaling", "fits.json"),),
                  lambda: run_scaling(study)))
  out += [_training_unit(study, "finetune", spec) for spec in plan.finetune_runs()]
  out.append(Unit("harness", 5 * 2 * shots_tokens * per_token,
                  (study.path("harness", "harness.json"),), lambda: run_harness(study)))
  out.append(Unit("extrapolation", 2 * windows_tokens * per_token,
                  (study.path("extrapolation", "extrapolation.json"),),
                  lambda: run_extrapolation(study)))
  out.append(Unit("attention", 2 * plan.attention_windows * length * per_token,
                  (study.path("attention", "locality.json"),), lambda: run_attention(study)))
  return out
