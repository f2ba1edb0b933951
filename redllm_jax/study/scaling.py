"""Scaling fits, the compute-optimal frontier, and the quality/inference-cost Pareto plot.

Fits (see `fits.fit_power_law`), per architecture and eval domain:
- against training FLOPs: every pretraining run of the architecture (all sizes and budgets);
- against parameters: the runs at the largest budget (equal training steps, as in
  the paper's size ladder).
PPL is over the tokens both architectures predict: the second half of each chunk
(DecLLM's `second_half_perplexity`, RedLLM's targets).
"""
import csv
import json
import os
from typing import Any, Mapping, Optional, Sequence

import matplotlib
import numpy as np

matplotlib.use("Agg")  # PNG files only: no display needed
from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from redllm_jax.study.fits import fit_power_law, frontier, pareto_front
from redllm_jax.study.plan import ARCHITECTURES, StudyPlan

DOMAINS = ("in_domain", "out_of_domain")
AXES = ("flops", "params")
# The paper's fitted exponents (DESIGN.md section 2): the reference column only.
PAPER_EXPONENTS = {
    ("in_domain", "flops"): {"decllm": 0.20, "redllm": 0.24},
    ("in_domain", "params"): {"decllm": 0.17, "redllm": 0.18},
    ("out_of_domain", "flops"): {"decllm": 0.24, "redllm": 0.27},
    ("out_of_domain", "params"): {"decllm": 0.20, "redllm": 0.20},
}
PAPER_DATA = {"in_domain": "RedPajama", "out_of_domain": "Paloma"}
COLORS = {"decllm": "tab:blue", "redllm": "tab:red", "decllm_biattn": "tab:green"}


def perplexity(metrics: Mapping[str, float], task: str) -> float:
  """Second-half PPL: DecLLM's like-for-like figure, RedLLM's only one."""
  return float(metrics.get(f"{task}/second_half_perplexity", metrics[f"{task}/perplexity"]))


def run_rows(results: Sequence[Mapping[str, Any]], plan: StudyPlan) -> list[dict[str, Any]]:
  return [{"name": r["name"], "architecture": r["architecture"], "size": r["size"],
           "steps": r["steps"], "params": r["params"], "train_flops": r["train_flops"],
           "target_tokens": r["target_tokens"], "seconds": r["seconds"],
           "in_domain": perplexity(r["metrics"], plan.in_domain),
           "out_of_domain": perplexity(r["metrics"], plan.out_of_domain)} for r in results]


def _fit_or_none(x: Sequence[float], y: Sequence[float]) -> Optional[dict[str, float]]:
  try:
    return fit_power_law(x, y).as_dict()
  except ValueError:  # One size (or one budget) only: no exponent to fit.
    return None


def fit_all(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
  """{domain: {axis: {arch: PowerLaw dict or None}}}."""
  top = max(r["steps"] for r in rows)
  fits: dict[str, dict[str, dict[str, Any]]] = {}
  for domain in DOMAINS:
    fits[domain] = {"flops": {}, "params": {}}
    for arch in ARCHITECTURES:
      mine = [r for r in rows if r["architecture"] == arch]
      fits[domain]["flops"][arch] = _fit_or_none([r["train_flops"] for r in mine],
                                                 [r[domain] for r in mine])
      last = [r for r in mine if r["steps"] == top]
      fits[domain]["params"][arch] = _fit_or_none([r["params"] for r in last],
                                                  [r[domain] for r in last])
  return fits


def frontiers(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
  """{domain: names of the runs on the compute-optimal frontier, cheapest first}."""
  return {domain: [rows[i]["name"] for i in frontier([(r["train_flops"], r[domain])
                                                      for r in rows])]
          for domain in DOMAINS}


def exponent_table(fits: Mapping[str, Any]) -> str:
  """Markdown: measured exponents (with standard error and R^2) beside the paper's."""
  lines = ["| eval domain (paper's data) | X | arch | b, this run | ± s.e. | R² | points "
           "| b, paper |", "|---|---|---|---:|---:|---:|---:|---:|"]
  for domain in DOMAINS:
    for axis in AXES:
      for arch in ARCHITECTURES:
        fit = fits[domain][axis][arch]
        cells = (["n/a"] * 4 if fit is None else
                 [f"{fit['b']:.3f}", f"{fit['b_stderr']:.3f}", f"{fit['r2']:.3f}", str(fit['n'])])
        lines.append(f"| {domain.replace('_', '-')} ({PAPER_DATA[domain]}) | "
                     f"{'training FLOPs' if axis == 'flops' else 'parameters'} | {arch} | "
                     + " | ".join(cells) + f" | {PAPER_EXPONENTS[(domain, axis)][arch]:.2f} |")
  return "\n".join(lines)


def write_scaling(results: Sequence[Mapping[str, Any]], plan: StudyPlan, out_dir: str) -> dict:
  rows = run_rows(results, plan)
  fits, fronts = fit_all(rows), frontiers(rows)
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "runs.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  with open(os.path.join(out_dir, "exponents.md"), "w") as f:
    f.write(exponent_table(fits) + "\n")
  _plot_scaling(rows, fits, os.path.join(out_dir, "scaling.png"))
  _plot_frontier(rows, fronts, os.path.join(out_dir, "frontier.png"))
  out = {"runs": rows, "fits": fits, "frontier": fronts,
         "tasks": {"in_domain": plan.in_domain, "out_of_domain": plan.out_of_domain}}
  with open(os.path.join(out_dir, "fits.json"), "w") as f:
    json.dump(out, f, indent=1)
  return out


def _plot_scaling(rows, fits, path: str) -> None:
  top = max(r["steps"] for r in rows)
  fig, axes = plt.subplots(2, 2, figsize=(11, 8))
  for i, domain in enumerate(DOMAINS):
    for j, (axis, key) in enumerate((("flops", "train_flops"), ("params", "params"))):
      ax = axes[i][j]
      for arch in ARCHITECTURES:
        mine = [r for r in rows if r["architecture"] == arch and (axis == "flops" or
                                                                  r["steps"] == top)]
        x = np.array([r[key] for r in mine])
        ax.scatter(x, [r[domain] for r in mine], color=COLORS[arch], s=22, label=arch)
        fit = fits[domain][axis][arch]
        if fit is not None:
          grid = np.geomspace(x.min(), x.max(), 50)
          ax.plot(grid, fit["a"] * grid ** -fit["b"], color=COLORS[arch], linestyle="--",
                  label=f"{arch}: b={fit['b']:.3f}, R²={fit['r2']:.2f}")
      ax.set_xscale("log")
      ax.set_yscale("log")
      ax.set_xlabel("training FLOPs" if axis == "flops" else f"parameters (at {top} steps)")
      ax.set_ylabel(f"{domain.replace('_', '-')} PPL")
      ax.legend(fontsize=8)
  fig.suptitle("PPL = a·X^-b, fitted per architecture (dashed)")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _plot_frontier(rows, fronts, path: str) -> None:
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
  for ax, domain in zip(axes, DOMAINS):
    for arch in ARCHITECTURES:
      mine = [r for r in rows if r["architecture"] == arch]
      ax.scatter([r["train_flops"] for r in mine], [r[domain] for r in mine],
                 color=COLORS[arch], s=22, label=arch)
    front = [next(r for r in rows if r["name"] == n) for n in fronts[domain]]
    ax.step([r["train_flops"] for r in front], [r[domain] for r in front], where="post",
            color="black", linewidth=1, label="compute-optimal frontier")
    ax.scatter([r["train_flops"] for r in front], [r[domain] for r in front], s=90,
               facecolors="none", edgecolors="black")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel(f"{domain.replace('_', '-')} PPL")
    ax.set_title("all runs; frontier runs circled")
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def shot_average(per_task: Mapping[str, Any], shots: int) -> float:
  """Mean score over the harness tasks at `shots` exemplars."""
  scores = [r["score"] for k, r in per_task.items() if k.endswith(f"@{shots}shot")]
  return float(np.mean(scores))


def plot_pareto(results: Mapping[str, Any], costs: Mapping[str, float], shots: Sequence[int],
                chance: float, path: str) -> None:
  """Harness score against inference FLOPs per sequence; finetuned Pareto front marked."""
  fig, axes = plt.subplots(1, len(shots), figsize=(5.5 * len(shots), 4.2), squeeze=False)
  for ax, k in zip(axes[0], shots):
    names = list(results)
    points = [(costs[n], 100 * shot_average(results[n], k)) for n in names]
    for n, (x, y) in zip(names, points):
      arch, stage = n.split("/")
      ax.scatter([x], [y], s=60, color=COLORS[arch],
                 facecolors=COLORS[arch] if stage == "flan" else "none", label=n)
      ax.annotate(n, (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
    tuned = [i for i, n in enumerate(names) if n.endswith("/flan")]
    front = [tuned[i] for i in pareto_front([points[i] for i in tuned])]
    ax.plot([points[i][0] for i in front], [points[i][1] for i in front], color="black",
            linewidth=1, label="Pareto front (finetuned)")
    ax.axhline(100 * chance, color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("inference FLOPs per sequence")
    ax.set_ylabel(f"{k}-shot average score (%)")
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
