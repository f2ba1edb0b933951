"""REPORT.md: every table of the study beside the paper's findings, figures linked."""

import dataclasses
import datetime
import importlib.metadata
import os
import platform
from typing import Any, Mapping, Sequence

import numpy as np

from redllm_jax import flops
from redllm_jax.config import TransformerConfig
from redllm_jax.study import scaling as scaling_lib
from redllm_jax.study import scores, stats
from redllm_jax.study import history
from redllm_jax.study.findings import RULES, Finding, p_text
from redllm_jax.study.plan import ARCHITECTURES, StudyPlan
from redllm_jax.study.scaling import DOMAINS, exponent_table, perplexity

PACKAGES = (
  "jax",
  "flax",
  "optax",
  "orbax-checkpoint",
  "seqio",
  "tensorflow",
  "sentencepiece",
  "gin-config",
  "numpy",
)
# The paper's setup (DESIGN.md section 2), for the "how this differs" table.
PAPER_SETUP = {
  "sizes": "150M to 8B parameters",
  "data": "RedPajama V1 (~1.6T tokens); Paloma out of domain; FLAN for tuning",
  "vocabulary": "32768",
  "length": "2048 (RedLLM 1024 + 1024)",
  "steps": "400K pretraining, batch 2048",
  "largest pair": "both 400K steps: RedLLM has half the target tokens and training FLOPs",
  "downstream": "13 tasks, zero- and few-shot",
  "precision": "bfloat16",
  "seeds": "not stated in DESIGN.md",
}


def versions() -> str:
  found = []
  for name in PACKAGES:
    try:
      found.append(f"{name} {importlib.metadata.version(name)}")
    except importlib.metadata.PackageNotFoundError:
      found.append(f"{name} (not installed)")
  return ", ".join(found)


def summary_table(findings: Sequence[Finding]) -> str:
  """The README's summary table: one row per finding, its verdict, p, robustness, effects."""
  lines = [
    "| # | finding | verdict | strength (p) | robustness | effect sizes ± SE across seeds |",
    "|---|---|---|---|---|---|",
  ]
  for i, f in enumerate(findings, 1):
    lines.append(
      f"| {i} | **{f.title}** | **{f.verdict}** | {p_text(f.p)} | {f.robustness} | {f.effects} |"
    )
  return "\n".join(lines)


def _findings_details(findings: Sequence[Finding]) -> str:
  blocks = []
  for i, f in enumerate(findings, 1):
    text = (
      f"**{i}. {f.title}** — **{f.verdict}** ({p_text(f.p)}; {f.robustness}).\n"
      f"- Paper: {f.paper}.\n- Effects: {f.effects}.\n- {f.measured.strip()}"
    )
    if f.decides:
      text += f"\n- What would decide it: {f.decides}"
    blocks.append(text)
  return "\n\n".join(blocks)


def _history(findings: Sequence[Finding]) -> str:
  """The rule changes since the previous committed run, and each verdict then and now."""
  changes = (
    "\n".join(
      f"{i}. {change}. *Why:* {why}." for i, (change, why) in enumerate(history.RULE_CHANGES, 1)
    )
    or "No change to the rules, the tasks or the design since."
  )
  rows = ["| # | finding | then | now |", "|---|---|---|---|"]
  rows += [
    f"| {i} | {f.title} | {then} ({strength}) | {f.verdict} ({p_text(f.p)}) |"
    for i, (f, (then, strength)) in enumerate(zip(findings, history.PREVIOUS_VERDICTS), 1)
  ]
  return (
    f"Changes since the previous committed run ({history.PREVIOUS_RUN}):\n\n{changes}"
    f"\n\n" + "\n".join(rows)
  )


def _points_table(points: Sequence[Mapping[str, Any]]) -> str:
  lines = [
    "| point | arch | size | steps | params | training FLOPs | target tokens | "
    "in-domain PPL | out-of-domain PPL | seconds | seeds |",
    "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for p in points:
    lines.append(
      f"| {p['point']} | {p['architecture']} | {p['size']} | {p['steps']} | "
      f"{p['params']:,} | {p['train_flops']:.3e} | {p['target_tokens']:,} | "
      f"{stats.fmt(p['in_domain'])} | {stats.fmt(p['out_of_domain'])} | "
      f"{stats.fmt(p['seconds'], 0)} | {p['in_domain']['n']} |"
    )
  return "\n".join(lines)


def _ratios_text(scaling: Mapping[str, Any]) -> str:
  parts = []
  for domain in DOMAINS:
    for axis, unit in (("flops", "training FLOPs"), ("params", "parameters")):
      r = scaling["ratios"][domain][axis]
      if r:
        parts.append(f"{domain} at {r['x']:.2e} {unit}: {stats.fmt(r['ratio'], 3)}")
  front = scaling["frontier"]
  shares = "; ".join(
    f"{d}: {stats.fmt(front['decllm_share'][d])} of each seed's frontier, "
    f"{front['decllm_share_on_means'][d]:.2f} of the means' frontier "
    f"({', '.join(front['on_means'][d])})"
    for d in DOMAINS
  )
  per_seed = "\n".join(
    f"- seed {seed}: " + "; ".join(f"{d}: {', '.join(f[d])}" for d in DOMAINS)
    for seed, f in front["per_seed"].items()
  )
  return (
    f"Fitted Red/Dec PPL (> 1: DecLLM better), mean ± SE over {len(scaling['seeds'])} "
    f"seeds' fits: " + "; ".join(parts) + f".\n\nDecLLM's share of the "
    f"compute-optimal frontier: {shares}. Each seed's frontier, cheapest first:\n\n" + per_seed
  )


def _extrapolation_table(extrap: Mapping[str, Any]) -> str:
  names = list(extrap["summary"])
  rows = extrap["summary"][names[0]]
  lines = [
    "| length | x training | " + " | ".join(f"{n} PPL" for n in names) + " |",
    "|---:|---:|" + "---:|" * len(names),
  ]
  for i, r in enumerate(rows):
    cells = [stats.fmt(extrap["summary"][n][i]["ppl"]) for n in names]
    lines.append(f"| {r['length']} | {r['ratio']:g} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + _boundary_text(extrap["summary"])


def _boundary_text(summary: Mapping[str, Any]) -> str:
  """At the training length: the second half's first token (RedLLM's first decoder
  target, tied to the text before it by cross-attention alone) against the rest."""
  rows = {name: next((r for r in rs if r["ratio"] == 1), {}) for name, rs in summary.items()}
  if not all("first_token_ppl" in r for r in rows.values()):
    return ""
  parts = [
    f"{name} {stats.fmt(r['first_token_ppl'], 1)} (the rest {stats.fmt(r['rest_ppl'], 1)})"
    for name, r in rows.items()
  ]
  return (
    "\n\nPPL of the second half's first token, at the training length: "
    + "; ".join(parts)
    + ". It is RedLLM's first decoder target, which only cross-attention ties to the text"
    " before it; the harness's continuation and cloze answers start there."
  )


def _attention_text(locality: Mapping[str, Any], cross: Mapping[str, Any]) -> str:
  lines = ["| model | query offset | attention mass within 1/8 of the span |", "|---|---:|---:|"]
  for name, curves in locality["locality"].items():
    for j, c in curves.items():
      lines.append(f"| {name} | +{j} | {stats.fmt(c['local_mass'], 3)} |")
  if cross:
    lines.append(
      f"\nRedLLM cross-attention: top-{cross['top_keys']} key overlap across queries "
      f"{stats.fmt(cross['top_key_overlap'], 3)} (random sets "
      f"{stats.fmt(cross['random_overlap'], 3)}), entropy "
      f"{stats.fmt(cross['entropy_ratio'], 3)} of uniform."
    )
  return "\n".join(lines)


def _throughput_line(throughput: Mapping[str, Any]) -> str:
  achieved = throughput["flops_per_s"]
  ceiling = throughput["ceiling"]
  if not ceiling:
    return (
      f"Achieved model FLOP/s over the {throughput['runs']} training runs: "
      f"{achieved / 1e9:.1f} GFLOP/s (no `ceiling.json`: the matmul ceiling was not "
      f"measured for this study)."
    )
  workers = throughput["workers"]
  side = (
    f" Runs trained {workers} at a time, each in a single-threaded worker: the "
    f"machine's rate was up to {workers}x this."
    if workers > 1
    else ""
  )
  return (
    f"Achieved model FLOP/s over the {throughput['runs']} training runs (the training "
    f"FLOPs they computed over the sum of their seconds): {achieved / 1e9:.1f} GFLOP/s, "
    f"**{100 * throughput['fraction']:.1f}%** of the f32 matmul ceiling "
    f"({ceiling['flops_per_s'] / 1e9:.1f} GFLOP/s, measured {ceiling['measured']})." + side
  )


def _overhead_line(overhead: Mapping[str, Any]) -> str:
  return (
    f"Fixed overhead: the {overhead['training_units']} training units spent "
    f"{overhead['seconds_outside_steps'] / 60:.1f} min outside their training steps "
    f"(start-up, compiles, input pipelines, evaluation, checkpoints; "
    f"{overhead['per_unit']:.0f} s a unit), **{100 * overhead['share']:.1f}%** of all "
    f"unit time; scoring units took {overhead['scoring_seconds'] / 60:.1f} min."
  )


def _harness_section(harness: Mapping[str, Any]) -> str:
  summary, shots = harness["summary"], harness["shots"]
  bar = harness["continuation_bar"]
  if bar:
    rows = [
      "| model | shots | score | item SE | floor | z over the floor | >= 3 "
      "| z with the binomial item SE (the rule before) |",
      "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    rows += [
      f"| {b['model']} | {b['shots']} | {stats.fmt(b, 1, 100)} | {100 * b['item_se']:.2f} "
      f"| {100 * b['floor']:.1f} | {b['z']:.1f} | {'yes' if b['passes'] else '**no**'} "
      f"| {b['z_binomial']:.1f} |"
      for b in bar
    ]
    passed = all(
      b["passes"] for b in bar if b["model"] in ("decllm/pretrained", "redllm/pretrained")
    )
    check = (
      f"The bar: the largest pretrained models at least 3 SE above the floor (the "
      f"best shortcut) on `{scores.CONTINUATION}` (SE: seed and item noise together, "
      f"hypot; the item SE over items of each item's mean over seeds): "
      f"**{'met' if passed else 'not met'}**.\n\n" + "\n".join(rows)
    )
  else:
    check = f"`{scores.CONTINUATION}` was not run: the bar cannot be checked."
  check += "\n\n" + _tuning_table(harness)
  parts = [check]
  for group in (*scores.GROUPS, "downstream"):
    keys = [f"{group}@{k}shot" for k in shots]
    if all(k in next(iter(summary.values())) for k in keys):
      members = scores.group_members(harness["tasks"], group)
      parts.append(
        f"**{group}** ({', '.join(f'`{m}`' for m in members)}):\n\n" + scores.table(summary, keys)
      )
  return "\n\n".join(parts)


def _tuning_table(harness: Mapping[str, Any]) -> str:
  """Each architecture's pretrained -> tuned score per task and group, and a call-out for
  a tuned model below its floor on the held-out families."""
  summary, pairs = (
    harness["summary"],
    [
      ("decllm/pretrained", "decllm/flan"),
      ("redllm/pretrained", "redllm/flan"),
      ("decllm/pretrained", "decllm_biattn/flan"),
    ],
  )
  pairs = [p for p in pairs if all(m in summary for m in p)]
  if not pairs:
    return ""
  keys = [k for k in summary[pairs[0][1]] if not k.startswith("other@")]
  lines = [
    "| task or group @ shots | " + " | ".join(f"{a} -> {b}" for a, b in pairs) + " |",
    "|---|" + "---|" * len(pairs),
  ]
  below = []
  for key in keys:
    cells = []
    for before, after in pairs:
      x, y = summary[before][key], summary[after][key]
      cells.append(f"{100 * x['mean']:.1f} -> {100 * y['mean']:.1f} (floor {100 * y['floor']:.1f})")
      if key.startswith("held-out families") and y["mean"] < y["floor"]:
        z = (y["mean"] - y["floor"]) / scores.total_se(y)
        why = (
          "within noise of it: the tuned model answers the held-out families at chance"
          if z > -2
          else "more than 2 SE below it: tuning taught an answer "
          "habit that the held-out labels contradict"
        )
        below.append(
          f"{after} on {key}: {100 * y['mean']:.1f} < floor "
          f"{100 * y['floor']:.1f}, z {z:.1f}, {why}"
        )
    lines.append(f"| {key} | " + " | ".join(cells) + " |")
  note = (
    "Tuned models below their floor on the held-out families (SE: seeds and items): "
    + "; ".join(below)
    + "."
    if below
    else "No tuned model is below its floor on the held-out families."
  )
  return (
    "Tuning, pretrained -> tuned (means over seeds, %; tuning mixes pretraining text "
    "into half its examples, `demo1k_flan_families_rehearsal`):\n\n"
    + "\n".join(lines)
    + "\n\n"
    + note
  )


def _adaptation_section(plan: StudyPlan, outputs: Mapping[str, Any]) -> str:
  adapted, scaling = outputs.get("adapt") or [], outputs["scaling"]
  if not adapted:
    return "The plan has no adaptation runs: this section is omitted."
  per_seed_fits = scaling["seed_fits"]
  points: dict[str, list] = {}
  for r in adapted:
    points.setdefault(r["point"], []).append(r)
  lines = [
    "| adapted model | domain | total training FLOPs (pretraining + adaptation) | "
    "adapted PPL | RedLLM from scratch, read off its fit | DecLLM, read off its fit | "
    "inference FLOPs per sequence |",
    "|---|---|---:|---:|---:|---:|---:|",
  ]
  for point, runs in points.items():
    total = [r["train_flops"] + r["parent_train_flops"] for r in runs]
    cost = flops.inference_flops(
      _config(runs[0]), "redllm", plan.inference_prompt_length, plan.inference_output_length
    )
    for domain in DOMAINS:
      read = {}
      # The ladder's seeds have fits; the largest pair's extra seeds do not.
      fitted = [(r, t) for r, t in zip(runs, total) if str(r["seed"]) in per_seed_fits]
      for arch in ARCHITECTURES:
        values = [per_seed_fits[str(r["seed"])][domain]["flops"][arch] for r, _ in fitted]
        read[arch] = (
          "n/a"
          if not values or any(v is None for v in values)
          else stats.fmt(
            stats.mean_se([v["a"] * t ** -v["b"] for v, (_, t) in zip(values, fitted)])
          )
        )
      task = scaling["tasks"][domain]
      # An adaptation run evaluates what its gin's EVAL_TASKS say: maybe not this domain.
      ppl = (
        "not evaluated"
        if any(f"{task}/perplexity" not in r["metrics"] for r in runs)
        else stats.fmt(stats.mean_se([perplexity(r["metrics"], task) for r in runs]))
      )
      lines.append(
        f"| {point} | {domain} | {np.mean(total):.3e} | {ppl} | "
        f"{read['redllm']} | {read['decllm']} | {cost:.3e} |"
      )
  scored = [
    m
    for m in (outputs.get("harness") or {}).get("summary", {})
    if m.split("/")[0] in {r["architecture"] for r in adapted}
  ]
  if scored:
    harness = outputs["harness"]
    keys = [f"{g}@{k}shot" for k in harness["shots"] for g in ("continuation", "downstream")]
    lines.append(
      "\nHarness scores of the adapted models before (`/adapted`) and after "
      "(`/flan`) tuning, beside the RedLLM and DecLLM trained from scratch:\n\n"
      + scores.table(
        {
          m: harness["summary"][m]
          for m in (*scored, "redllm/pretrained", "decllm/pretrained")
          if m in harness["summary"]
        },
        keys,
      )
    )
  return (
    "For each seed the largest DecLLM is adapted into a RedLLM and trained on with the "
    "prefix LM. The from-scratch figures are each ladder seed's pretraining FLOPs fit "
    "(all of that seed's runs of the architecture) read at that seed's adapted model's "
    f"total FLOPs, then mean ± SE over the ladder's seeds ({list(plan.seeds)}; the "
    f"adapted PPL is over all {len(next(iter(points.values())))} seeds).\n\n" + "\n".join(lines)
  )


def _config(result: Mapping[str, Any]) -> TransformerConfig:
  fields = {f.name for f in dataclasses.fields(TransformerConfig)}
  return TransformerConfig(**{k: v for k, v in result["config"].items() if k in fields})


def _differences(
  plan: StudyPlan,
  scaling: Mapping[str, Any],
  harness: Mapping[str, Any],
  vocab_size: int,
  finetune_task: str,
) -> str:
  rows = scaling["runs"]
  params = [r["params"] for r in rows]
  tokens = max(r["target_tokens"] for r in rows)
  items = sum(t["items"] for t in harness["tasks"].values())
  mine = {
    "sizes": f"{min(params):,} to {max(params):,} parameters ({len(plan.sizes)} sizes)",
    "data": f"`{plan.in_domain}` in domain, `{plan.out_of_domain}` out of domain, "
    f"`{finetune_task}` for tuning (docs/data.md)",
    "vocabulary": str(vocab_size),
    "length": f"{plan.training_length} (RedLLM {plan.training_length // 2} + "
    f"{plan.training_length // 2})",
    "steps": "budgets "
    + ", ".join(f"{size} {sorted(steps)}" for size, steps in plan.budgets.items())
    + "".join(
      f"; {arch} also {size} {sorted(steps)}"
      for arch, by_size in plan.extra_budgets.items()
      for size, steps in by_size.items()
    )
    + f" steps; at most {tokens:,} target tokens",
    "largest pair": _largest_pair_text(plan, rows),
    "downstream": f"{len(harness['tasks'])} tasks ({items} items), shots {list(plan.shots)}",
    "precision": "float32 on CPU",
    "seeds": f"{len(plan.seeds)} per ladder point ({list(plan.seeds)}), "
    f"{len(plan.analysis_seeds)} for the largest pair "
    f"({list(plan.analysis_seeds)}): parameters, data order, dropout, "
    "few-shot exemplars",
  }
  lines = ["| | paper | this miniature |", "|---|---|---|"]
  lines += [f"| {k} | {PAPER_SETUP[k]} | {mine[k]} |" for k in PAPER_SETUP]
  return "\n".join(lines)


def _largest_pair_text(plan: StudyPlan, rows: Sequence[Mapping[str, Any]]) -> str:
  """Each architecture's largest model: size, steps, training FLOPs and target tokens."""
  parts = []
  for arch in ARCHITECTURES:
    spec = plan.source_run(arch, plan.seeds[0])
    run = next((r for r in rows if r["point"] == spec.point), None)
    cost = (
      f", {run['train_flops']:.2e} FLOPs, {run['target_tokens']:,} target tokens" if run else ""
    )
    parts.append(f"{arch} {plan.largest} {spec.steps} steps{cost}")
  return "; ".join(parts)


def write_report(
  path: str,
  plan: StudyPlan,
  outputs: Mapping[str, Any],
  findings: Sequence[Finding],
  command: str,
  gin_files: Sequence[str],
  timings: Mapping[str, float],
) -> str:
  scaling, harness, extrap = outputs["scaling"], outputs["harness"], outputs["extrapolation"]
  unit_minutes = sum(timings.values()) / 60
  wall = outputs.get("wallclock") or {}
  n = len(plan.seeds)
  finetune = outputs["finetune"]
  text = (
    f"""# The paper in miniature: RedLLM vs DecLLM at CPU scale

Written {datetime.datetime.now().strftime("%Y-%m-%d %H:%M")} by `redllm_jax.study.reproduce`.
Wall-clock of all stages: **{wall.get("seconds", 0) / 60:.1f} min** over every invocation,
{wall.get("workers", 1)} training run(s) at a time; the units' own times sum to
{unit_minutes:.1f} min ({platform.machine()}, {os.cpu_count()} CPUs).
{_throughput_line(outputs["throughput"])}
{_overhead_line(outputs["overhead"])}
The paper is arXiv 2510.26622; its numbers appear only in the "paper" columns. Every
figure is the mean over its seeds ± its seed-to-seed standard error unless it says
otherwise: **n = {n} seeds** for the scaling ladder, **n = {len(plan.analysis_seeds)}**
for the largest pair (harness, extrapolation, attention).

## The seven findings

{summary_table(findings)}

{_findings_details(findings)}

**The rules**, declared before the run (`redllm_jax/study/findings.py`): {RULES}

{_history(findings)}

## How this miniature differs from the paper

{_differences(plan, scaling, harness, outputs["vocab_size"], outputs["finetune_task"])}

At this scale the models are far from converged and the vocabulary and data are
small, so the exponents measure the early part of training, not the paper's regime.

## 1. Scaling ladder

Every budget is its own learning-rate schedule, run to its end (`study/plan.py`). PPL is
over the second half of
each {plan.training_length}-token chunk, which RedLLM predicts from the first half
(DecLLM's whole-chunk PPL is in each run's `result.json`; every run is in
`scaling/runs.csv`).

{_points_table(scaling["points"])}

### Fitted exponents, PPL = a · X^-b

{exponent_table(scaling)}

Against FLOPs: every run of the architecture; against parameters: the runs
{scaling_lib.params_axis_label(scaling["runs"])}. Each seed is fitted on its own runs.

{_ratios_text(scaling)}

![scaling fits](scaling/scaling.png)

![compute-optimal frontier](scaling/frontier.png)

## 2. Finetuning and the downstream harness

Each seed's largest pair ({_largest_pair_text(plan, scaling["runs"])}) and DecLLM + BiAttn
(from the same DecLLM checkpoint) finetuned ({
      ", ".join(f"`{e}`" for e in plan.finetune_experiments.values())
    });
final eval PPL on the finetuning task's targets:
{", ".join(f"{name} {stats.fmt(v, 1)}" for name, v in finetune.items())}.
Every model reads the continuation and cloze tasks as plain text; the instruction
families are read plain by untuned models and in the FLAN format (EOS-ended inputs) by
finetuned ones (`analyses.prompt_formats`: pretrained -> tuned compares weights, not
formats). Scores are in %: mean ± seed SE, the item-level SE of the
mean score (over items, of each item's mean over seeds: `stats.item_se`) and chance
beside each. A task's score is exact match for generative
tasks and, for multiple choice, lm-eval's `{plan.harness_mc_metric}` (the plan's
`harness_mc_metric`; `acc_mutual_info` ranks the options by log P(option | prompt) -
log P(option), which a tiny model's preference for options likely on their own
otherwise swamps: `redllm_jax/study/plan.py` gives the figures); a group's score is the mean of its tasks. The findings compare the
**downstream** group: the continuation and cloze tasks, the miniature's HellaSwag and
LAMBADA (`redllm_jax/study/scores.py`).

{_harness_section(harness)}

Every task (`harness/harness.md`):

{open(os.path.join(os.path.dirname(path), "harness", "harness.md")).read()}
Inference FLOPs per sequence (prompt {plan.inference_prompt_length}, output
{plan.inference_output_length}): {
      ", ".join(f"{name} {v:.3e}" for name, v in harness["inference_flops"].items())
    }.

![quality vs inference FLOPs](harness/pareto.png)

## 3. Length extrapolation

{_extrapolation_table(extrap)}

![length extrapolation](extrapolation/extrapolation.png)

## 4. Attention

{_attention_text(outputs["locality"], outputs["cross_attention"])}

![locality decay](attention/locality.png)

![cross-attention](attention/cross_attention.png)

## 5. Adaptation: a pretrained DecLLM turned into a RedLLM

{_adaptation_section(plan, outputs)}

## Reproduce

```
{command}
```

Gin: {", ".join(f"`{g}`" for g in gin_files)}; each run's own gin files and bindings
are in its `result.json`. Seeds {list(plan.seeds)} (parameters, data order, dropout,
few-shot exemplars). Versions: {versions()}, Python {platform.python_version()}.

Wall-clock by unit (seconds, summed over invocations; a unit killed mid-way loses
the time of that invocation, which is not recorded):

| unit | seconds |
|---|---:|
"""
    + "\n".join(f"| {u} | {s:.0f} |" for u, s in timings.items())
    + "\n"
  )
  with open(path, "w") as f:
    f.write(text)
  return path
