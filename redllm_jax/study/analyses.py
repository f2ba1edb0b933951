"""The study's analysis stages: scaling fits, the harness, length extrapolation, attention.

Each reads the finished training runs of a `stages.Study` and writes its outputs
under the study directory (a stage is skipped once its outputs exist). Every
analysis runs once per seed (on that seed's models, each seed's result kept in its
own file, so a killed stage redoes only the seeds it had not finished) and is then
summarized over seeds: mean ± seed-to-seed SE (`stats`).
"""

import dataclasses
import json
from typing import Any, Callable

import numpy as np

from redllm_jax import flops
from redllm_jax.evaluation import attention, extrapolation, harness, windows
from redllm_jax.study import scaling, scores, seed_summaries, stats
from redllm_jax.study.plan import ARCHITECTURES
from redllm_jax.study.directory import Study, read_json, write_json

PLAIN_TEXT_GROUPS = ("continuation", "cloze")  # `scores.GROUPS` read as plain text


def _per_seed(study: Study, stage: str, compute: Callable[[int], Any]) -> dict[int, Any]:
  """{seed: compute(seed)}, each cached in <stage>/seeds/s<seed>.json."""
  out = {}
  for seed in study.plan.analysis_seeds:
    path = study.path(stage, "seeds", f"s{seed}.json")
    if read_json(path) is None:
      write_json(path, compute(seed))
    out[seed] = read_json(path)
  return out


def _pretrained(study: Study, seed: int) -> dict[str, tuple[Any, Any]]:
  return {arch: study.load("pretrain", study.plan.source_run(arch, seed)) for arch in ARCHITECTURES}


def harness_models(plan) -> list[tuple[str, str, Any, bool]]:
  """(model name, run kind, RunSpec, add_eos) of every scored (model, seed): the largest
  pretrained pair, the adapted RedLLMs before tuning, every finetuned model. add_eos: a
  finetuned model reads the instruction families in the FLAN format (EOS-ended);
  `score_run` reads the plain-text tasks plain for every model."""
  pretrained = [
    (f"{a}/pretrained", "pretrain", plan.source_run(a, s), False)
    for a in ARCHITECTURES
    for s in plan.analysis_seeds
  ]
  adapted = [(f"{s.architecture}/adapted", "adapt", s, False) for s in plan.adapt_runs()]
  return (
    pretrained
    + adapted
    + [(f"{s.architecture}/flan", "finetune", s, True) for s in plan.finetune_runs()]
  )


def study_tasks(plan) -> list[harness.Task]:
  """The harness tasks but the excluded ones, each cut to the plan's cap unless it is
  one read whole."""
  cap = plan.harness_max_examples
  return [
    t
    if not cap or t.name in plan.harness_uncapped
    else dataclasses.replace(t, examples=t.examples[:cap])
    for t in harness.load_tasks(plan.harness_tasks)
    if t.name not in plan.harness_excluded
  ]


def harness_path(study: Study, spec) -> str:
  """One scored model's harness results (`score_run`)."""
  return study.path("harness", "seeds", f"{spec.name}.json")


def prompt_formats(
  tasks: list[harness.Task], manifest: dict, add_eos: bool
) -> dict[bool, list[harness.Task]]:
  """{add_eos: tasks}: the plain-text tasks (continuation, cloze: text as pretraining shows
  it) are read plain by every model, so that pretrained -> tuned compares weights, not
  prompt formats (the l DecLLM's cloze_mc read in the FLAN format: 9.6% pretrained, 12.9%
  tuned; read plain: 29.3% and 29.7%, 2026-12-07 run, seed 0); the others with `add_eos`."""
  out: dict[bool, list[harness.Task]] = {}
  for task in tasks:
    plain = scores.group_of(task.name, manifest.get(task.name, {})) in PLAIN_TEXT_GROUPS
    out.setdefault(add_eos and not plain, []).append(task)
  return out


def score_run(study: Study, kind: str, spec, add_eos: bool) -> bool:
  """The harness's zero- and few-shot scores (through lm-eval) of one trained run, read
  with its checkpoint's own vocabulary, each task in its prompt format
  (`prompt_formats`); a unit of its own, so that workers score each model while others
  train."""
  plan = study.plan
  tasks = study_tasks(plan)
  # The few-shot exemplars are drawn with the run's seed: part of what a seed varies.
  settings = harness.Settings(add_eos=add_eos, seed=spec.seed)
  lm = harness.make_lm(study.path(kind, spec.name), settings, plan.harness_vocab)
  results: dict[str, Any] = {}
  for eos, group in prompt_formats(
    tasks, scores.load_manifest(plan.harness_tasks), add_eos
  ).items():
    lm.add_eos = eos
    results.update(harness.evaluate(lm, group, plan.shots, settings, plan.harness_mc_metric))
  results["average"] = float(np.mean([r["score"] for r in results.values() if isinstance(r, dict)]))
  write_json(
    harness_path(study, spec),
    {
      "results": results,
      "inference_flops": flops.inference_flops(
        lm.model.config,
        lm.model.architecture,
        plan.inference_prompt_length,
        plan.inference_output_length,
      ),
    },
  )
  return True


def run_harness(study: Study) -> bool:
  """The harness summary over every scored model and seed (`score_run`'s files)."""
  plan = study.plan
  tasks = study_tasks(plan)
  info = scores.task_info(tasks, scores.load_manifest(plan.harness_tasks), harness.chance_score)
  per_seed: dict[str, dict[str, dict[str, float]]] = {}
  per_item: dict[str, dict[str, dict[str, list[float]]]] = {}
  shortcut: dict[str, dict[str, list[float]]] = {}
  costs: dict[str, float] = {}
  for name, _, spec, _ in harness_models(plan):
    scored = read_json(harness_path(study, spec))
    results = {k: r for k, r in scored["results"].items() if isinstance(r, dict)}
    per_seed.setdefault(name, {})[str(spec.seed)] = {k: r["score"] for k, r in results.items()}
    per_item.setdefault(name, {})[str(spec.seed)] = {
      k: r["item_scores"] for k, r in results.items() if "item_scores" in r
    }
    for key, r in results.items():
      if "unconditional_shortcut" in r:
        shortcut.setdefault(name, {}).setdefault(key, []).append(
          max(r["unconditional_shortcut"].values())
        )
    costs[name] = scored["inference_flops"]
  # A model's own context-free choice (its best direction, mean over seeds) floors its tasks.
  model_floors = {
    n: {k: float(np.mean(v)) for k, v in by_key.items()} for n, by_key in shortcut.items()
  }
  summary = scores.summarize(per_seed, info, plan.shots, model_floors, per_item)
  write_json(
    study.path("harness", "harness.json"),
    {
      "summary": summary,
      "per_seed": per_seed,
      "per_item": per_item,
      "inference_flops": costs,
      "shots": list(plan.shots),
      "seeds": list(plan.analysis_seeds),
      "tasks": info,
      "model_floors": model_floors,
      "continuation_bar": scores.continuation_bar(summary, list(summary), plan.shots),
    },
  )
  keys = [f"{t}@{k}shot" for k in plan.shots for t in (*info, *scores.GROUPS, "downstream")]
  with open(study.path("harness", "harness.md"), "w") as f:
    f.write(scores.table(summary, keys) + "\n")
  scores.plot_pareto(summary, costs, plan.shots, study.path("harness", "pareto.png"))
  return True


def run_extrapolation(study: Study) -> bool:
  plan = study.plan
  texts, vocab = windows.task_texts(plan.in_domain)
  factors = list(plan.extrapolation_factors)
  token_windows = windows.token_windows(
    texts, vocab.encode, plan.training_length * max(factors), plan.extrapolation_windows
  )

  def one_seed(seed: int) -> dict:
    return extrapolation.run(
      _pretrained(study, seed),
      token_windows,
      plan.training_length,
      factors,
      study.path("extrapolation", f"s{seed}"),
    )["results"]

  seed_summaries.write_extrapolation_summary(
    _per_seed(study, "extrapolation", one_seed), plan.training_length, study.path("extrapolation")
  )
  return True


def run_attention(study: Study) -> bool:
  plan = study.plan
  texts, vocab = windows.task_texts(plan.in_domain)
  token_windows = windows.token_windows(
    texts, vocab.encode, plan.training_length, plan.attention_windows
  )
  offsets = attention.default_query_offsets(plan.training_length)

  def one_seed(seed: int) -> dict:
    return {
      name: attention.analyze(model, params, token_windows, offsets)
      for name, (model, params) in _pretrained(study, seed).items()
    }

  seed_summaries.write_attention_summary(
    _per_seed(study, "attention", one_seed), study.path("attention")
  )
  return True


def run_scaling(study: Study) -> bool:
  # The ladder's seeds: the largest pair's extra seeds have one run each, nothing to fit.
  results = [
    study.result("pretrain", spec)
    for spec in study.plan.pretrain_runs()
    if spec.seed in study.plan.seeds
  ]
  scaling.write_scaling(results, study.plan, study.path("scaling"))
  return True


def outputs(study: Study) -> dict:
  """Every stage's JSON outputs, as `findings.all_findings` and the report read them."""
  plan = study.plan
  tuned = [study.result("finetune", s) for s in plan.finetune_runs()]
  adapted = [study.result("adapt", s) for s in plan.adapt_runs()]
  # A run's seconds over every invocation (timings.json): a resumed run's result.json
  # times only its last one.
  timings = read_json(study.path("timings.json")) or {}
  trained = [
    (s, {**r, "seconds": timings.get(f"{kind} {s.name}", r["seconds"])})
    for kind, specs in (
      ("pretrain", plan.pretrain_runs()),
      ("adapt", plan.adapt_runs()),
      ("finetune", plan.finetune_runs()),
    )
    for s in specs
    for r in [study.result(kind, s)]
  ]
  task = _finetune_eval(tuned[0]["metrics"])[0]
  finetune: dict[str, list[float]] = {}
  for r in tuned:
    finetune.setdefault(r["architecture"], []).append(_finetune_eval(r["metrics"])[1])
  return {
    "scaling": read_json(study.path("scaling", "fits.json")),
    "harness": read_json(study.path("harness", "harness.json")),
    "extrapolation": read_json(study.path("extrapolation", "extrapolation.json")),
    "locality": read_json(study.path("attention", "locality.json")),
    "cross_attention": read_json(study.path("attention", "cross_attention.json")),
    "finetune": {n: stats.mean_se(v) for n, v in finetune.items()},
    "finetune_task": task,
    "vocab_size": tuned[0]["config"]["vocab_size"],
    "throughput": training_throughput(
      trained, read_json(study.path("ceiling.json")), read_json(study.path("wallclock.json"))
    ),
    "adapt": adapted,
    "wallclock": read_json(study.path("wallclock.json")),
    "overhead": overhead(study, timings),
  }


def _step_seconds(metrics_path: str) -> float:
  """A run's median logged training step time (the `step_time` of its metrics rows)."""
  with open(metrics_path) as f:
    times = [row["step_time"] for row in map(json.loads, f) if "step_time" in row]
  return float(np.median(times)) if times else 0.0


def overhead(study: Study, timings: dict[str, float]) -> dict[str, Any]:
  """Time the training units spent outside their training steps (start-up, compiling,
  input pipelines, evaluation, checkpoints): each unit's seconds less its steps times
  its median step time; its share of every unit's seconds (scoring included)."""
  plan, outside, units = study.plan, 0.0, 0
  for kind, specs in (
    ("pretrain", plan.pretrain_runs()),
    ("adapt", plan.adapt_runs()),
    ("finetune", plan.finetune_runs()),
  ):
    for spec in specs:
      seconds = timings.get(f"{kind} {spec.name}")
      result = study.result(kind, spec)
      if seconds is None or result is None:
        continue
      trained = result["steps"] - spec.branch_step
      outside += seconds - trained * _step_seconds(study.path(kind, spec.name, "metrics.jsonl"))
      units += 1
  total = sum(timings.values())
  return {
    "training_units": units,
    "seconds_outside_steps": outside,
    "per_unit": outside / max(units, 1),
    "share": outside / total if total else 0.0,
    "scoring_seconds": sum(v for k, v in timings.items() if k.startswith("score ")),
  }


def training_throughput(
  trained: list[tuple[Any, dict]], ceiling: Any, wallclock: Any
) -> dict[str, Any]:
  """The study's achieved model FLOP/s over its (RunSpec, result) training runs: FLOPs
  computed over seconds spent, summed, and its share of the measured matmul ceiling (None
  if unmeasured). A shorter budget branched off a longer run (`RunSpec.branch_step`)
  computed only its cooldown, though its `train_flops` prices the whole budget."""
  computed = sum(r["train_flops"] * (r["steps"] - s.branch_step) / r["steps"] for s, r in trained)
  achieved = computed / sum(r["seconds"] for _, r in trained)
  return {
    "flops_per_s": achieved,
    "runs": len(trained),
    "computed_flops": computed,
    "workers": (wallclock or {}).get("workers", 1),
    "ceiling": ceiling,
    "fraction": achieved / ceiling["flops_per_s"] if ceiling else None,
  }


def _finetune_eval(metrics: dict[str, float]) -> tuple[str, float]:
  """(task, target perplexity) of the finetuning eval: its first `<task>/perplexity`."""
  key = min(k for k in metrics if k.endswith("/perplexity") and "second_half" not in k)
  return key.split("/")[0], metrics[key]
