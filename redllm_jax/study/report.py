"""REPORT.md: every table of the study beside the paper's findings, figures linked."""
import datetime
import importlib.metadata
import os
import platform
from typing import Any, Mapping, Sequence

from redllm_jax.study.findings import Finding
from redllm_jax.study.plan import StudyPlan
from redllm_jax.study.scaling import exponent_table

PACKAGES = ("jax", "flax", "optax", "orbax-checkpoint", "seqio", "tensorflow",
            "sentencepiece", "gin-config", "numpy")
# The paper's setup (DESIGN.md section 2), for the "how this differs" table.
PAPER_SETUP = {"sizes": "150M to 8B parameters", "data": "RedPajama V1 (~1.6T tokens); "
               "Paloma out of domain; FLAN for tuning", "vocabulary": "32768",
               "length": "2048 (RedLLM 1024 + 1024)", "steps": "400K pretraining, batch 2048",
               "downstream": "13 tasks, zero- and few-shot", "precision": "bfloat16"}


def versions() -> str:
  found = []
  for name in PACKAGES:
    try:
      found.append(f"{name} {importlib.metadata.version(name)}")
    except importlib.metadata.PackageNotFoundError:
      found.append(f"{name} (not installed)")
  return ", ".join(found)


def _findings_table(findings: Sequence[Finding]) -> str:
  lines = ["| # | finding | paper | this run | verdict | strength |", "|---|---|---|---|---|---|"]
  for i, f in enumerate(findings, 1):
    lines.append(f"| {i} | **{f.title}** | {f.paper} | {f.measured} | **{f.verdict}** "
                 f"| {f.strength} |")
  return "\n".join(lines)


def _runs_table(rows: Sequence[Mapping[str, Any]]) -> str:
  lines = ["| run | arch | size | steps | params | training FLOPs | target tokens | "
           "in-domain PPL | out-of-domain PPL | seconds |", "|---|---|---|---:|---:|---:|---:|"
           "---:|---:|---:|"]
  for r in rows:
    lines.append(f"| {r['name']} | {r['architecture']} | {r['size']} | {r['steps']} | "
                 f"{r['params']:,} | {r['train_flops']:.3e} | {r['target_tokens']:,} | "
                 f"{r['in_domain']:.1f} | {r['out_of_domain']:.1f} | {r['seconds']:.0f} |")
  return "\n".join(lines)


def _extrapolation_table(extrap: Mapping[str, Any]) -> str:
  names = list(extrap["results"])
  lengths = [s["length"] for s in extrap["results"][names[0]]["summary"]]
  lines = ["| length | x training | " + " | ".join(f"{n} PPL" for n in names) + " |",
           "|---:|---:|" + "---:|" * len(names)]
  for i, length in enumerate(lengths):
    cells = [f"{extrap['results'][n]['summary'][i]['ppl']:.2f}" for n in names]
    lines.append(f"| {length} | {length / extrap['training_length']:g} | " + " | ".join(cells)
                 + " |")
  return "\n".join(lines)


def _differences(plan: StudyPlan, scaling: Mapping[str, Any], harness: Mapping[str, Any],
                 vocab_size: int, finetune_task: str) -> str:
  rows = scaling["runs"]
  params = [r["params"] for r in rows]
  tokens = max(r["target_tokens"] for r in rows)
  mine = {"sizes": f"{min(params):,} to {max(params):,} parameters ({len(plan.sizes)} sizes)",
          "data": f"`{plan.in_domain}` in domain, `{plan.out_of_domain}` out of domain, "
                  f"`{finetune_task}` for tuning (docs/data.md)",
          "vocabulary": str(vocab_size),
          "length": f"{plan.training_length} (RedLLM {plan.training_length // 2} + "
                    f"{plan.training_length // 2})",
          "steps": f"budgets {sorted(plan.budgets)} steps; at most {tokens:,} target tokens",
          "downstream": f"{len(harness['tasks'])} tasks "
                        f"({sum(harness['examples'].values())} items), shots {list(plan.shots)}",
          "precision": "float32 on CPU"}
  lines = ["| | paper | this miniature |", "|---|---|---|"]
  lines += [f"| {k} | {PAPER_SETUP[k]} | {mine[k]} |" for k in PAPER_SETUP]
  return "\n".join(lines)


def write_report(path: str, plan: StudyPlan, outputs: Mapping[str, Any],
                 findings: Sequence[Finding], command: str, gin_files: Sequence[str],
                 timings: Mapping[str, float]) -> str:
  scaling, harness, extrap = outputs["scaling"], outputs["harness"], outputs["extrapolation"]
  total = sum(timings.values())
  finetune = outputs["finetune"]
  text = f"""# The paper in miniature: RedLLM vs DecLLM at CPU scale

Written {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} by `redllm_jax.study.reproduce`.
Wall-clock of all stages: **{total / 60:.1f} min** ({platform.machine()}, {os.cpu_count()} CPUs).
The paper is arXiv 2510.26622; its numbers appear only in the "paper" columns.

## The seven findings

{_findings_table(findings)}

Verdicts come from the figures below, by the rules in `redllm_jax/study/findings.py`;
strength is the measured effect over its standard error, whichever its sign (strong: 3
or more; weak: 1 to 3; under 1 the verdict is "inconclusive"). Harness findings are
also "inconclusive" while no model beats chance by more than one standard error.
Each run is one seed, so fits and frontiers carry no seed-to-seed error bar.

## How this miniature differs from the paper

{_differences(plan, scaling, harness, outputs["vocab_size"], outputs["finetune_task"])}

At this scale the models are far from converged and the vocabulary and data are
small, so the exponents measure the early part of training, not the paper's regime.

## 1. Scaling ladder

Every run is its own cosine schedule to its budget. PPL is over the second half of
each {plan.training_length}-token chunk, which RedLLM predicts from the first half
(DecLLM's whole-chunk PPL is in each run's `result.json`).

{_runs_table(scaling["runs"])}

### Fitted exponents, PPL = a · X^-b

{exponent_table(scaling["fits"])}

Against FLOPs: every run of the architecture; against parameters: the runs at
{max(plan.budgets)} steps.

![scaling fits](scaling/scaling.png)

![compute-optimal frontier](scaling/frontier.png)

## 2. Finetuning and the downstream harness

The largest pair ({plan.largest}, {max(plan.budgets)} steps) and DecLLM + BiAttn
(from the same DecLLM checkpoint) finetuned ({", ".join(f"`{e}`" for e in plan.finetune_experiments.values())});
final eval PPL on the finetuning task's targets:
{", ".join(f"{n} {v:.1f}" for n, v in finetune.items())}.
Pretrained models are prompted with plain continuations, finetuned ones in the FLAN
format (EOS-ended inputs). Every metric is in %. A task's score, which the
**average** row and the findings use, is exact match for generative tasks and
{"length-normalised " if plan.harness_length_normalization else ""}accuracy for
multiple choice (lm-eval's {"`acc_norm`: options ranked by log-likelihood per character"
if plan.harness_length_normalization else "`acc`: options ranked by log-likelihood"}); F1 and the other
accuracy are shown for reference. Chance is the average score of guessing:
{", ".join(f"{t} {100 * c:.1f}" for t, c in harness["chance"].items())}, so
{100 * sum(harness["chance"].values()) / len(harness["chance"]):.1f} on average.

{open(os.path.join(os.path.dirname(path), "harness", "harness.md")).read()}
Inference FLOPs per sequence (prompt {plan.inference_prompt_length}, output
{plan.inference_output_length}): {", ".join(f"{n} {v:.3e}" for n, v in
                                          harness["inference_flops"].items())}.

![quality vs inference FLOPs](harness/pareto.png)

## 3. Length extrapolation

{_extrapolation_table(extrap)}

![length extrapolation](extrapolation/extrapolation.png)

## 4. Attention

![locality decay](attention/locality.png)

![cross-attention](attention/cross_attention.png)

## Reproduce

```
{command}
```

Gin: {", ".join(f"`{g}`" for g in gin_files)}; each run's own gin files and bindings
are in its `result.json`. Seed {plan.seed} (parameters, data order, dropout, few-shot
exemplars). Versions: {versions()}, Python {platform.python_version()}.

Wall-clock by unit (seconds, summed over invocations; a unit killed mid-way loses
the time of that invocation, which is not recorded):

| unit | seconds |
|---|---:|
""" + "\n".join(f"| {u} | {s:.0f} |" for u, s in timings.items()) + "\n"
  with open(path, "w") as f:
    f.write(text)
  return path
