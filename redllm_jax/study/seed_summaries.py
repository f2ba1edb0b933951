"""Over seeds: the study's summaries of the attention and length-extrapolation
analyses (mean ± SE per figure, the JSON its findings read, PNG plots). The analyses
themselves, one checkpoint at a time, are `evaluation.attention` and
`evaluation.extrapolation`."""

import csv
import json
import os
from typing import Any, Mapping

import matplotlib
import numpy as np

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from redllm_jax.evaluation import attention
from redllm_jax.study import stats


def random_overlap(keys: int, queries: int, top: int) -> float:
  """The expected top-key overlap of top-k sets drawn at random: k / E|union of the sets|."""
  return top / (keys * (1 - (1 - top / keys) ** queries))


def summarize_attention(per_seed: Mapping[Any, Mapping[str, Any]]) -> dict[str, Any]:
  """Over seeds ({seed: {name: analyze() output}}): each model's locality (local mass mean ±
  SE per query offset, mean weight curve ± SE) and RedLLM's cross-attention measures
  (top-key overlap, entropy over uniform) per seed and mean ± SE."""
  first = next(iter(per_seed.values()))
  locality_out: dict[str, Any] = {}
  for name, r in first.items():
    locality_out[name] = {}
    for j, c in r["locality"].items():
      curves = [s[name]["locality"][j] for s in per_seed.values()]
      weights = np.array([c2["weights"] for c2 in curves])
      locality_out[name][j] = {
        "query_index": c["query_index"],
        "local_span": c["local_span"],
        "local_mass": stats.mean_se([c2["local_mass"] for c2 in curves]),
        "local_mass_per_seed": [c2["local_mass"] for c2 in curves],
        "weights": weights.mean(0).tolist(),
        "weights_se": (weights.std(0, ddof=1) / np.sqrt(len(curves))).tolist()
        if len(curves) > 1
        else [float("nan")] * weights.shape[1],
      }
  out: dict[str, Any] = {"seeds": [str(s) for s in per_seed], "locality": locality_out}
  crossed = {
    s: next((m["cross_attention"] for m in r.values() if "cross_attention" in m), None)
    for s, r in per_seed.items()
  }
  if all(c is not None for c in crossed.values()):
    seeds = {}
    for s, c in crossed.items():
      weights = np.asarray(c["weights"])
      seeds[str(s)] = {
        "top_key_overlap": float(np.mean(c["top_key_overlap"])),
        "entropy_ratio": float(np.mean(c["entropy"]) / c["uniform_entropy"]),
        "random_overlap": random_overlap(weights.shape[2], weights.shape[1], c["top_keys"]),
      }
    out["cross_attention"] = {
      "per_seed": seeds,
      "top_keys": next(iter(crossed.values()))["top_keys"],
      **{
        k: stats.mean_se([v[k] for v in seeds.values()])
        for k in ("top_key_overlap", "entropy_ratio", "random_overlap")
      },
    }
  return out


def write_attention_summary(per_seed: Mapping[Any, Mapping[str, Any]], out_dir: str) -> dict:
  """locality.json, cross_attention.json (RedLLM's, over seeds), locality.png (mean ± SE curves) and
  cross_attention.png (the first seed's maps) in out_dir; returns the summary."""
  summary = summarize_attention(per_seed)
  os.makedirs(out_dir, exist_ok=True)
  if "cross_attention" in summary:
    with open(os.path.join(out_dir, "cross_attention.json"), "w") as f:
      json.dump(summary["cross_attention"], f, indent=1)
  models = summary["locality"]
  fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4), squeeze=False)
  for ax, (name, curves) in zip(axes[0], models.items()):
    for j, c in curves.items():
      w, se = np.array(c["weights"]), np.nan_to_num(np.array(c["weights_se"]))
      (line,) = ax.plot(np.arange(w.size), w, label=f"query {c['query_index']} (target +{j})")
      ax.fill_between(
        np.arange(w.size), np.maximum(w - se, 1e-12), w + se, alpha=0.25, color=line.get_color()
      )
    ax.set_yscale("log")
    ax.set_xlabel("query - key distance")
    ax.set_ylabel("mean attention weight (± SE over seeds)")
    ax.set_title(f"{name}: decoder self-attention, {len(summary['seeds'])} seeds")
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, "locality.png"), dpi=110)
  plt.close(fig)
  seed, first = next(iter(per_seed.items()))
  for name, r in first.items():
    if "cross_attention" in r:
      attention.plot_cross_attention(
        np.asarray(r["cross_attention"]["weights"]),
        f"{name} (seed {seed})",
        os.path.join(out_dir, "cross_attention.png"),
      )
  # locality.json last, renamed into place: it is what says the study's stage is done.
  path = os.path.join(out_dir, "locality.json")
  with open(path + ".tmp", "w") as f:
    json.dump({k: v for k, v in summary.items() if k != "cross_attention"}, f, indent=1)
  os.replace(path + ".tmp", path)
  return summary


def summarize_extrapolation(
  per_seed: Mapping[Any, Mapping[str, Any]], training_length: int
) -> dict[str, list[dict[str, Any]]]:
  """{name: [{"length", "ratio", "ppl": mean ± SE over seeds, "ppl_per_seed", and
  "first_token_ppl", "rest_ppl" as mean ± SE where the runs recorded them}]} from
  {seed: {name: evaluate_lengths() output}}."""
  first = next(iter(per_seed.values()))
  out = {}
  for name, r in first.items():
    rows = []
    for i, s in enumerate(r["summary"]):
      ppls = [seed[name]["summary"][i]["ppl"] for seed in per_seed.values()]
      row = {
        "length": s["length"],
        "ratio": s["length"] / training_length,
        "ppl": stats.mean_se(ppls),
        "ppl_per_seed": ppls,
      }
      for part in ("first_token_ppl", "rest_ppl"):
        if part in s:
          row[part] = stats.mean_se([seed[name]["summary"][i][part] for seed in per_seed.values()])
      rows.append(row)
    out[name] = rows
  return out


def write_extrapolation_summary(
  per_seed: Mapping[Any, Mapping[str, Any]], training_length: int, out_dir: str
) -> dict[str, Any]:
  """extrapolation.json (every seed's results and the summary over seeds),
  extrapolation.csv (the summary) and extrapolation.png (PPL by length, mean ± SE over seeds) in out_dir."""
  summary = summarize_extrapolation(per_seed, training_length)
  out = {
    "training_length": training_length,
    "seeds": [str(s) for s in per_seed],
    "summary": summary,
    "per_seed": {str(s): r for s, r in per_seed.items()},
  }
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "extrapolation.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["name", "length", "length_ratio", "ppl_mean", "ppl_se", "seeds"])
    for name, rows in summary.items():
      for r in rows:
        w.writerow(
          [
            name,
            r["length"],
            r["ratio"],
            f"{r['ppl']['mean']:.4f}",
            f"{r['ppl']['se']:.4f}",
            r["ppl"]["n"],
          ]
        )
  fig, ax = plt.subplots(figsize=(6, 4))
  for name, rows in summary.items():
    ax.errorbar(
      [r["length"] for r in rows],
      [r["ppl"]["mean"] for r in rows],
      yerr=[np.nan_to_num(r["ppl"]["se"]) for r in rows],
      marker="o",
      capsize=3,
      label=name,
    )
  ax.axvline(training_length, color="grey", linestyle="--", linewidth=1)
  ax.set_xscale("log", base=2)
  ax.set_yscale("log")
  ax.set_xlabel("evaluation length (tokens)")
  ax.set_ylabel("PPL of the second half (mean ± SE)")
  ax.set_title(f"Length extrapolation (trained at {training_length}), {len(per_seed)} seeds")
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, "extrapolation.png"), dpi=110)
  plt.close(fig)
  # extrapolation.json last, renamed into place: it is what says the study's stage is done.
  path = os.path.join(out_dir, "extrapolation.json")
  with open(path + ".tmp", "w") as f:
    json.dump(out, f, indent=1)
  os.replace(path + ".tmp", path)
  return out
