"""Harness scores over seeds: per task and shot, per task group, chance beside each.

Every (model, seed) is scored on the same items; a figure is the mean over seeds ±
the seed-to-seed SE (`stats.mean_se`), with the item-level SE of the mean score beside
it (the test set's own noise, which seeds do not sample): the SE over items of each
item's mean over seeds (`stats.item_se`), or the binomial SE where per-item scores were
not kept. A group's item SE is that of the mean of its tasks' scores. Tasks are
grouped by `tasks/harness/manifest.json` (per task: kind, chance, family,
held_out_family, in_tuning_mixture, items): the continuation task, the cloze tasks,
the instruction families tuned on, the families held out of tuning (zero-shot
transfer), and other tasks (e.g. the chatterbot QA pair). "downstream" (what the
findings compare, as the paper's downstream average of HellaSwag/LAMBADA-like tasks)
is the continuation and cloze tasks whose floor (the best shortcut: `task_info`) is
within `FLOOR_MARGIN` of chance (every task, if the study ran neither).
"""

import json
import math
import os
from typing import Any, Callable, Mapping, Optional, Sequence

import matplotlib
import numpy as np

matplotlib.use("Agg")  # PNG files only: no display needed
from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from redllm_jax.study import stats
from redllm_jax.study.fits import pareto_front
from redllm_jax.study.scaling import COLORS

CONTINUATION = "demo_continuation_mc"
GROUPS = ("continuation", "cloze", "tuned families", "held-out families", "other")
DOWNSTREAM = ("continuation", "cloze")
FLOOR_MARGIN = 0.05  # a downstream task's floor is at most this far above chance
BAR_Z = 3.0  # the largest models >= 3 SE above the floor on the continuation task


def load_manifest(tasks_pattern: str) -> dict[str, dict]:
  """{task: entry} from manifest.json beside the task files ({} when there is none)."""
  path = os.path.join(os.path.dirname(tasks_pattern), "manifest.json")
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    manifest = json.load(f)
  return manifest.get("tasks", manifest)


def group_of(name: str, entry: Mapping[str, Any]) -> str:
  """A task's group, from its manifest entry (family, held_out_family, in_tuning_mixture)."""
  if name == CONTINUATION or entry.get("family") == "continuation":
    return "continuation"
  if entry.get("family") == "cloze":
    return "cloze"
  if entry.get("held_out_family"):
    return "held-out families"
  return "tuned families" if entry.get("in_tuning_mixture") else "other"


def task_info(
  tasks: Sequence[Any], manifest: Mapping[str, Mapping], fallback_chance: Callable[[Any], float]
) -> dict[str, dict[str, Any]]:
  """{task: {"chance", "chance_from", "floor", "group", "items"}} for `harness.Task`s. The
  floor is the best model-free shortcut of the manifest (multiple choice: its `floor`;
  generative: the best constant answer), never below chance."""
  info = {}
  for t in tasks:
    entry = manifest.get(t.name, {})
    chance = entry.get("chance")
    chance = float(fallback_chance(t) if chance is None else chance)
    floor = max(chance, entry.get("floor", entry.get("majority_baseline", chance)))
    info[t.name] = {
      "chance": chance,
      "chance_from": "harness.chance_score" if entry.get("chance") is None else "manifest",
      "floor": float(floor),
      "group": group_of(t.name, entry),
      "items": len(t.examples),
    }
  return info


def _figure(
  scores: Sequence[float], items: int, chance: float, floor: float, item_se: Optional[float]
) -> dict[str, float]:
  out = stats.mean_se(scores)
  if item_se is None:
    item_se = stats.binomial_se(out["mean"], items)
  out.update(item_se=item_se, chance=chance, floor=floor, items=items)
  return out


def _task_item_se(
  item_scores: Mapping[str, Mapping[str, Sequence[float]]], key: str, seeds: Sequence[str]
) -> Optional[float]:
  """`stats.item_se` of one model's task@kshot over `seeds`; None unless every seed kept
  its per-item scores of 2 items or more (one item has no spread to measure)."""
  rows = [item_scores.get(s, {}).get(key) for s in seeds]
  if any(r is None or len(r) < 2 for r in rows):
    return None
  return stats.item_se(rows)


def summarize(
  per_seed: Mapping[str, Mapping[str, Mapping[str, float]]],
  info: Mapping[str, Mapping[str, Any]],
  shots: Sequence[int],
  model_floors: Mapping[str, Mapping[str, float]] = {},
  per_item: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]] = {},
) -> dict:
  """{model: {"task@kshot" or "<group>@kshot": figure}} from {model: {seed: {task@kshot:
  score}}} and, where kept, {model: {seed: {task@kshot: [per-item scores]}}}; a group's
  score is its tasks' mean per seed, its item SE that of the mean of its tasks, its
  chance and floor its tasks' means. A task's floor for a model is the higher of the
  task's and `model_floors[model]["task@kshot"]` (its own context-free choice)."""
  out = {}
  for model, seeds in per_seed.items():
    runs = list(seeds.values())
    mine: dict[str, Any] = {}
    for k in shots:
      floors = {
        task: max(t["floor"], model_floors.get(model, {}).get(f"{task}@{k}shot", 0.0))
        for task, t in info.items()
      }
      for task, t in info.items():
        key = f"{task}@{k}shot"
        mine[key] = _figure(
          [r[key] for r in runs],
          t["items"],
          t["chance"],
          floors[task],
          _task_item_se(per_item.get(model, {}), key, list(seeds)),
        )
      for group in (*GROUPS, "downstream"):
        members = group_members(info, group)
        if members:
          item_ses = [mine[f"{m}@{k}shot"]["item_se"] for m in members]
          mine[f"{group}@{k}shot"] = _figure(
            list(group_scores(seeds, members, k).values()),
            sum(info[m]["items"] for m in members),
            float(np.mean([info[m]["chance"] for m in members])),
            float(np.mean([floors[m] for m in members])),
            math.sqrt(sum(se**2 for se in item_ses)) / len(item_ses),
          )
    out[model] = mine
  return out


def group_scores(
  seeds: Mapping[str, Mapping[str, float]], members: Sequence[str], shots: int
) -> dict[str, float]:
  """{seed: mean score of `members` at `shots`} of one model."""
  return {s: float(np.mean([r[f"{m}@{shots}shot"] for m in members])) for s, r in seeds.items()}


def group_members(info: Mapping[str, Mapping[str, Any]], group: str) -> list[str]:
  """A group's tasks. "downstream": the continuation and cloze tasks that no model-free
  shortcut beats by more than `FLOOR_MARGIN` over chance (a task a bigram wins measures
  the bigram, not the architectures), else every such task, else every task."""
  if group != "downstream":
    return [n for n, t in info.items() if t["group"] == group]
  candidates = [n for n, t in info.items() if t["group"] in DOWNSTREAM] or list(info)
  return [
    n for n in candidates if info[n]["floor"] - info[n]["chance"] <= FLOOR_MARGIN
  ] or candidates


def total_se(figure: Mapping[str, float]) -> float:
  """Seed and item noise together (what a score's distance from chance is measured in)."""
  seed = figure["se"] if math.isfinite(figure["se"]) else 0.0
  return math.hypot(seed, figure["item_se"])


def continuation_bar(
  summary: Mapping[str, Any], models: Sequence[str], shots: Sequence[int]
) -> list[dict[str, Any]]:
  """The continuation bar, per model and shot: (mean - floor) / hypot(seed SE, item SE) >= 3
  on the continuation task (the floor: its best shortcut, `summarize`). [] when the task
  was not run."""
  rows = []
  for model in models:
    for k in shots:
      figure = summary.get(model, {}).get(f"{CONTINUATION}@{k}shot")
      if figure is None:
        continue
      z = stats.z_score({"mean": figure["mean"], "se": total_se(figure)}, figure["floor"])
      binomial = {**figure, "item_se": stats.binomial_se(figure["mean"], figure["items"])}
      z_binomial = stats.z_score(
        {"mean": figure["mean"], "se": total_se(binomial)}, figure["floor"]
      )
      rows.append(
        {
          "model": model,
          "shots": k,
          "z": z,
          "z_binomial": z_binomial,
          "passes": z >= BAR_Z,
          **figure,
        }
      )
  return rows


def cell(figure: Mapping[str, float]) -> str:
  """'41.2 ± 1.3 (items ± 2.1; chance 25.0; floor 27.3)', in %."""
  return (
    f"{stats.fmt(figure, 1, 100)} (items ± {100 * figure['item_se']:.1f}; "
    f"chance {100 * figure['chance']:.1f}; floor {100 * figure['floor']:.1f})"
  )


def table(summary: Mapping[str, Any], keys: Sequence[str]) -> str:
  """Markdown: one row per key (task@kshot or group@kshot), one column per model."""
  models = list(summary)
  lines = ["| task or group @ shots | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
  for key in keys:
    if all(key in summary[m] for m in models):
      lines.append(f"| {key} | " + " | ".join(cell(summary[m][key]) for m in models) + " |")
  return "\n".join(lines)


def plot_pareto(
  summary: Mapping[str, Any], costs: Mapping[str, float], shots: Sequence[int], path: str
) -> None:
  """Downstream score (mean ± seed SE) against inference FLOPs; finetuned front marked."""
  fig, axes = plt.subplots(1, len(shots), figsize=(5.5 * len(shots), 4.2), squeeze=False)
  for ax, k in zip(axes[0], shots):
    names = list(summary)
    figures = [summary[n][f"downstream@{k}shot"] for n in names]
    points = [(costs[n], 100 * f["mean"]) for n, f in zip(names, figures)]
    for n, (x, y), f in zip(names, points, figures):
      arch, stage = n.split("/")
      ax.errorbar(
        [x],
        [y],
        yerr=[100 * np.nan_to_num(f["se"])],
        fmt="o",
        capsize=3,
        color=COLORS.get(arch, "black"),
        markerfacecolor=COLORS.get(arch, "black") if stage == "flan" else "none",
        label=n,
      )
    tuned = [i for i, n in enumerate(names) if n.endswith("/flan")]
    front = [tuned[i] for i in pareto_front([points[i] for i in tuned])]
    ax.plot(
      [points[i][0] for i in front],
      [points[i][1] for i in front],
      color="black",
      linewidth=1,
      label="Pareto front (finetuned)",
    )
    ax.axhline(100 * figures[0]["chance"], color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("inference FLOPs per sequence")
    ax.set_ylabel(f"{k}-shot downstream score (%), mean ± seed SE")
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
