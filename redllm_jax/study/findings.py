"""The paper's seven findings (DESIGN.md section 2), each judged on this study's outputs.

Nothing here is a result: every verdict is computed from the files the stages wrote;
the paper's numbers are only the reference column. The rules, declared before the run
(`RULES`, printed in the report):

- A finding is a few sub-claims, each a measured effect against a threshold over its
  seed-to-seed SE, judged by a one-sided t test with n - 1 degrees of freedom: a
  sub-claim *holds* at p < `ALPHA` for its direction, *fails* at p < `ALPHA` for the
  opposite one, and is otherwise *undecided*.
- Sub-claims true by construction, analytic, or true of both architectures alike are
  *context*: shown, never counted (the cheapest model's place on a Pareto front, a FLOPs
  formula, a property that does not separate the architectures).
- A finding is **reproduced** only if every counted sub-claim holds, **not reproduced**
  if every one fails, **partly** if some hold and some fail, else **inconclusive**.
- Its strength is the p of the weakest sub-claim the verdict rests on (the largest p
  among those that decided it); an inconclusive finding shows the smallest p of its
  undecided sub-claims.
- The harness findings are inconclusive while no compared model beats its floor (the
  best shortcut, `scores.task_info`) at p < `ALPHA` (seed and item noise together).
"""

import dataclasses
import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np
from scipy import stats as scipy_stats

from redllm_jax.study import robustness
from redllm_jax.study import scaling as scaling_lib
from redllm_jax.study import scores, stats
from redllm_jax.study.scaling import AXIS_KEYS, DOMAINS, PAPER_EXPONENTS

ALPHA = 0.05  # one-sided: a sub-claim holds (or fails) below it
OVERLAP = 0.10  # fitted curves "nearly overlap" when within 10% of each other
SHARP = 1.5  # "degrades sharply": PPL at the longest length over PPL at 2x
SMOOTH = 1.5  # "rises smoothly": no step between evaluated lengths multiplies PPL by more
UNIFORM_LOCAL = 0.125  # the local mass of uniform attention: 1/8 of the span
NONINFERIOR = 0.02  # "comparable or better": not worse by this much accuracy (2 points)

RULES = (
  f"Each sub-claim is a one-sided t test of its effect against its threshold, n - 1 "
  f"degrees of freedom (n seeds; Red - Dec paired by seed): it holds at p < {ALPHA}, fails "
  f"at p < {ALPHA} the other way, else is undecided. Context sub-claims (by construction, "
  f"analytic, or true of both architectures) are shown and never counted. A finding is "
  f"reproduced only if every counted sub-claim holds, not reproduced if every one fails, "
  f"partly if some hold and some fail, else inconclusive; its strength is the largest p "
  f"among the sub-claims that decided it. Harness findings are inconclusive while no "
  f"compared model beats its task floor (the best shortcut) at p < {ALPHA}. Robustness: "
  f"findings 1 and 2 are recomputed leaving out each budget tier and each size in turn, "
  f"3 to 7 leaving out each seed; a verdict that changes is fragile."
)

HOLDS, FAILS, UNDECIDED = "holds", "fails", "undecided"


@dataclasses.dataclass(frozen=True)
class Finding:
  title: str
  paper: str
  measured: str  # the sub-claims, each with its effect ± SE, p and status
  verdict: str  # reproduced, partly reproduced, not reproduced, inconclusive
  p: float  # the strength: see the module docstring
  effects: str  # the finding's effect sizes ± SE (n seeds)
  decides: str = ""  # for an inconclusive finding: what would decide it
  robustness: str = ""  # "robust", or "fragile: ..." (set by `all_findings`)


@dataclasses.dataclass(frozen=True)
class Claim:
  text: str
  status: str  # HOLDS, FAILS or UNDECIDED
  p: float  # one-sided p of the status reached (undecided: the smaller of the two)
  shown: str  # the effect ± SE, its threshold, t and p
  counts: bool = True  # False: context, shown and never counted


def p_text(p: float) -> str:
  if math.isnan(p):
    return "p n/a"
  return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def one_sided(effect: stats.Stat, threshold: float, above: bool) -> tuple[float, float]:
  """(t, p) of "effect above (or below) threshold": a t test with n - 1 degrees of freedom;
  an exact figure (SE 0) has p 0 or 1; no SE (one seed): NaN."""
  t = stats.z_score(effect, threshold) * (1 if above else -1)
  if math.isnan(t):
    return t, math.nan
  return t, float(scipy_stats.t.sf(t, df=max(effect["n"] - 1, 1)))


def measured(
  text: str,
  effect: stats.Stat,
  threshold: float,
  above: bool = True,
  digits: int = 3,
  scale: float = 1.0,
  counts: bool = True,
) -> Claim:
  """The claim "effect > threshold" (above) or "effect < threshold", tested one-sided."""
  t, p = one_sided(effect, threshold, above)
  status = HOLDS if p < ALPHA else FAILS if 1 - p < ALPHA else UNDECIDED
  reported = p if status == HOLDS else 1 - p if status == FAILS else min(p, 1 - p)
  return Claim(
    text,
    status,
    reported,
    f"{stats.fmt(effect, digits, scale)} vs {scale * threshold:g}, t {t:.2f}, "
    f"{p_text(reported)}" + ("" if counts else "; context, not counted"),
    counts,
  )


def context(text: str, holds: bool, shown: str) -> Claim:
  """A claim shown beside the others but never counted (by construction or analytic)."""
  return Claim(
    text, HOLDS if holds else FAILS, math.nan, shown + "; context, not counted", counts=False
  )


def judge(claims: Sequence[Claim]) -> tuple[str, float]:
  """(verdict, strength p) under the rules of the module docstring."""
  counted = [c for c in claims if c.counts]
  held = [c for c in counted if c.status == HOLDS]
  failed = [c for c in counted if c.status == FAILS]
  undecided = [c for c in counted if c.status == UNDECIDED]
  if counted and len(held) == len(counted):
    return "reproduced", max(c.p for c in held)
  if counted and len(failed) == len(counted):
    return "not reproduced", max(c.p for c in failed)
  if held and failed:
    return "partly reproduced", max(c.p for c in held + failed)
  return "inconclusive", min((c.p for c in undecided), default=math.nan)


def _claims_text(claims: Sequence[Claim]) -> str:
  return " Sub-claims: " + "; ".join(f"{c.text}: {c.shown} [{c.status}]" for c in claims) + "."


def _seeds_needed(claims: Sequence[Claim], effects: Mapping[str, tuple]) -> str:
  """More seeds, for undecided counted claims, at the seed spread measured."""
  parts = []
  for c in claims:
    if c.counts and c.status == UNDECIDED and c.text in effects:
      # Seeds for an expected t of 2.6: p < ALPHA one-sided with about 80% power.
      n = stats.seeds_to_decide(*effects[c.text], z=scipy_stats.norm.isf(ALPHA) + 1)
      parts.append(
        f"{c.text}: "
        + (
          f"about {n} seeds for p < {ALPHA} (80% power) at the spread measured"
          if math.isfinite(n)
          else "no estimate (no seed SE or no effect)"
        )
      )
  return "; ".join(parts)


def _finding(
  title: str,
  paper: str,
  claims: Sequence[Claim],
  effects: str,
  note: str = "",
  decides: str = "",
  gate: Optional[str] = None,
) -> Finding:
  verdict, p = judge(claims)
  if gate:  # a precondition failed: no comparison means anything
    verdict, p, note = "inconclusive", math.nan, note + " " + gate
  return Finding(
    title,
    paper,
    _claims_text(claims) + note,
    verdict,
    p,
    effects,
    decides if verdict == "inconclusive" else "",
  )


def _n(stat: stats.Stat) -> str:
  return f"n = {stat['n']} seeds"


# ----------------------------------------------------------------------------- 1 and 2


def scaling_exponents(scaling: Mapping[str, Any]) -> Finding:
  """The paper's exponents are larger for RedLLM against FLOPs (both domains)."""
  summary = scaling["exponents"]
  claims, effects, parts, positive = [], {}, [], []
  for domain in DOMAINS:
    for axis in ("flops", "params"):
      s = summary[domain][axis]
      if s is None:
        continue
      parts.append(
        f"{domain} {axis}: Dec {stats.fmt(s['decllm'], 3)}, "
        f"Red {stats.fmt(s['redllm'], 3)}, Red - Dec {stats.fmt(s['red_minus_dec'], 3)}"
      )
      positive += [s["decllm"]["mean"] > 0, s["redllm"]["mean"] > 0]
      if axis == "flops":
        text = f"RedLLM's FLOPs exponent is the larger ({domain})"
        claims.append(measured(text, s["red_minus_dec"], 0.0))
        effects[text] = (s["red_minus_dec"], 0.0)
  first = next((s for d in summary.values() for s in d.values() if s), None)
  # A negative exponent (PPL rising with scale) means the fits describe noise.
  gate = None if all(positive) else "Some exponent is negative: the fits describe noise."
  decides = (
    "An exponent difference does not grow with scale: no larger model decides "
    "it; more seeds do, or a wider range of X per seed (which narrows each seed's "
    "slope). " + _seeds_needed(claims, effects)
  )
  return _finding(
    "Fitted scaling exponents",
    "; ".join(
      f"{dom} {ax}: Dec {v['decllm']:.2f}, Red {v['redllm']:.2f}"
      for (dom, ax), v in PAPER_EXPONENTS.items()
    )
    + " (RedLLM's FLOPs exponent is the larger)",
    claims,
    "; ".join(parts) + (f" ({_n(first['decllm'])}; Red - Dec paired by seed)" if first else ""),
    decides=decides,
    gate=gate,
  )


def _deciding_scale_text(
  scaling: Mapping[str, Any],
  claims: Sequence[Claim],
  ratio_claims: Mapping[str, tuple[str, str, float]],
) -> str:
  """For each undecided claim on a fitted ratio: the scale at which the per-seed fits
  would decide it (`scaling.deciding_scale`), searched from the largest run up."""
  parts = []
  for c in claims:
    if c.status != UNDECIDED or c.text not in ratio_claims:
      continue
    domain, axis, threshold = ratio_claims[c.text]
    unit = "training FLOPs" if axis == "flops" else "parameters"
    start = max(r[AXIS_KEYS[axis]] for r in scaling["runs"])
    d = scaling_lib.deciding_scale(scaling["seed_fits"], domain, axis, start, threshold)
    if d["x"] is None:
      parts.append(f"{c.text}: no estimate ({d['reason']})")
    elif d["at_start"]:
      parts.append(
        f"{c.text}: the fits decide it already at the largest run, {start:.2e} "
        f"{unit} (ratio {stats.fmt(d['ratio'], 3)})"
      )
    else:
      parts.append(
        f"{c.text}: at about {d['x']:.2e} {unit} (fitted ratio {stats.fmt(d['ratio'], 3)})"
      )
  if not parts:
    return ""
  return (
    "Read off each seed's power laws, assuming they hold that far and the seed "
    "spread stays as measured: " + "; ".join(parts) + "."
  )


def frontier(scaling: Mapping[str, Any]) -> Finding:
  """DecLLM dominates the frontier; the FLOPs curves nearly overlap; Dec is more param-efficient."""
  front, ratios = scaling["frontier"], scaling["ratios"]
  claims, effects, parts, ratio_claims = [], {}, [], {}
  for domain in DOMAINS:
    share = front["decllm_share"][domain]
    text = f"DecLLM holds most of each seed's frontier ({domain})"
    claims.append(measured(text, share, 0.5, digits=2))
    effects[text] = (share, 0.5)
    parts.append(
      f"{domain}: DecLLM's share of each seed's frontier {stats.fmt(share)}, "
      f"of the means' frontier {front['decllm_share_on_means'][domain]:.2f}"
    )
    flops_ratio, params_ratio = ratios[domain]["flops"], ratios[domain]["params"]
    if flops_ratio:
      r = flops_ratio["ratio"]
      distance = {"mean": abs(r["mean"] - 1), "se": r["se"], "n": r["n"]}
      text = f"against FLOPs the fitted curves are within {OVERLAP:.0%} ({domain})"
      claims.append(measured(text, distance, OVERLAP, above=False))
      effects[text] = (distance, OVERLAP)
      ratio_claims[text] = (domain, "flops", OVERLAP)
      parts.append(f"fitted Red/Dec PPL at {flops_ratio['x']:.2e} FLOPs {stats.fmt(r, 3)}")
    if params_ratio:
      r = params_ratio["ratio"]
      text = f"DecLLM has the lower fitted PPL at equal parameters ({domain})"
      claims.append(measured(text, r, 1.0))
      effects[text] = (r, 1.0)
      ratio_claims[text] = (domain, "params", 0.0)
      parts.append(f"at {params_ratio['x']:.2e} parameters {stats.fmt(r, 3)}")
  n = front["decllm_share"][DOMAINS[0]]
  return _finding(
    "Compute-optimal frontier",
    "DecLLM dominates the frontier; against training FLOPs the curves nearly overlap; "
    "DecLLM is more parameter-efficient",
    claims,
    "; ".join(parts) + f" ({_n(n)})",
    decides=" ".join(
      filter(
        None, (_deciding_scale_text(scaling, claims, ratio_claims), _seeds_needed(claims, effects))
      )
    ),
  )


# ----------------------------------------------------------------------------- harness


def _downstream(harness: Mapping[str, Any], model: str, shots: int) -> dict[str, float]:
  """{seed: downstream score} of a model."""
  members = scores.group_members(harness["tasks"], "downstream")
  return scores.group_scores(harness["per_seed"][model], members, shots)


def _difference(harness, better: str, worse: str, shots: int) -> stats.Stat:
  """better - worse on the downstream tasks, paired by seed."""
  b, w = _downstream(harness, better, shots), _downstream(harness, worse, shots)
  common = sorted(set(b) & set(w))
  return stats.paired([b[s] for s in common], [w[s] for s in common])


def _score_text(harness, names: Sequence[str], shots: int) -> str:
  return f"{shots}-shot downstream: " + ", ".join(
    f"{n} {scores.cell(harness['summary'][n][f'downstream@{shots}shot'])}" for n in names
  )


def _floor_gate(harness, names: Sequence[str], shots: int) -> Optional[str]:
  """Some compared model beats its downstream floor (the best shortcut) at p < ALPHA, seed
  and item noise together (normal): else no comparison of scores means anything."""
  for n in names:
    f = harness["summary"][n][f"downstream@{shots}shot"]
    if scipy_stats.norm.sf((f["mean"] - f["floor"]) / scores.total_se(f)) < ALPHA:
      return None
  return f"No compared model scores above its floor (the best shortcut) at p < {ALPHA}."


def _chance_scale(harness: Mapping[str, Any], scaling: Mapping[str, Any]) -> str:
  """Where the fits say the pretrained models' 0-shot continuation accuracy would clear
  the task's floor by 3 item SEs: a line of accuracy on log PPL across (model, seed),
  then the pooled FLOPs fit of each architecture read at that PPL."""
  task = f"{scores.CONTINUATION}@0shot"
  info = harness["tasks"].get(scores.CONTINUATION)
  if info is None:
    return f"No estimate: {scores.CONTINUATION} was not run."
  # The harness scored each architecture's largest size at that size's longest budget.
  largest = {}
  for r in scaling["runs"]:
    best = largest.get(r["architecture"])
    if best is None or (r["params"], r["steps"]) > best:
      largest[r["architecture"]] = (r["params"], r["steps"])
  runs = {
    (r["architecture"], str(r["seed"])): r
    for r in scaling["runs"]
    if (r["params"], r["steps"]) == largest[r["architecture"]]
  }
  x, y = [], []
  for (arch, seed), r in runs.items():
    seeds = harness["per_seed"].get(f"{arch}/pretrained", {})
    if seed in seeds:
      x.append(math.log(r["in_domain"]))
      y.append(seeds[seed][task])
  if len(x) < 3 or np.ptp(x) == 0:
    return "No estimate: fewer than 3 pretrained (model, seed) points with distinct PPL."
  fit = scipy_stats.linregress(x, y)
  if not (fit.slope < 0 and fit.pvalue < 0.05):
    return (
      f"No estimate: continuation accuracy does not fall with PPL across the "
      f"{len(x)} pretrained (model, seed) points (slope {fit.slope:.3f} per log PPL, "
      f"p = {fit.pvalue:.2f})."
    )
  target = info["floor"] + 3 * stats.binomial_se(info["floor"], info["items"])
  ppl = math.exp((target - fit.intercept) / fit.slope)
  parts = []
  for arch in ("decllm", "redllm"):
    law = scaling["fits"]["in_domain"]["flops"][arch]
    if law and law["b"] > 0:
      parts.append(f"{arch} at {(law['a'] / ppl) ** (1 / law['b']):.2e} training FLOPs")
  return (
    f"Accuracy on log in-domain PPL across {len(x)} (model, seed) points reaches floor "
    f"+ 3 item SE ({100 * target:.1f}%) at in-domain PPL {ppl:.1f}; by the pooled FLOPs "
    f"fits: " + (", ".join(parts) or "no positive exponent to read it from") + "."
  )


def _harness_decides(harness, scaling, gate: Optional[str], claims, effects) -> str:
  if gate:
    return _chance_scale(harness, scaling)
  return "No scale estimate for a score difference. " + _seeds_needed(claims, effects)


def pretrained_shots(harness: Mapping[str, Any], scaling: Mapping[str, Any]) -> Finding:
  names = ("decllm/pretrained", "redllm/pretrained")
  claims, effects = [], {}
  for k in harness["shots"]:
    diff = _difference(harness, *names, k)
    text = f"DecLLM above RedLLM at {k} shots"
    claims.append(measured(text, diff, 0.0, digits=1, scale=100))
    effects[text] = (diff, 0.0)
  k = max(harness["shots"])
  gate = _floor_gate(harness, names, k)
  return _finding(
    "Zero/few-shot after pretraining",
    "RedLLM is weak: 8B few-shot average 35.13 vs DecLLM's 43.37",
    claims,
    _score_text(harness, names, k)
    + "; Dec - Red paired by seed "
    + stats.fmt(effects[claims[-1].text][0], 1, 100)
    + " points",
    decides=_harness_decides(harness, scaling, gate, claims, effects),
    gate=gate,
  )


PAPER_TUNED = ("decllm/flan", "redllm/flan", "decllm_biattn/flan")  # the paper's front


def _on_front(harness, name: str, shots: int) -> bool:
  """No other of the paper's finetuned models is at least as good (mean score) at no more
  inference FLOPs, and better in one (adapted models are the adaptation section's)."""
  cost = harness["inference_flops"]
  quality = {
    n: harness["summary"][n][f"downstream@{shots}shot"]["mean"]
    for n in PAPER_TUNED
    if n in harness["summary"]
  }
  return not any(
    cost[o] <= cost[name]
    and quality[o] >= quality[name]
    and (cost[o] < cost[name] or quality[o] > quality[name])
    for o in quality
    if o != name
  )


def finetuned_pareto(harness: Mapping[str, Any], scaling: Mapping[str, Any]) -> Finding:
  k = max(harness["shots"])
  names = ("redllm/flan", "decllm/flan")
  diff = _difference(harness, *names, k)
  cost = harness["inference_flops"]
  ratio = cost["redllm/flan"] / cost["decllm/flan"]
  text = f"RedLLM comparable or better (not worse by {100 * NONINFERIOR:g} points or more)"
  claims = [
    measured(text, diff, -NONINFERIOR, digits=1, scale=100),
    context("RedLLM needs fewer inference FLOPs", ratio < 1, f"Red/Dec {ratio:.2f}, analytic"),
    context(
      "RedLLM is on the finetuned Pareto front",
      _on_front(harness, "redllm/flan", k),
      "of the mean scores; the cheaper model is on it by construction",
    ),
  ]
  effects = {text: (diff, -NONINFERIOR)}
  gate = _floor_gate(harness, names, k)
  return _finding(
    "After FLAN tuning",
    "RedLLM comparable or better (8B few-shot 61.32 vs 59.02) at substantially lower "
    "inference FLOPs; it dominates the quality/inference-cost Pareto front",
    claims,
    _score_text(harness, names, k) + f"; Red - Dec paired by seed {stats.fmt(diff, 1, 100)} "
    f"points; inference FLOPs Red/Dec {ratio:.2f}",
    decides=_harness_decides(harness, scaling, gate, claims, effects),
    gate=gate,
  )


def biattn(harness: Mapping[str, Any], scaling: Mapping[str, Any]) -> Finding:
  k = max(harness["shots"])
  names = ("decllm_biattn/flan", "decllm/flan", "redllm/flan")
  diff = _difference(harness, "decllm_biattn/flan", "decllm/flan", k)
  claims = [
    measured("BiAttn scores above DecLLM", diff, 0.0, digits=1, scale=100),
    context(
      "RedLLM is on the finetuned Pareto front",
      _on_front(harness, "redllm/flan", k),
      "of the mean scores; the cheaper model is on it by construction",
    ),
  ]
  effects = {claims[0].text: (diff, 0.0)}
  gate = _floor_gate(harness, names, k)
  return _finding(
    "BiAttn ablation",
    "DecLLM + BiAttn improves on DecLLM after finetuning; RedLLM keeps the best "
    "quality/efficiency trade-off",
    claims,
    _score_text(harness, names, k) + f"; BiAttn - Dec paired by seed "
    f"{stats.fmt(diff, 1, 100)} points",
    decides=_harness_decides(harness, scaling, gate, claims, effects),
    gate=gate,
  )


# ----------------------------------------------------------------------------- 5 and 6


def extrapolation(extrap: Mapping[str, Any]) -> Finding:
  """RedLLM's PPL rises smoothly past the training length; DecLLM's degrades beyond ~2x."""
  training = extrap["training_length"]
  per_seed = list(extrap["per_seed"].values())

  def curve(seed_result, arch) -> dict[float, float]:
    return {s["length"] / training: s["ppl"] for s in seed_result[arch]["summary"]}

  steps = {"redllm": [], "decllm": []}
  dec_sharp, rise = [], []
  for result in per_seed:
    red, dec = curve(result, "redllm"), curve(result, "decllm")
    for arch, c in (("redllm", red), ("decllm", dec)):
      values = np.array(list(c.values()))
      steps[arch].append(float(np.max(values[1:] / values[:-1])) if values.size > 1 else 1.0)
    if 2 in dec:
      dec_sharp.append(dec[max(dec)] / dec[2])
    rise.append((red[max(red)] / red[min(red)]) / (dec[max(dec)] / dec[min(dec)]))
  effects = {
    "RedLLM's overall rise clearly below DecLLM's (ratio of the two below 0.9)": (
      stats.mean_se(rise),
      0.9,
    )
  }
  if dec_sharp:
    effects["DecLLM degrades sharply beyond 2x (longest over 2x above x1.5)"] = (
      stats.mean_se(dec_sharp),
      SHARP,
    )
  claims = [
    measured(text, e, t, above=text.startswith("DecLLM")) for text, (e, t) in effects.items()
  ]
  # Smoothness does not separate the architectures when both have it: shown, not counted.
  for arch, name in (("redllm", "RedLLM"), ("decllm", "DecLLM")):
    step = stats.mean_se(steps[arch])
    claims.append(
      context(
        f"{name} rises smoothly (largest step below x{SMOOTH})",
        step["mean"] < SMOOTH,
        stats.fmt(step, 3),
      )
    )
  curves = "; ".join(
    f"{arch} PPL at " + ", ".join(f"{r['ratio']:g}x {stats.fmt(r['ppl'], 1)}" for r in rows)
    for arch, rows in extrap["summary"].items()
  )
  return _finding(
    "Length extrapolation",
    "RedLLM's PPL rises smoothly past the training length; DecLLM's degrades sharply "
    "beyond about 2x",
    claims,
    curves + f" (n = {len(per_seed)} seeds)",
    decides="Length behaviour is not read off a scaling fit: no scale estimate. "
    + _seeds_needed(claims, effects),
  )


def attention(locality: Mapping[str, Any], cross: Mapping[str, Any]) -> Finding:
  def local(arch: str) -> np.ndarray:  # per seed, the mean over query offsets
    return np.mean([c["local_mass_per_seed"] for c in locality["locality"][arch].values()], 0)

  dec, red = local("decllm"), local("redllm")
  seeds = list(cross["per_seed"].values())
  margin = [s["top_key_overlap"] - 1.5 * s["random_overlap"] for s in seeds]
  entropy = cross["entropy_ratio"]
  effects = {
    "decoder self-attention is local in both (the lower mass above uniform)": (
      stats.mean_se(np.minimum(dec, red)),
      UNIFORM_LOCAL,
    ),
    "more local in DecLLM": (stats.paired(dec, red), 0.0),
    "cross-attention stable (top-key overlap minus 1.5x random, above 0)": (
      stats.mean_se(margin),
      0.0,
    ),
    "cross-attention diverse, not one key (entropy above 0.5 of uniform)": (entropy, 0.5),
    "cross-attention a subset, not uniform (entropy below 0.95 of uniform)": (entropy, 0.95),
  }
  generic = "decoder self-attention is local in both (the lower mass above uniform)"
  claims = [
    measured(text, e, t, above="below" not in text, counts=text != generic)
    for text, (e, t) in effects.items()
  ]
  return _finding(
    "Attention patterns",
    "decoder self-attention decays with distance in both, worse in DecLLM; RedLLM's "
    "cross-attention keeps attending to a stable, diverse subset of input tokens",
    claims,
    f"attention mass within 1/8 of the visible span (uniform {UNIFORM_LOCAL}): DecLLM "
    f"{stats.fmt(stats.mean_se(dec), 3)}, RedLLM {stats.fmt(stats.mean_se(red), 3)}; "
    f"cross-attention top-{cross['top_keys']} key overlap "
    f"{stats.fmt(cross['top_key_overlap'], 3)} (random sets "
    f"{cross['random_overlap']['mean']:.3f}); entropy {stats.fmt(entropy, 2)} of uniform "
    f"(n = {len(seeds)} seeds)",
    decides="Attention measures are not read off a scaling fit: no scale estimate. "
    + _seeds_needed(claims, effects),
  )


JUDGES = (
  lambda o: scaling_exponents(o["scaling"]),
  lambda o: frontier(o["scaling"]),
  lambda o: pretrained_shots(o["harness"], o["scaling"]),
  lambda o: finetuned_pareto(o["harness"], o["scaling"]),
  lambda o: extrapolation(o["extrapolation"]),
  lambda o: attention(o["locality"], o["cross_attention"]),
  lambda o: biattn(o["harness"], o["scaling"]),
)
LADDER = (0, 1)  # the findings that read the scaling ladder (the others: the largest pair)


def all_findings(outputs: Mapping[str, Any]) -> list[Finding]:
  """The seven findings, in DESIGN.md's order, from the stages' JSON outputs, each with
  its robustness (`robustness.verdicts`)."""
  found = [judge(outputs) for judge in JUDGES]
  return [
    dataclasses.replace(f, robustness=r)
    for f, r in zip(found, robustness.verdicts(JUDGES, outputs, LADDER))
  ]
