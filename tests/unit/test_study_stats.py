"""Seed statistics and the per-seed scaling summary, on synthetic runs with known answers."""

import math

import numpy as np
import pytest

from redllm_jax.study import fits, scaling, scores, stats
import study_outputs


def test_mean_se_and_paired_match_numpy():
  values = [3.0, 5.0, 4.5, 7.0]
  got = stats.mean_se(values)
  assert got["mean"] == pytest.approx(np.mean(values))
  assert got["se"] == pytest.approx(np.std(values, ddof=1) / 2.0)
  assert got["n"] == 4
  assert math.isnan(stats.mean_se([1.0])["se"])
  diff = stats.paired([3.0, 5.0, 4.0], [1.0, 2.0, 3.0])
  assert diff["mean"] == pytest.approx(2.0)
  assert diff["se"] == pytest.approx(np.std([2.0, 3.0, 1.0], ddof=1) / math.sqrt(3))
  assert stats.z_score({"mean": 1.0, "se": 0.25, "n": 3}, 0.5) == pytest.approx(2.0)
  assert stats.seeds_to_decide({"mean": 1.0, "se": 0.5, "n": 4}) == 9  # sd 1: (3/1)^2


def test_per_seed_fits_recover_each_exponent_and_its_seed_se():
  noise = (-0.02, 0.005, 0.03)
  rows = study_outputs.runs({"decllm": 0.20, "redllm": 0.24}, noise)
  out = scaling.summarize(rows)
  for seed, shift in enumerate(noise):
    fit = out["seed_fits"][str(seed)]["in_domain"]["flops"]["redllm"]
    assert fit["b"] == pytest.approx(0.24 + shift, rel=1e-9)
  b = out["exponents"]["in_domain"]["flops"]
  assert b["redllm"]["mean"] == pytest.approx(0.24 + np.mean(noise), rel=1e-9)
  assert b["redllm"]["se"] == pytest.approx(np.std(noise, ddof=1) / math.sqrt(3), rel=1e-6)
  # The shift is shared by both architectures of a seed: paired, it cancels exactly.
  assert b["red_minus_dec"]["mean"] == pytest.approx(0.04, rel=1e-6)
  assert b["red_minus_dec"]["se"] == pytest.approx(0.0, abs=1e-9)
  # The pooled fit sees all seeds at once; its regression SE is nonzero.
  assert out["fits"]["in_domain"]["flops"]["redllm"]["b_stderr"] > 0


def test_points_ratios_and_frontier_per_seed():
  rows = study_outputs.runs({"decllm": 0.20, "redllm": 0.22}, (0.0, 0.01, 0.02))
  out = scaling.summarize(rows)
  point = next(p for p in out["points"] if p["point"] == "decllm_l_400")
  ppls = [r["in_domain"] for r in rows if r["point"] == "decllm_l_400"]
  assert point["in_domain"]["mean"] == pytest.approx(np.mean(ppls))
  assert point["in_domain"]["se"] == pytest.approx(np.std(ppls, ddof=1) / math.sqrt(3))
  x = out["ratios"]["in_domain"]["flops"]["x"]
  expected, shares = [], []
  for seed in range(3):
    mine = [r for r in rows if r["seed"] == seed]
    law = {
      a: fits.fit_power_law(
        [r["train_flops"] for r in mine if r["architecture"] == a],
        [r["in_domain"] for r in mine if r["architecture"] == a],
      )
      for a in ("decllm", "redllm")
    }
    expected.append(float(law["redllm"](x) / law["decllm"](x)))
    front = fits.frontier([(r["train_flops"], r["in_domain"]) for r in mine])
    share = np.mean([mine[i]["architecture"] == "decllm" for i in front])
    assert out["frontier"]["per_seed"][seed]["in_domain"] == [mine[i]["point"] for i in front]
    shares.append(share)
  assert out["ratios"]["in_domain"]["flops"]["ratio"]["mean"] == pytest.approx(np.mean(expected))
  assert out["frontier"]["decllm_share"]["in_domain"]["mean"] == pytest.approx(np.mean(shares))


def test_deciding_scale_is_where_the_seed_ratios_reach_three_se():
  rows = study_outputs.runs({"decllm": 0.20, "redllm": 0.21}, (0.0, 0.0, 0.0))
  for r in rows:  # seed-specific offsets of Red's log a: the ratio carries a seed SE
    if r["architecture"] == "redllm":
      r["in_domain"] *= math.exp((-0.3, 0.1, 0.25)[r["seed"]])
  per_seed = scaling.seed_fits(rows)
  start = max(r["train_flops"] for r in rows)

  def z_at(x, threshold):
    ratios = np.array(
      [
        np.exp(
          scaling.log_ratio(f["in_domain"]["flops"]["decllm"], f["in_domain"]["flops"]["redllm"], x)
        )
        for f in per_seed.values()
      ]
    )
    return abs(abs(ratios.mean() - 1) - threshold) / (ratios.std(ddof=1) / math.sqrt(3))

  for threshold in (0.0, 0.1):
    found = scaling.deciding_scale(per_seed, "in_domain", "flops", start, threshold)
    assert not found["at_start"] and z_at(start, threshold) < 3
    assert 3 <= z_at(found["x"], threshold) < 3.05  # the first grid point past 3 SE
    assert found["ratio"]["mean"] < 1  # Red's larger exponent wins at scale
  decided = scaling.deciding_scale(per_seed, "in_domain", "flops", start, threshold=0.9)
  assert decided["at_start"] and decided["x"] == pytest.approx(start)  # |r - 1| << 0.9
  one_seed = scaling.deciding_scale({0: per_seed[0]}, "in_domain", "flops", start)
  assert one_seed["x"] is None and "2 seeds" in one_seed["reason"]


def test_harness_summary_seed_and_item_se_and_the_continuation_bar():
  out = study_outputs.harness(
    {"decllm/pretrained": 0.40, "redllm/flan": 0.27}, spread=0.02, items=400
  )
  figure = out["summary"]["decllm/pretrained"][f"{scores.CONTINUATION}@0shot"]
  values = [0.38, 0.40, 0.42]
  assert figure["mean"] == pytest.approx(0.40)
  assert figure["se"] == pytest.approx(np.std(values, ddof=1) / math.sqrt(3))
  assert figure["item_se"] == pytest.approx(math.sqrt(0.4 * 0.6 / 400))
  assert figure["chance"] == 0.25
  group = out["summary"]["decllm/pretrained"]["downstream@0shot"]
  assert group["items"] == 800 and group["chance"] == pytest.approx((0.25 + 0.1) / 2)
  bar = {(b["model"], b["shots"]): b for b in out["continuation_bar"]}
  z = 0.15 / math.hypot(figure["se"], figure["item_se"])
  assert bar[("decllm/pretrained", 0)]["z"] == pytest.approx(z)
  assert bar[("decllm/pretrained", 0)]["passes"]
  assert not bar[("redllm/flan", 5)]["passes"]  # 2 points above chance: under 3 SE


def test_task_groups_and_chance_from_the_shipped_manifest():
  import collections  # pylint: disable=g-import-not-at-top
  import pathlib  # pylint: disable=g-import-not-at-top

  root = pathlib.Path(__file__).resolve().parents[2]
  manifest = scores.load_manifest(str(root / "tasks/harness/*.jsonl"))
  task = collections.namedtuple("Task", "name examples")
  tasks = [task(n, [{}] * 3) for n in manifest] + [task("unlisted_mc", [{}] * 5)]
  info = scores.task_info(tasks, manifest, fallback_chance=lambda t: 0.2)
  assert info[scores.CONTINUATION]["group"] == "continuation"
  assert info[scores.CONTINUATION]["chance"] == manifest[scores.CONTINUATION]["chance"]
  for name, entry in manifest.items():
    if entry.get("held_out_family"):
      assert info[name]["group"] == "held-out families"
    elif entry.get("in_tuning_mixture"):
      assert info[name]["group"] == "tuned families"
  assert {"held-out families", "tuned families", "cloze"} <= {t["group"] for t in info.values()}
  assert info["unlisted_mc"] == {
    "chance": 0.2,
    "chance_from": "harness.chance_score",
    "floor": 0.2,
    "group": "other",
    "items": 5,
  }
  # The floor: the manifest's best shortcut (multiple choice) or best constant answer.
  for name, entry in manifest.items():
    expected = entry.get("floor", entry.get("majority_baseline", entry["chance"]))
    assert info[name]["floor"] == pytest.approx(max(entry["chance"], expected))
  downstream = scores.group_members(info, "downstream")
  assert scores.CONTINUATION in downstream and "unlisted_mc" not in downstream
  assert all(info[m]["group"] in ("continuation", "cloze") for m in downstream)


def test_run_scaling_reads_every_seed_result_and_writes_its_files(tmp_path):
  from redllm_jax.study import analyses  # pylint: disable=g-import-not-at-top
  from redllm_jax.study.directory import Study, write_json  # pylint: disable=g-import-not-at-top
  from redllm_jax.study.plan import StudyPlan  # pylint: disable=g-import-not-at-top

  plan = StudyPlan(
    sizes={"s": "s.gin", "m": "m.gin", "l": "l.gin"},
    budgets={"s": [100, 200, 400], "m": [100, 200, 400], "l": [100, 200, 400]},
    pretrain_experiments={"decllm": "d.gin", "redllm": "r.gin"},
    finetune_experiments={"decllm": "df.gin", "redllm": "rf.gin", "decllm_biattn": "bf.gin"},
    in_domain="in_task",
    out_of_domain="ood_task",
    seeds=(0, 1, 2),
  )
  study = Study(plan, str(tmp_path))
  rows = {
    r["name"]: r for r in study_outputs.runs({"decllm": 0.2, "redllm": 0.24}, (-0.01, 0.0, 0.01))
  }
  for spec in plan.pretrain_runs():
    r = rows[spec.name]
    write_json(
      study.path("pretrain", spec.name, "result.json"),
      {
        **{k: v for k, v in r.items() if k not in ("in_domain", "out_of_domain")},
        "metrics": {
          "in_task/perplexity": r["in_domain"],
          "ood_task/perplexity": r["out_of_domain"],
        },
      },
    )
  assert analyses.run_scaling(study)
  for name in ("fits.json", "runs.csv", "exponents.md", "scaling.png", "frontier.png"):
    assert (tmp_path / "scaling" / name).exists(), name
  table = (tmp_path / "scaling" / "exponents.md").read_text()
  assert "| 0.240 ± 0.006 |" in table and "Red - Dec (paired by seed) | 0.040 ± 0.000" in table


def test_params_fit_uses_the_largest_common_budget_else_each_sizes_longest():
  rows = study_outputs.runs({"decllm": 0.2, "redllm": 0.24})
  assert {r["steps"] for r in scaling.params_runs(rows)} == {400}
  uneven = [
    r
    for r in rows
    if not (r["size"] == "l" and r["steps"] < 400) and not (r["size"] == "s" and r["steps"] == 400)
  ]  # s: 100, 200; m: all; l: 400
  chosen = {(r["size"], r["steps"]) for r in scaling.params_runs(uneven)}
  assert chosen == {("s", 200), ("m", 400), ("l", 400)}
  assert "each size's longest budget" in scaling.params_axis_label(uneven)


def test_throughput_counts_only_the_cooldown_a_branched_run_computed():
  from redllm_jax.study import analyses  # pylint: disable=g-import-not-at-top
  from redllm_jax.study.runs import RunSpec  # pylint: disable=g-import-not-at-top

  full = RunSpec(name="a_400", architecture="decllm", gin_files=())
  branched = RunSpec(
    name="a_100", architecture="decllm", gin_files=(), branch_of="a_400", branch_step=80
  )
  trained = [
    (full, {"train_flops": 100.0, "steps": 400, "seconds": 10.0}),
    (branched, {"train_flops": 50.0, "steps": 100, "seconds": 1.0}),
  ]
  out = analyses.training_throughput(trained, {"flops_per_s": 40.0}, {"workers": 2})
  assert out["computed_flops"] == pytest.approx(100.0 + 50.0 * 20 / 100)
  assert out["flops_per_s"] == pytest.approx(110.0 / 11.0)
  assert out["fraction"] == pytest.approx(0.25) and out["workers"] == 2
  assert analyses.training_throughput(trained, None, None)["fraction"] is None


def test_plain_text_tasks_are_read_plain_by_tuned_models_and_families_in_flan_format():
  from redllm_jax.study import analyses  # pylint: disable=g-import-not-at-top
  from redllm_jax.evaluation import harness  # pylint: disable=g-import-not-at-top
  import pathlib  # pylint: disable=g-import-not-at-top

  pattern = str(pathlib.Path(__file__).resolve().parents[2] / "tasks/harness/demo_[cf]*.jsonl")
  tasks = harness.load_tasks(pattern, max_examples=2)
  manifest = scores.load_manifest(pattern)
  tuned = {
    eos: sorted(t.name for t in group)
    for eos, group in analyses.prompt_formats(tasks, manifest, True).items()
  }
  assert tuned[False] == ["demo_cloze_greedy", "demo_cloze_mc", "demo_continuation_mc"]
  assert tuned[True] and all(n.startswith("demo_family_") for n in tuned[True])
  untuned = analyses.prompt_formats(tasks, manifest, False)
  assert list(untuned) == [False] and len(untuned[False]) == len(tasks)


def test_study_tasks_leave_out_the_excluded_and_cap_the_rest():
  import pathlib  # pylint: disable=g-import-not-at-top
  import types  # pylint: disable=g-import-not-at-top
  from redllm_jax.study import analyses  # pylint: disable=g-import-not-at-top

  root = pathlib.Path(__file__).resolve().parents[2]
  plan = types.SimpleNamespace(
    harness_tasks=str(root / "tasks/harness/demo_[cf]*.jsonl"),
    harness_max_examples=5,
    harness_uncapped=(scores.CONTINUATION,),
    harness_excluded=("demo_cloze_mc",),
  )
  tasks = {t.name: len(t.examples) for t in analyses.study_tasks(plan)}
  assert "demo_cloze_mc" not in tasks and tasks["demo_cloze_greedy"] == 5
  assert tasks[scores.CONTINUATION] > 5 and "demo_family_next_mc" in tasks


def test_item_se_is_the_se_over_items_of_each_items_mean_over_seeds():
  rng = np.random.default_rng(0)
  one = rng.random((1, 500)) < 0.3
  p = one.mean()
  # One seed: the binomial SE with the n - 1 of a sample variance.
  assert stats.item_se(one) == pytest.approx(stats.binomial_se(p, 500) * math.sqrt(500 / 499))
  assert stats.item_se(np.repeat(one, 5, axis=0)) == pytest.approx(stats.item_se(one))
  # Against resampling the items (the draw the SE describes): 5 seeds that agree on a
  # third of their answers, the rest their own coin flips.
  shared = rng.random(400) < 0.3
  seeds = np.where(rng.random((5, 400)) < 1 / 3, shared, rng.random((5, 400)) < 0.3)
  boot = [seeds[:, rng.integers(0, 400, 400)].mean() for _ in range(4000)]
  assert stats.item_se(seeds) == pytest.approx(np.std(boot), rel=0.08)
  # Seeds that disagree average out: under the binomial SE the seeds would not count.
  assert stats.item_se(seeds) < 0.8 * stats.binomial_se(seeds.mean(), 400)
  with pytest.raises(ValueError, match="seeds x items"):
    stats.item_se([0.5, 0.5])


def test_harness_summary_reads_per_item_scores_where_kept():
  rng = np.random.default_rng(1)
  info = {
    scores.CONTINUATION: {"chance": 0.25, "floor": 0.25, "group": "continuation", "items": 300},
    "b": {"chance": 0.0, "floor": 0.0, "group": "cloze", "items": 200},
  }
  items = {t: rng.random((3, info[t]["items"])) < 0.4 for t in info}
  per_item = {"m": {str(s): {f"{t}@0shot": items[t][s].tolist() for t in info} for s in range(3)}}
  per_seed = {
    "m": {str(s): {f"{t}@0shot": float(items[t][s].mean()) for t in info} for s in range(3)}
  }
  kept = scores.summarize(per_seed, info, [0], per_item=per_item)["m"]
  plain = scores.summarize(per_seed, info, [0])["m"]
  for t in info:
    assert kept[f"{t}@0shot"]["item_se"] == pytest.approx(stats.item_se(items[t]))
    assert plain[f"{t}@0shot"]["item_se"] == pytest.approx(
      stats.binomial_se(plain[f"{t}@0shot"]["mean"], info[t]["items"])
    )
  # A group's score is the mean of its tasks' scores: its item SE that of the mean.
  group = kept["downstream@0shot"]
  assert group["item_se"] == pytest.approx(
    math.hypot(stats.item_se(items[scores.CONTINUATION]), stats.item_se(items["b"])) / 2
  )
  bar = scores.continuation_bar({"m": kept}, ["m"], [0])[0]
  figure = kept[f"{scores.CONTINUATION}@0shot"]
  binomial = stats.binomial_se(figure["mean"], 300)
  assert bar["z_binomial"] == pytest.approx(
    (figure["mean"] - 0.25) / math.hypot(figure["se"], binomial)
  )
