"""Each verdict recomputed with a part of the study left out: robust or fragile.

Findings 1 and 2 read the scaling ladder: each budget tier (a step count) and each
size is left out in turn and the fits redone (`scaling.summarize`). Findings 3 to 7
read only the largest pair, which tiers and sizes do not touch: each seed is left out
in turn instead. A verdict that changes under some leave-out is fragile, and the
report names the leave-outs that change it.
"""

from typing import Any, Callable, Mapping, Sequence

from redllm_jax.study import scaling as scaling_lib
from redllm_jax.study import scores, stats

Outputs = Mapping[str, Any]


def scaling_leave_outs(scaling: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
  """{label: the scaling outputs refitted without one budget tier or one size}."""
  rows = scaling["runs"]
  variants = {}
  for key, label in (("steps", "the {}-step tier"), ("size", "size {}")):
    for value in sorted({r[key] for r in rows}):
      kept = [r for r in rows if r[key] != value]
      try:
        variants["without " + label.format(value)] = scaling_lib.summarize(kept)
      except (ValueError, KeyError, TypeError, ZeroDivisionError) as e:  # too few points left
        variants["without " + label.format(value)] = {"error": str(e)}
  return variants


def _harness_without(harness: Mapping[str, Any], seed: str) -> dict[str, Any]:
  per_seed, per_item = (
    {m: {s: r for s, r in seeds.items() if s != seed} for m, seeds in harness.get(k, {}).items()}
    for k in ("per_seed", "per_item")
  )
  summary = scores.summarize(
    per_seed, harness["tasks"], harness["shots"], harness.get("model_floors", {}), per_item
  )
  return {**harness, "per_seed": per_seed, "summary": summary}


def _attention_without(
  locality: Mapping[str, Any], cross: Mapping[str, Any], seed: str
) -> tuple[dict, dict]:
  keep = [i for i, s in enumerate(locality["seeds"]) if s != seed]
  curves = {
    arch: {
      j: {**c, "local_mass_per_seed": [c["local_mass_per_seed"][i] for i in keep]}
      for j, c in by_offset.items()
    }
    for arch, by_offset in locality["locality"].items()
  }
  per_seed = {s: v for s, v in cross["per_seed"].items() if s != seed}
  cross_out = {
    **cross,
    "per_seed": per_seed,
    **{
      k: stats.mean_se([v[k] for v in per_seed.values()])
      for k in ("top_key_overlap", "entropy_ratio", "random_overlap")
    },
  }
  return {**locality, "seeds": [locality["seeds"][i] for i in keep], "locality": curves}, cross_out


def seed_leave_outs(outputs: Outputs) -> dict[str, dict[str, Any]]:
  """{label: the outputs without one seed of the largest pair}."""
  seeds = [str(s) for s in outputs["harness"]["seeds"]]
  variants = {}
  for seed in seeds:
    locality, cross = _attention_without(outputs["locality"], outputs["cross_attention"], seed)
    extrap = outputs["extrapolation"]
    variants[f"without seed {seed}"] = {
      **outputs,
      "harness": _harness_without(outputs["harness"], seed),
      "extrapolation": {
        **extrap,
        "per_seed": {s: v for s, v in extrap["per_seed"].items() if str(s) != seed},
      },
      "locality": locality,
      "cross_attention": cross,
    }
  return variants


def verdicts(
  judges: Sequence[Callable[[Outputs], Any]], outputs: Outputs, ladder: Sequence[int]
) -> list[str]:
  """Per finding: "robust (n leave-outs)" or "fragile: <leave-out> -> <verdict>; ...".
  `judges[i](outputs)` is finding i; `ladder` the indices that read the scaling ladder."""
  base = [judge(outputs).verdict for judge in judges]
  by_scaling = {
    label: {**outputs, "scaling": s} for label, s in scaling_leave_outs(outputs["scaling"]).items()
  }
  by_seed = seed_leave_outs(outputs)
  out = []
  for i, judge in enumerate(judges):
    variants = by_scaling if i in ladder else by_seed
    changed = []
    for label, variant in variants.items():
      if "error" in variant.get("scaling", {}):
        changed.append(f"{label}: no fit ({variant['scaling']['error']})")
        continue
      try:
        verdict = judge(variant).verdict
      except (ValueError, KeyError, TypeError, ZeroDivisionError) as e:  # too little left
        changed.append(f"{label}: no verdict ({type(e).__name__}: {e})")
        continue
      if verdict != base[i]:
        changed.append(f"{label} -> {verdict}")
    out.append(
      f"fragile: {'; '.join(changed)}" if changed else f"robust ({len(variants)} leave-outs)"
    )
  return out
