"""Findings from synthetic per-seed outputs: each sub-claim is the one-sided t test scipy
computes, verdicts follow the declared rules, context never counts, and the report
renders every number with its SE."""

import math

import pytest
from scipy import stats as scipy_stats

from redllm_jax.study import findings, report, scaling, stats
from redllm_jax.study.plan import StudyPlan
import study_outputs


def _stat(mean, se, n=3):
  return {"mean": mean, "se": se, "n": n}


@pytest.mark.parametrize("n", [3, 5])
def test_a_claim_is_a_one_sided_t_test_with_n_minus_1_degrees_of_freedom(n):
  for t in (0.5, 1.5, 2.5, 4.0, 10.0):
    claim = findings.measured("effect above 0", _stat(t * 0.01, 0.01, n), 0.0)
    p = scipy_stats.t.sf(t, df=n - 1)  # the independent reference
    assert claim.status == ("holds" if p < 0.05 else "undecided")
    assert claim.p == pytest.approx(p if p < 0.05 else min(p, 1 - p))
    below = findings.measured("effect below 0", _stat(t * 0.01, 0.01, n), 0.0, above=False)
    assert below.status == ("fails" if p < 0.05 else "undecided")
  # |z| = 1 with 3 seeds, "decided" under the old rule, is p = 0.21: undecided now.
  assert findings.measured("x", _stat(0.01, 0.01), 0.0).status == "undecided"
  assert findings.measured("x", _stat(0.05, math.nan, n=1), 0.0).status == "undecided"


def test_the_verdict_rules_and_the_strength_the_verdict_rests_on():
  holds = findings.measured("a", _stat(0.05, 0.01), 0.0)  # t 5, p 0.019
  strong = findings.measured("a2", _stat(0.2, 0.01), 0.0)  # t 20
  fails = findings.measured("b", _stat(-0.05, 0.01), 0.0)
  noise = findings.measured("c", _stat(0.001, 0.01), 0.0)
  assert findings.judge([holds, fails, noise]) == ("partly reproduced", pytest.approx(holds.p))
  assert findings.judge([holds, strong]) == ("reproduced", pytest.approx(holds.p))
  assert findings.judge([fails])[0] == "not reproduced"
  verdict, p = findings.judge([holds, noise])  # one holds, one undecided: not yet reproduced
  assert verdict == "inconclusive" and p == pytest.approx(noise.p)
  # Context never counts, whether it holds or not.
  free = findings.context("the cheaper model is on the front", True, "by construction")
  assert findings.judge([noise, free])[0] == "inconclusive"
  assert findings.judge([holds, findings.context("x", False, "")]) == (
    "reproduced",
    pytest.approx(holds.p),
  )


@pytest.mark.parametrize(
  "dec_b,red_b,verdict", [(0.20, 0.24, "reproduced"), (0.24, 0.20, "not reproduced")]
)
def test_exponent_verdict_follows_the_per_seed_fits(dec_b, red_b, verdict):
  out = study_outputs.outputs(b={"decllm": dec_b, "redllm": red_b})
  assert findings.scaling_exponents(out["scaling"]).verdict == verdict
  rising = scaling.summarize(study_outputs.runs({"decllm": -0.05, "redllm": 0.10}))
  found = findings.scaling_exponents(rising)
  assert found.verdict == "inconclusive" and "negative" in found.measured


def test_exponent_difference_within_seed_noise_is_inconclusive_with_seeds_needed():
  rows = study_outputs.runs({"decllm": 0.20, "redllm": 0.20}, (0.0, 0.0, 0.0))
  for r in rows:  # Red's exponent per seed 0.19, 0.20, 0.215: mean difference 0.0017
    if r["architecture"] == "redllm":
      shift = (-0.01, 0.0, 0.015)[r["seed"]]
      r["in_domain"] *= r["train_flops"] ** -shift
      r["out_of_domain"] *= r["train_flops"] ** -shift
  found = findings.scaling_exponents(scaling.summarize(rows))
  assert found.verdict == "inconclusive" and found.p > 0.05
  assert "seeds for p < 0.05 (80% power)" in found.decides
  assert "does not grow with scale" in found.decides


def test_harness_verdicts_follow_scores_and_their_seed_noise():
  clear = study_outputs.outputs()
  for judge in (findings.pretrained_shots, findings.finetuned_pareto, findings.biattn):
    assert judge(clear["harness"], clear["scaling"]).verdict == "reproduced"
  close = study_outputs.harness(
    {
      "decllm/pretrained": 0.505,
      "redllm/pretrained": 0.50,
      "decllm/flan": 0.5,
      "redllm/flan": 0.5,
      "decllm_biattn/flan": 0.5,
    },
    spread=0.0,
  )
  # Seeds differ: a difference of 0.5 points over an SE of ~0.8 is within noise.
  close["per_seed"]["redllm/pretrained"]["1"] = {
    k: v + 0.02 for k, v in close["per_seed"]["redllm/pretrained"]["1"].items()
  }
  found = findings.pretrained_shots(close, clear["scaling"])
  assert found.verdict == "inconclusive" and "seeds" in found.decides
  reversed_ = study_outputs.harness(
    {
      "decllm/pretrained": 0.3,
      "redllm/pretrained": 0.7,
      "decllm/flan": 0.9,
      "redllm/flan": 0.3,
      "decllm_biattn/flan": 0.5,
    }
  )
  assert findings.pretrained_shots(reversed_, clear["scaling"]).verdict == "not reproduced"
  # Red 60 points worse: non-inferiority fails; the Pareto front is context, not counted.
  assert findings.finetuned_pareto(reversed_, clear["scaling"]).verdict == "not reproduced"


def test_harness_at_the_floor_is_inconclusive_and_says_what_would_decide_it():
  out = study_outputs.outputs()
  at_chance = study_outputs.harness({m: 0.18 for m in study_outputs.MODELS}, spread=0.005)
  for judge in (findings.pretrained_shots, findings.finetuned_pareto, findings.biattn):
    found = judge(at_chance, out["scaling"])
    assert found.verdict == "inconclusive" and "above its floor" in found.measured
  # Above chance but below a shortcut's floor: still inconclusive.
  floored = study_outputs.harness({m: 0.45 for m in study_outputs.MODELS}, spread=0.005, floor=0.5)
  found = findings.pretrained_shots(floored, out["scaling"])
  assert found.verdict == "inconclusive" and "above its floor" in found.measured


def test_chance_scale_reads_the_accuracy_trend_through_the_fits():
  out = study_outputs.outputs()
  harness = study_outputs.harness({m: 0.18 for m in study_outputs.MODELS}, spread=0.0)
  largest = {
    (r["architecture"], str(r["seed"])): r["in_domain"]
    for r in out["scaling"]["runs"]
    if r["size"] == "l" and r["steps"] == 400
  }
  for (arch, seed), ppl in largest.items():  # accuracy = 1.0 - 0.3 log PPL, exactly
    harness["per_seed"][f"{arch}/pretrained"][seed] = {
      k: 1.0 - 0.3 * math.log(ppl) for k in harness["per_seed"][f"{arch}/pretrained"][seed]
    }
  text = findings._chance_scale(harness, out["scaling"])  # pylint: disable=protected-access
  target = 0.25 + 3 * math.sqrt(0.25 * 0.75 / 400)
  ppl = math.exp((1.0 - target) / 0.3)
  assert f"in-domain PPL {ppl:.1f}" in text
  law = out["scaling"]["fits"]["in_domain"]["flops"]["decllm"]
  assert f"decllm at {(law['a'] / ppl) ** (1 / law['b']):.2e}" in text


def test_extrapolation_and_attention_verdicts():
  out = study_outputs.outputs()
  assert findings.extrapolation(out["extrapolation"]).verdict == "reproduced"
  flat_dec = study_outputs.extrapolation_output(
    [[10, 10, 10, 11]] * 3, [[12, 20, 40, 80], [12, 21, 41, 82], [12, 19, 39, 79]]
  )
  found = findings.extrapolation(flat_dec)
  assert found.verdict == "not reproduced" and "context, not counted" in found.measured
  assert findings.attention(out["locality"], out["cross_attention"]).verdict == "reproduced"
  locality, cross = study_outputs.attention_output(
    [0.4, 0.42, 0.41], [0.6, 0.62, 0.61], concentrated=False
  )
  found = findings.attention(locality, cross)
  # More local in RedLLM (fails); "local in both" is context; the cross-attention holds.
  assert found.verdict == "partly reproduced" and "context, not counted" in found.measured


def _plan(**overrides):
  return StudyPlan(
    sizes={"s": "s.gin", "m": "m.gin", "l": "l.gin"},
    budgets={"s": [100, 200, 400], "m": [100, 200, 400], "l": [100, 200, 400]},
    pretrain_experiments={"decllm": "d.gin", "redllm": "r.gin"},
    finetune_experiments={"decllm": "df.gin", "redllm": "rf.gin", "decllm_biattn": "bf.gin"},
    in_domain="demo_redpajama",
    out_of_domain="demo_paloma",
    **overrides,
  )


def _adapted(seed):
  return {
    "name": f"redllm_adapted_l_s{seed}",
    "point": "redllm_adapted_l",
    "seed": seed,
    "architecture": "redllm_adapted",
    "train_flops": 1e12,
    "parent_train_flops": 4e12,
    "parent": f"decllm_l_400_s{seed}",
    "metrics": {"demo_redpajama/perplexity": 50.0 + seed, "demo_paloma/perplexity": 90.0 + seed},
    "config": {
      "vocab_size": 1024,
      "d_model": 64,
      "d_ff": 256,
      "num_heads": 4,
      "head_dim": 16,
      "num_layers": 4,
      "num_encoder_layers": 4,
    },
  }


def test_report_renders_every_section_with_its_se(tmp_path):
  out = study_outputs.outputs(adapt=[_adapted(s) for s in range(3)])
  scored = {m: 0.6 for m in study_outputs.MODELS}
  out["harness"] = study_outputs.harness(
    {**scored, "redllm/pretrained": 0.4, "redllm_adapted/adapted": 0.5}
  )
  out["overhead"] = {
    "training_units": 57,
    "seconds_outside_steps": 600.0,
    "per_unit": 10.5,
    "share": 0.2,
    "scoring_seconds": 300.0,
  }
  out["throughput"] = {
    "flops_per_s": 3e10,
    "runs": 57,
    "fraction": 0.25,
    "workers": 2,
    "ceiling": {"flops_per_s": 1.2e11, "measured": "2026-12-02T03:00"},
  }
  (tmp_path / "harness").mkdir()
  (tmp_path / "harness" / "harness.md").write_text("| task |\n")
  judged = findings.all_findings(out)
  path = report.write_report(
    str(tmp_path / "REPORT.md"), _plan(), out, judged, "cmd", ["g.gin"], {"unit": 1.0}
  )
  text = open(path).read()
  assert report.summary_table(judged) in text
  for i, f in enumerate(judged, 1):
    assert f"| {i} | **{f.title}** | **{f.verdict}** |" in text
    assert f"**{i}. {f.title}** — **{f.verdict}**" in text
  assert "n = 3 seeds** for the scaling ladder" in text
  assert "25.0%** of the f32 matmul ceiling" in text
  assert "The bar:" in text and "**met**" in text and "then | now" in text
  assert "one-sided t test" in text and "Fixed overhead" in text
  # At 1x the seeds' PPLs are 10, 10, 10 (DecLLM) and 12, 12, 12 (RedLLM).
  assert "decllm 40.0 ± 0.0 (the rest 10.0 ± 0.0); redllm 48.0 ± 0.0 (the rest 12.0" in text
  for f in judged:
    assert f.robustness.startswith(("robust", "fragile"))
  assert "redllm_adapted_l" in text and "read off its fit" in text
  assert "| continuation@0shot | 50.0 ± 0.6 (items ± 2.5; chance 25.0; floor 25.0) |" in text
  point = out["scaling"]["points"][0]
  assert stats.fmt(point["in_domain"]) in text  # the runs table carries each point's SE
  out["adapt"], out["throughput"]["ceiling"] = [], None
  text = open(
    report.write_report(
      str(tmp_path / "REPORT.md"), _plan(), out, judged, "cmd", ["g.gin"], {"unit": 1.0}
    )
  ).read()
  assert "no adaptation runs: this section is omitted" in text
  assert "no `ceiling.json`" in text
