"""The study's analysis stages: scaling fits, the harness, length extrapolation, attention.

Each reads the finished training runs of a `stages.Study` and writes its outputs
under the study directory (a stage is skipped once its outputs exist).
"""
from typing import Any

import numpy as np

from redllm_jax import flops
from redllm_jax.evaluation import attention, extrapolation, harness, windows
from redllm_jax.study import scaling
from redllm_jax.study.plan import ARCHITECTURES
from redllm_jax.study.directory import Study, read_json, write_json


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


def outputs(study: Study) -> dict:
  """Every stage's JSON outputs, as `findings.all_findings` and the report read them."""
  plan = study.plan
  tuned = {s.architecture: study.result("finetune", s) for s in plan.finetune_runs()}
  return {
      "scaling": read_json(study.path("scaling", "fits.json")),
      "harness": read_json(study.path("harness", "harness.json")),
      "extrapolation": read_json(study.path("extrapolation", "extrapolation.json")),
      "locality": read_json(study.path("attention", "locality.json")),
      "cross_attention": read_json(study.path("attention", "cross_attention.json")),
      "finetune": {n: _finetune_eval(r["metrics"])[1] for n, r in tuned.items()},
      "finetune_task": _finetune_eval(next(iter(tuned.values()))["metrics"])[0],
      "vocab_size": next(iter(tuned.values()))["config"]["vocab_size"],
  }


def _finetune_eval(metrics: dict[str, float]) -> tuple[str, float]:
  """(task, target perplexity) of the finetuning eval: its first `<task>/perplexity`."""
  key = min(k for k in metrics if k.endswith("/perplexity") and "second_half" not in k)
  return key.split("/")[0], metrics[key]
