"""Scaling fits, the compute-optimal frontier, and the quality/inference-cost Pareto plot.

Fits (see `fits.fit_power_law`), per architecture and eval domain:
- against training FLOPs: every pretraining run of the architecture (all sizes and budgets);
- against parameters: the runs at the largest budget every size has (equal training
  steps, as in the paper's size ladder), else each size's longest (`params_runs`).
Each seed's runs are fitted on their own; exponents and fitted Red/Dec ratios are
reported as the mean over seeds ± the seed-to-seed SE (`stats`), Red - Dec paired by
seed. The pooled fit (every seed's runs at once) is kept beside it with its own
regression SE. PPL is over the tokens both architectures predict: the second half of
each chunk (DecLLM's `second_half_perplexity`, RedLLM's targets).
"""

import csv
import json
import math
import os
from typing import Any, Mapping, Optional, Sequence

import matplotlib
import numpy as np

matplotlib.use("Agg")  # PNG files only: no display needed
from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from redllm_jax.study import stats
from redllm_jax.study.fits import fit_power_law, frontier
from redllm_jax.study.plan import ARCHITECTURES, StudyPlan

DOMAINS = ("in_domain", "out_of_domain")
AXES = ("flops", "params")
AXIS_KEYS = {"flops": "train_flops", "params": "params"}
# The paper's fitted exponents (DESIGN.md section 2): the reference column only.
PAPER_EXPONENTS = {
  ("in_domain", "flops"): {"decllm": 0.20, "redllm": 0.24},
  ("in_domain", "params"): {"decllm": 0.17, "redllm": 0.18},
  ("out_of_domain", "flops"): {"decllm": 0.24, "redllm": 0.27},
  ("out_of_domain", "params"): {"decllm": 0.20, "redllm": 0.20},
}
PAPER_DATA = {"in_domain": "RedPajama", "out_of_domain": "Paloma"}
COLORS = {"decllm": "tab:blue", "redllm": "tab:red", "decllm_biattn": "tab:green"}
DECIDING_Z = 3.0  # "the scale that would decide": where an effect reaches 3 of its SEs
EXTRAPOLATE = 1e12  # look for that scale up to this factor beyond the largest run


def perplexity(metrics: Mapping[str, float], task: str) -> float:
  """Second-half PPL: DecLLM's like-for-like figure, RedLLM's only one."""
  return float(metrics.get(f"{task}/second_half_perplexity", metrics[f"{task}/perplexity"]))


def run_rows(results: Sequence[Mapping[str, Any]], plan: StudyPlan) -> list[dict[str, Any]]:
  return [
    {
      "name": r["name"],
      "point": r["point"],
      "seed": r["seed"],
      "architecture": r["architecture"],
      "size": r["size"],
      "steps": r["steps"],
      "params": r["params"],
      "train_flops": r["train_flops"],
      "target_tokens": r["target_tokens"],
      "seconds": r["seconds"],
      "in_domain": perplexity(r["metrics"], plan.in_domain),
      "out_of_domain": perplexity(r["metrics"], plan.out_of_domain),
    }
    for r in results
  ]


def seeds_of(rows: Sequence[Mapping[str, Any]]) -> list[int]:
  return sorted({r["seed"] for r in rows})


def point_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
  """One row per point (arch, size, budget): PPL mean ± SE over its seeds."""
  points: dict[str, list[Mapping[str, Any]]] = {}
  for r in rows:
    points.setdefault(r["point"], []).append(r)
  out = []
  for point, runs in points.items():
    first = runs[0]
    out.append(
      {
        "point": point,
        "architecture": first["architecture"],
        "size": first["size"],
        "steps": first["steps"],
        "params": first["params"],
        "train_flops": first["train_flops"],
        "target_tokens": first["target_tokens"],
        "seconds": stats.mean_se([r["seconds"] for r in runs]),
        **{d: stats.mean_se([r[d] for r in runs]) for d in DOMAINS},
      }
    )
  return out


def _fit_or_none(x: Sequence[float], y: Sequence[float]) -> Optional[dict[str, float]]:
  try:
    return fit_power_law(x, y).as_dict()
  except ValueError:  # One size (or one budget) only: no exponent to fit.
    return None


def params_runs(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
  """The runs a parameters fit uses: the largest budget every size has (equal steps, as
  in the paper's size ladder), else each size's longest budget."""
  budgets: dict[str, set] = {}
  for r in rows:
    budgets.setdefault(r["size"], set()).add(r["steps"])
  common = set.intersection(*budgets.values())
  if common:
    return [r for r in rows if r["steps"] == max(common)]
  return [r for r in rows if r["steps"] == max(budgets[r["size"]])]


def params_axis_label(rows: Sequence[Mapping[str, Any]]) -> str:
  steps = sorted({r["steps"] for r in params_runs(rows)})
  return (
    f"at {steps[0]} steps"
    if len(steps) == 1
    else "at each size's longest budget (" + ", ".join(map(str, steps)) + " steps)"
  )


def fit_all(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
  """{domain: {axis: {arch: PowerLaw dict or None}}} of these rows (one seed, or pooled)."""
  fits: dict[str, dict[str, dict[str, Any]]] = {}
  for domain in DOMAINS:
    fits[domain] = {"flops": {}, "params": {}}
    for arch in ARCHITECTURES:
      mine = [r for r in rows if r["architecture"] == arch]
      fits[domain]["flops"][arch] = _fit_or_none(
        [r["train_flops"] for r in mine], [r[domain] for r in mine]
      )
      last = params_runs(mine)
      fits[domain]["params"][arch] = _fit_or_none(
        [r["params"] for r in last], [r[domain] for r in last]
      )
  return fits


def seed_fits(rows: Sequence[Mapping[str, Any]]) -> dict[int, dict]:
  """{seed: fit_all of that seed's runs}."""
  return {s: fit_all([r for r in rows if r["seed"] == s]) for s in seeds_of(rows)}


def _per_seed(per_seed: Mapping[Any, Mapping], domain: str, axis: str) -> Optional[list]:
  """[(dec fit, red fit)] over seeds, or None if some seed has no fit."""
  pairs = [(f[domain][axis]["decllm"], f[domain][axis]["redllm"]) for f in per_seed.values()]
  return None if any(d is None or r is None for d, r in pairs) else pairs


def _over_seeds(per_seed: Mapping[Any, Mapping], summarize) -> dict:
  """{domain: {axis: summarize(axis, [(dec fit, red fit)] over seeds), or None}}."""
  out: dict[str, dict[str, Any]] = {}
  for domain in DOMAINS:
    out[domain] = {}
    for axis in AXES:
      pairs = _per_seed(per_seed, domain, axis)
      out[domain][axis] = None if pairs is None else summarize(axis, pairs)
  return out


def exponent_summary(per_seed: Mapping[Any, Mapping]) -> dict:
  """{domain: {axis: {decllm, redllm: b mean ± SE; red_minus_dec: paired} or None}}."""
  return _over_seeds(
    per_seed,
    lambda axis, pairs: {
      "decllm": stats.mean_se([d["b"] for d, _ in pairs]),
      "redllm": stats.mean_se([r["b"] for _, r in pairs]),
      "red_minus_dec": stats.paired([r["b"] for _, r in pairs], [d["b"] for d, _ in pairs]),
    },
  )


def reference_x(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
  """Where ratios are read: the geometric mean of the runs' FLOPs (parameters)."""
  return {axis: float(np.exp(np.mean(np.log([r[AXIS_KEYS[axis]] for r in rows])))) for axis in AXES}


def log_ratio(dec: Mapping[str, float], red: Mapping[str, float], x) -> np.ndarray:
  """log(fitted Red PPL / fitted Dec PPL) at x (> 0: DecLLM better there)."""
  lx = np.log(np.asarray(x, np.float64))
  return np.log(red["a"] / dec["a"]) - (red["b"] - dec["b"]) * lx


def ratio_summary(per_seed: Mapping[Any, Mapping], ref: Mapping[str, float]) -> dict:
  """{domain: {axis: {"x", "ratio": fitted Red/Dec PPL at x, mean ± SE over seeds}}}."""
  return _over_seeds(
    per_seed,
    lambda axis, pairs: {
      "x": ref[axis],
      "ratio": stats.mean_se([float(np.exp(log_ratio(d, r, ref[axis]))) for d, r in pairs]),
    },
  )


def deciding_scale(
  per_seed: Mapping[Any, Mapping],
  domain: str,
  axis: str,
  start: float,
  threshold: float = 0.0,
  z: float = DECIDING_Z,
) -> dict[str, Any]:
  """The smallest X >= start at which the fitted Red/Dec PPL ratio r decides "|r - 1| vs
  threshold" (0: which architecture is better; OVERLAP: within that or not): where
  ||mean r - 1| - threshold| reaches z seed SEs of r.

  Each seed's fits give r(X); their mean and seed SE at X carry the seed spread of a
  and b (and their covariance) into the ratio. Assumes that spread stays as measured
  and the power laws hold out to X.
  """
  pairs = _per_seed(per_seed, domain, axis)
  if pairs is None or len(pairs) < 2:
    return {"x": None, "reason": "fewer than 2 seeds with a fit: no seed SE"}
  grid = np.geomspace(start, start * EXTRAPOLATE, 2001)
  ratios = np.exp(np.array([log_ratio(d, r, grid) for d, r in pairs]))  # [seeds, grid]
  mean = ratios.mean(0)
  se = ratios.std(0, ddof=1) / math.sqrt(len(pairs))
  hit = np.nonzero(np.abs(np.abs(mean - 1) - threshold) >= z * se)[0]
  if hit.size == 0:
    return {
      "x": None,
      "reason": f"the fitted ratio stays within {z:g} SE of the threshold up "
      f"to {grid[-1]:.2e}: the seeds' fits disagree too much",
    }
  i = int(hit[0])
  return {
    "x": float(grid[i]),
    "ratio": {"mean": float(mean[i]), "se": float(se[i]), "n": len(pairs)},
    "at_start": i == 0,
  }


def frontier_names(
  rows: Sequence[Mapping[str, Any]], key: str = "name", value=lambda v: v
) -> dict[str, list[str]]:
  """{domain: `key` of the runs on the compute-optimal frontier, cheapest first}."""
  return {
    domain: [rows[i][key] for i in frontier([(r["train_flops"], value(r[domain])) for r in rows])]
    for domain in DOMAINS
  }


def frontier_summary(
  rows: Sequence[Mapping[str, Any]], points: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
  """Each seed's frontier and DecLLM's share of it (mean ± SE); the frontier of the seed
  means and its DecLLM share."""
  arch = {p["point"]: p["architecture"] for p in points}
  per_seed = {
    s: frontier_names([r for r in rows if r["seed"] == s], "point") for s in seeds_of(rows)
  }
  on_means = frontier_names(points, "point", lambda v: v["mean"])

  def share(names):
    return sum(arch[n] == "decllm" for n in names) / len(names)

  return {
    "per_seed": per_seed,
    "on_means": on_means,
    "decllm_share": {d: stats.mean_se([share(f[d]) for f in per_seed.values()]) for d in DOMAINS},
    "decllm_share_on_means": {d: share(on_means[d]) for d in DOMAINS},
  }


def exponent_table(scaling: Mapping[str, Any]) -> str:
  """Markdown: exponents (mean ± seed SE; the pooled fit ± its regression SE) beside the
  paper's, and Red - Dec paired by seed."""
  summary, pooled, n = scaling["exponents"], scaling["fits"], len(scaling["seeds"])
  lines = [
    f"| eval domain (paper's data) | X | arch | b, mean ± SE over {n} seeds | "
    "b, pooled fit ± regression SE | pooled R² | pooled points | b, paper |",
    "|---|---|---|---:|---:|---:|---:|---:|",
  ]
  for domain in DOMAINS:
    for axis in AXES:
      label = (
        f"| {domain.replace('_', '-')} ({PAPER_DATA[domain]}) | "
        f"{'training FLOPs' if axis == 'flops' else 'parameters'} |"
      )
      seeds = summary[domain][axis]
      for arch in ARCHITECTURES:
        fit = pooled[domain][axis][arch]
        cells = [stats.fmt(seeds[arch], 3) if seeds else "n/a"]
        cells += (
          ["n/a"] * 3
          if fit is None
          else [f"{fit['b']:.3f} ± {fit['b_stderr']:.3f}", f"{fit['r2']:.3f}", str(fit["n"])]
        )
        lines.append(
          f"{label} {arch} | "
          + " | ".join(cells)
          + f" | {PAPER_EXPONENTS[(domain, axis)][arch]:.2f} |"
        )
      paper = PAPER_EXPONENTS[(domain, axis)]
      lines.append(
        f"{label} Red - Dec (paired by seed) | "
        + (stats.fmt(seeds["red_minus_dec"], 3) if seeds else "n/a")
        + f" | | | | {paper['redllm'] - paper['decllm']:+.2f} |"
      )
  return "\n".join(lines)


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
  """Everything fits.json holds beyond the runs: per-seed and pooled fits, exponents and
  ratios over seeds, the frontiers."""
  points, per_seed, ref = point_rows(rows), seed_fits(rows), reference_x(rows)
  return {
    "runs": list(rows),
    "points": points,
    "seeds": seeds_of(rows),
    "fits": fit_all(rows),
    "seed_fits": {str(s): f for s, f in per_seed.items()},
    "exponents": exponent_summary(per_seed),
    "ratios": ratio_summary(per_seed, ref),
    "frontier": frontier_summary(rows, points),
  }


def write_scaling(results: Sequence[Mapping[str, Any]], plan: StudyPlan, out_dir: str) -> dict:
  rows = run_rows(results, plan)
  out = {
    **summarize(rows),
    "tasks": {"in_domain": plan.in_domain, "out_of_domain": plan.out_of_domain},
  }
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "runs.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  with open(os.path.join(out_dir, "exponents.md"), "w") as f:
    f.write(exponent_table(out) + "\n")
  _plot_scaling(out, os.path.join(out_dir, "scaling.png"))
  _plot_frontier(out, os.path.join(out_dir, "frontier.png"))
  with open(os.path.join(out_dir, "fits.json"), "w") as f:
    json.dump(out, f, indent=1)
  return out


def _errorbar(ax, points, key: str, domain: str, arch: str) -> np.ndarray:
  x = np.array([p[key] for p in points])
  se = np.array([p[domain]["se"] for p in points])
  ax.errorbar(
    x,
    [p[domain]["mean"] for p in points],
    yerr=np.nan_to_num(se),
    fmt="o",
    color=COLORS[arch],
    markersize=4,
    capsize=2,
    label=f"{arch} (mean ± SE)",
  )
  return x


def _plot_scaling(scaling: Mapping[str, Any], path: str) -> None:
  points, pooled, summary = scaling["points"], scaling["fits"], scaling["exponents"]
  in_params_fit = {(p["architecture"], p["size"], p["steps"]) for p in params_runs(points)}
  fig, axes = plt.subplots(2, 2, figsize=(11, 8))
  for i, domain in enumerate(DOMAINS):
    for j, axis in enumerate(AXES):
      ax = axes[i][j]
      for arch in ARCHITECTURES:
        mine = [
          p
          for p in points
          if p["architecture"] == arch
          and (axis == "flops" or (arch, p["size"], p["steps"]) in in_params_fit)
        ]
        x = _errorbar(ax, mine, AXIS_KEYS[axis], domain, arch)
        fit = pooled[domain][axis][arch]
        if fit is not None:
          grid = np.geomspace(x.min(), x.max(), 50)
          b = summary[domain][axis][arch] if summary[domain][axis] else None
          ax.plot(
            grid,
            fit["a"] * grid ** -fit["b"],
            color=COLORS[arch],
            linestyle="--",
            label=f"{arch} pooled fit; b over seeds " + (stats.fmt(b, 3) if b else "n/a"),
          )
      ax.set_xscale("log")
      ax.set_yscale("log")
      ax.set_xlabel(
        "training FLOPs" if axis == "flops" else f"parameters ({params_axis_label(points)})"
      )
      ax.set_ylabel(f"{domain.replace('_', '-')} PPL")
      ax.legend(fontsize=7)
  fig.suptitle(
    f"PPL = a·X^-b per architecture; points: mean ± SE over {len(scaling['seeds'])} seeds"
  )
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _plot_frontier(scaling: Mapping[str, Any], path: str) -> None:
  points = scaling["points"]
  by_name = {p["point"]: p for p in points}
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
  for ax, domain in zip(axes, DOMAINS):
    for arch in ARCHITECTURES:
      _errorbar(ax, [p for p in points if p["architecture"] == arch], "train_flops", domain, arch)
    front = [by_name[n] for n in scaling["frontier"]["on_means"][domain]]
    x, y = [p["train_flops"] for p in front], [p[domain]["mean"] for p in front]
    ax.step(x, y, where="post", color="black", linewidth=1, label="frontier of the means")
    ax.scatter(x, y, s=90, facecolors="none", edgecolors="black")
    share = scaling["frontier"]["decllm_share"][domain]
    ax.set_title(f"DecLLM's share of each seed's frontier {stats.fmt(share)}", fontsize=9)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel(f"{domain.replace('_', '-')} PPL")
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
