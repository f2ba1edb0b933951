"""The paper's seven findings (DESIGN.md section 2), each judged on this study's outputs.

Nothing here is a result: every verdict is computed from the files the stages
wrote; the paper's numbers are only the reference column. Strength is the
measured effect over its standard error (z): "strong" at z >= 3, "weak" at
1 <= z < 3, and within noise below 1, which makes the verdict "inconclusive".
"""
import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np

from redllm_jax.study.scaling import DOMAINS, PAPER_EXPONENTS, shot_average


@dataclasses.dataclass(frozen=True)
class Finding:
  title: str
  paper: str
  measured: str
  verdict: str  # reproduced, partly reproduced, not reproduced, inconclusive
  strength: str


def strength(z: float) -> str:
  if not math.isfinite(z):
    return "no error estimate"
  return "strong" if abs(z) >= 3 else "weak" if abs(z) >= 1 else "within noise"


def _verdict(holds: Sequence[bool], z: float = math.inf) -> str:
  if abs(z) < 1:
    return "inconclusive"
  if all(holds):
    return "reproduced"
  return "partly reproduced" if any(holds) else "not reproduced"


def _claims(claims: Sequence[tuple[str, bool]]) -> str:
  return " Sub-claims: " + "; ".join(f"{text} [{'holds' if ok else 'fails'}]"
                                     for text, ok in claims) + "."


def _judged(title: str, paper: str, measured: str, claims: Sequence[tuple[str, bool]],
            strength_text: str) -> Finding:
  """A finding whose verdict is its sub-claims' (no error estimate to gate it)."""
  return Finding(title, paper, measured + _claims(claims), _verdict([ok for _, ok in claims]),
                 strength_text)


def _z(diff: float, *stderrs: float) -> float:
  se = math.sqrt(sum(s * s for s in stderrs))
  return diff / se if se > 0 else math.inf


def scaling_exponents(fits: Mapping[str, Any]) -> Finding:
  """The paper's exponents are larger for RedLLM against FLOPs (both domains)."""
  parts, claims, zs, positive = [], [], [], []
  for domain in DOMAINS:
    for axis in ("flops", "params"):
      d, r = fits[domain][axis]["decllm"], fits[domain][axis]["redllm"]
      if d is None or r is None:
        continue
      parts.append(f"{domain} {axis}: Dec {d['b']:.3f}, Red {r['b']:.3f}")
      positive += [d["b"] > 0, r["b"] > 0]
      if axis == "flops":
        claims.append((f"RedLLM's FLOPs exponent is the larger ({domain})", r["b"] > d["b"]))
        zs.append(_z(r["b"] - d["b"], d["b_stderr"], r["b_stderr"]))
  z = min(zs, key=abs) if zs else math.nan
  # A negative exponent (PPL rising with scale) means the fit describes noise.
  note = "" if all(positive) else " Some exponent is negative: the fits describe noise."
  verdict = (_verdict([ok for _, ok in claims], z if math.isfinite(z) else math.inf)
             if all(positive) else "inconclusive")
  return Finding(
      "Fitted scaling exponents",
      "; ".join(f"{dom} {ax}: Dec {v['decllm']:.2f}, Red {v['redllm']:.2f}"
                for (dom, ax), v in PAPER_EXPONENTS.items()) +
      " (RedLLM's FLOPs exponent is the larger)",
      "; ".join(parts) + "." + _claims(claims) + note, verdict, strength(z))


OVERLAP = 0.10  # fitted curves "nearly overlap" when within 10% of each other


def _fit_ratio(fits, domain: str, axis: str, x: float) -> float:
  """Fitted Red PPL over fitted Dec PPL at x (> 1: DecLLM better there)."""
  d, r = fits[domain][axis]["decllm"], fits[domain][axis]["redllm"]
  return (r["a"] * x ** -r["b"]) / (d["a"] * x ** -d["b"])


def frontier(scaling: Mapping[str, Any]) -> Finding:
  """DecLLM dominates the frontier; the FLOPs curves nearly overlap; Dec is more param-efficient."""
  rows, fits = scaling["runs"], scaling["fits"]
  arch = {r["name"]: r["architecture"] for r in rows}
  mid_flops = float(np.exp(np.mean(np.log([r["train_flops"] for r in rows]))))
  mid_params = float(np.exp(np.mean(np.log([r["params"] for r in rows]))))
  parts, shares, overlap, efficient = [], [], [], []
  for domain in DOMAINS:
    front = scaling["frontier"][domain]
    dec = sum(arch[n] == "decllm" for n in front)
    shares.append(dec / len(front))
    parts.append(f"{domain}: {dec} of {len(front)} frontier runs are DecLLM")
    if fits[domain]["flops"]["decllm"] and fits[domain]["flops"]["redllm"]:
      ratio = _fit_ratio(fits, domain, "flops", mid_flops)
      overlap.append(abs(ratio - 1) < OVERLAP)
      parts.append(f"fitted Red/Dec PPL at {mid_flops:.2e} FLOPs {ratio:.3f}")
    if fits[domain]["params"]["decllm"] and fits[domain]["params"]["redllm"]:
      ratio = _fit_ratio(fits, domain, "params", mid_params)
      efficient.append(ratio > 1)
      parts.append(f"at {mid_params:.2e} parameters {ratio:.3f}")
  claims = [("DecLLM holds most frontier runs in every domain", all(s > 0.5 for s in shares)),
            (f"against FLOPs the fitted curves are within {OVERLAP:.0%}", all(overlap)),
            ("DecLLM has the lower fitted PPL at equal parameters", all(efficient))]
  return _judged(
      "Compute-optimal frontier",
      "DecLLM dominates the frontier; against training FLOPs the curves nearly overlap; "
      "DecLLM is more parameter-efficient",
      "; ".join(parts) + ".", claims, "no error bar: one seed per run")


def _harness_se(p: float, n: int) -> float:
  return math.sqrt(max(p * (1 - p), 1e-12) / max(n, 1))


def _scores(harness: Mapping[str, Any], name: str, shots: int) -> tuple[float, float]:
  """(average score, its binomial standard error over all items) at `shots`."""
  p = shot_average(harness["results"][name], shots)
  return p, _harness_se(p, sum(harness["examples"].values()))


def _compare(harness, better: str, worse: str, shots: int) -> tuple[str, bool, float]:
  (pb, sb), (pw, sw) = _scores(harness, better, shots), _scores(harness, worse, shots)
  z = _z(pb - pw, sb, sw)
  chance = 100 * float(np.mean(list(harness["chance"].values())))
  text = (f"{shots}-shot: {better} {100 * pb:.1f} vs {worse} {100 * pw:.1f} "
          f"(± {100 * math.hypot(sb, sw):.1f}; chance {chance:.1f})")
  return text, pb > pw, z


def pretrained_shots(harness: Mapping[str, Any]) -> Finding:
  texts, holds, zs = [], [], []
  for k in harness["shots"]:
    text, holds_k, z = _compare(harness, "decllm/pretrained", "redllm/pretrained", k)
    texts.append(text)
    holds.append(holds_k)
    zs.append(z)
  z, k = zs[-1], max(harness["shots"])  # the verdict rests on the paper's few-shot figure
  names = ("decllm/pretrained", "redllm/pretrained")
  return Finding("Zero/few-shot after pretraining",
                 "RedLLM is weak: 8B few-shot average 35.13 vs DecLLM's 43.37",
                 "; ".join(texts) + "." + _claims(
                     [(f"DecLLM above RedLLM at {k} shots", ok)
                      for k, ok in zip(harness["shots"], holds)])
                 + _chance_note(harness, names, k),
                 _harness_verdict(harness, names, k, holds, z), strength(z))


def _above_chance(harness: Mapping[str, Any], names: Sequence[str], shots: int) -> bool:
  """Some model beats guessing by more than one standard error: scores can be compared."""
  chance = float(np.mean(list(harness["chance"].values())))
  return any(p - se > chance for p, se in (_scores(harness, n, shots) for n in names))


def _harness_verdict(harness, names: Sequence[str], shots: int, holds: Sequence[bool],
                     z: float) -> str:
  if not _above_chance(harness, names, shots):
    return "inconclusive"  # at chance, a difference in quality means nothing
  return _verdict(holds, z)


NOT_ABOVE_CHANCE = " No model scores above chance by more than one standard error."


def _chance_note(harness, names: Sequence[str], shots: int) -> str:
  return "" if _above_chance(harness, names, shots) else NOT_ABOVE_CHANCE


def _on_front(harness, name: str, shots: int) -> bool:
  """No finetuned model is at least as good at no more inference FLOPs (and better in one)."""
  cost, quality = harness["inference_flops"], {
      n: shot_average(harness["results"][n], shots) for n in harness["results"]}
  return not any(cost[o] <= cost[name] and quality[o] >= quality[name] and
                 (cost[o] < cost[name] or quality[o] > quality[name])
                 for o in quality if o.endswith("/flan") and o != name)


def finetuned_pareto(harness: Mapping[str, Any]) -> Finding:
  k = max(harness["shots"])
  text, better, z = _compare(harness, "redllm/flan", "decllm/flan", k)
  cost = harness["inference_flops"]
  claims = [("RedLLM comparable or better (not worse beyond one standard error)",
             better or abs(z) < 1),
            ("RedLLM needs fewer inference FLOPs", cost["redllm/flan"] < cost["decllm/flan"]),
            ("RedLLM is on the finetuned Pareto front", _on_front(harness, "redllm/flan", k))]
  names = ("redllm/flan", "decllm/flan")
  return Finding(
      "After FLAN tuning",
      "RedLLM comparable or better (8B few-shot 61.32 vs 59.02) at substantially lower "
      "inference FLOPs; it dominates the quality/inference-cost Pareto front",
      f"{text}; inference FLOPs per sequence Red/Dec = "
      f"{cost['redllm/flan'] / cost['decllm/flan']:.2f}." + _claims(claims)
      + _chance_note(harness, names, k),
      _harness_verdict(harness, names, k, [ok for _, ok in claims], math.inf), strength(z))


SHARP = 1.5  # "degrades sharply": PPL at the longest length over PPL at 2x
SMOOTH = 1.5  # "rises smoothly": no step between evaluated lengths multiplies PPL by more


def extrapolation(extrap: Mapping[str, Any]) -> Finding:
  """RedLLM's PPL rises smoothly past the training length; DecLLM's degrades beyond ~2x."""
  curves, parts = {}, []
  for arch in ("decllm", "redllm"):
    summary = extrap["results"][arch]["summary"]
    curves[arch] = {s["length"] / extrap["training_length"]: s["ppl"] for s in summary}
    ppl = list(curves[arch].values())
    parts.append(f"{arch} PPL at " + ", ".join(f"{r:g}x {p:.1f}"
                                               for r, p in curves[arch].items())
                 + f" (x{ppl[-1] / ppl[0]:.2f} overall)")
  dec, red = curves["decllm"], curves["redllm"]
  red_steps = np.array(list(red.values()))
  claims = [("RedLLM rises smoothly (no step above x1.5)",
             bool(np.all(red_steps[1:] / red_steps[:-1] <= SMOOTH))),
            ("DecLLM degrades sharply beyond 2x (longest over 2x above x1.5)",
             2 in dec and dec[max(dec)] / dec[2] > SHARP),
            ("RedLLM's overall rise clearly below DecLLM's (ratio of the two below 0.9)",
             (red[max(red)] / red[min(red)]) / (dec[max(dec)] / dec[min(dec)]) < 0.9)]
  return _judged(
      "Length extrapolation",
      "RedLLM's PPL rises smoothly past the training length; DecLLM's degrades sharply "
      "beyond about 2x",
      "; ".join(parts) + ".", claims, "no error bar: one set of windows")


def attention(locality: Mapping[str, Any], cross: Mapping[str, Any]) -> Finding:
  local = {arch: float(np.mean([c["local_mass"] for c in locality[arch].values()]))
           for arch in ("decllm", "redllm")}
  keys, top = len(cross["weights"][0][0]), cross["top_keys"]
  queries = len(cross["weights"][0])
  # A top-k set per query drawn at random: the expected share k / |union of the sets|.
  chance = top / (keys * (1 - (1 - top / keys) ** queries))
  overlap = float(np.mean(cross["top_key_overlap"]))
  entropy = float(np.mean(cross["entropy"])) / cross["uniform_entropy"]
  uniform = 0.125  # the local mass of uniform attention: 1/8 of the span
  claims = [("decoder self-attention is local in both (mass above uniform)",
             min(local.values()) > uniform),
            ("more local in DecLLM", local["decllm"] > local["redllm"]),
            ("cross-attention stable (top-key overlap above 1.5x random)",
             overlap > 1.5 * chance),
            ("cross-attention a diverse subset (entropy 0.5-0.95 of uniform)",
             0.5 < entropy < 0.95)]
  return _judged(
      "Attention patterns",
      "decoder self-attention decays with distance in both, worse in DecLLM; RedLLM's "
      "cross-attention keeps attending to a stable, diverse subset of input tokens",
      f"attention mass within 1/8 of the visible span (uniform: {uniform}): DecLLM "
      f"{local['decllm']:.3f}, RedLLM {local['redllm']:.3f}; cross-attention top-{top} key "
      f"overlap across queries {overlap:.3f} (random sets: {chance:.3f}); entropy "
      f"{entropy:.2f} of uniform.", claims, "no error bar: fixed thresholds")


def biattn(harness: Mapping[str, Any]) -> Finding:
  k = max(harness["shots"])
  text, better, z = _compare(harness, "decllm_biattn/flan", "decllm/flan", k)
  names = ("decllm_biattn/flan", "decllm/flan", "redllm/flan")
  claims = [("BiAttn scores above DecLLM", better),
            ("RedLLM is on the finetuned Pareto front", _on_front(harness, "redllm/flan", k))]
  return Finding(
      "BiAttn ablation",
      "DecLLM + BiAttn improves on DecLLM after finetuning; RedLLM keeps the best "
      "quality/efficiency trade-off",
      f"{text}." + _claims(claims) + _chance_note(harness, names, k),
      _harness_verdict(harness, names, k, [ok for _, ok in claims], z), strength(z))


def all_findings(outputs: Mapping[str, Any]) -> list[Finding]:
  """The seven findings, in DESIGN.md's order, from the stages' JSON outputs."""
  return [scaling_exponents(outputs["scaling"]["fits"]), frontier(outputs["scaling"]),
          pretrained_shots(outputs["harness"]), finetuned_pareto(outputs["harness"]),
          extrapolation(outputs["extrapolation"]),
          attention(outputs["locality"], outputs["cross_attention"]), biattn(outputs["harness"])]
