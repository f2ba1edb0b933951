"""The study runner: fits against an independent reference, every study gin's runs,
and (slow) the `--quick` study end to end, killed and resumed. The verdicts on
synthetic per-seed outputs are tests/unit/test_study_findings.py."""

import dataclasses
import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import time

import gin
import numpy as np
import pytest

from redllm_jax import errors, flops, gin_utils, models, optimizers, validation
from redllm_jax.data import feature_converters
from redllm_jax.evaluation import harness
from redllm_jax.partitioning import Partitioner
from redllm_jax.study import fits, scaling, stages
from redllm_jax.study.plan import ARCHITECTURES, StudyPlan
from redllm_jax.study.runs import parse_run, training_cost

ROOT = pathlib.Path(__file__).resolve().parents[2]
FINDINGS = (
  "Fitted scaling exponents",
  "Compute-optimal frontier",
  "Zero/few-shot after pretraining",
  "After FLAN tuning",
  "Length extrapolation",
  "Attention patterns",
  "BiAttn ablation",
)


def test_power_law_fit_matches_closed_form_least_squares_in_log_space():
  """fits uses scipy's linregress; the reference is the textbook formulas in numpy."""
  rng = np.random.default_rng(0)
  x = np.geomspace(1e12, 1e15, 9)
  y = 3e3 * x**-0.21 * np.exp(rng.normal(0, 0.02, x.size))
  fit = fits.fit_power_law(x, y)
  lx, ly = np.log(x), np.log(y)
  sxx = np.sum((lx - lx.mean()) ** 2)
  slope = np.sum((lx - lx.mean()) * (ly - ly.mean())) / sxx
  intercept = ly.mean() - slope * lx.mean()
  residual = ly - intercept - slope * lx
  assert fit.b == pytest.approx(-slope, rel=1e-10)
  assert fit.a == pytest.approx(math.exp(intercept), rel=1e-10)
  assert fit.b_stderr == pytest.approx(
    math.sqrt(np.sum(residual**2) / (x.size - 2) / sxx), rel=1e-8
  )
  assert fit.r2 == pytest.approx(1 - np.sum(residual**2) / np.sum((ly - ly.mean()) ** 2), rel=1e-10)
  exact = fits.fit_power_law(x, 5.0 * x**-0.3)
  assert (exact.a, exact.b, exact.r2) == pytest.approx((5.0, 0.3, 1.0), rel=1e-9)


def test_power_law_needs_two_distinct_x():
  with pytest.raises(ValueError, match="distinct"):
    fits.fit_power_law([1e9, 1e9], [10.0, 9.0])
  assert math.isnan(fits.fit_power_law([1.0, 2.0], [3.0, 2.0]).b_stderr)


def test_frontier_and_pareto_front():
  points = [(1, 10.0), (2, 12.0), (3, 8.0), (3, 7.0), (5, 7.5), (8, 6.0)]
  assert fits.frontier(points) == [0, 3, 5]
  assert fits.pareto_front([(1, 0.2), (2, 0.1), (3, 0.5), (4, 0.5)]) == [0, 2]


def _study(out_dir, *extra, **kwargs):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.Popen(
    [sys.executable, "-m", "redllm_jax.study.reproduce", "--quick", f"--out_dir={out_dir}", *extra],
    cwd=ROOT,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
    **kwargs,
  )


def _expected_outputs(out_dir: pathlib.Path) -> list[pathlib.Path]:
  stored = json.loads((out_dir / "plan.json").read_text())
  plan = StudyPlan(**{f.name: stored[f.name] for f in dataclasses.fields(StudyPlan)})
  files = [f"{kind}/{spec.name}/result.json" for kind, spec in stages.training_specs(plan)]
  # The ladder: 2 seeds x 2 sizes x 2 budgets x 2 architectures, and RedLLM's extra xl
  # budget at 2 seeds; the largest pair a third seed; 3 seeds x (2 adaptations + 3
  # finetunings).
  assert len(files) == 2 * 2 * 2 * 2 + 2 + 2 + 3 * (2 + 3)
  files += [
    "scaling/fits.json",
    "scaling/runs.csv",
    "scaling/exponents.md",
    "scaling/scaling.png",
    "scaling/frontier.png",
    "harness/harness.json",
    "harness/harness.md",
    "harness/pareto.png",
    "extrapolation/extrapolation.json",
    "extrapolation/extrapolation.csv",
    "extrapolation/extrapolation.png",
    "attention/locality.json",
    "attention/locality.png",
    "attention/cross_attention.json",
    "attention/cross_attention.png",
    "REPORT.md",
    "timings.json",
  ]
  return [out_dir / f for f in files]


@pytest.mark.slow
@pytest.mark.timeout(1800)  # its own bounds: 600 s to the kill, 1200 s for the rerun
def test_quick_study_killed_resumes_and_writes_every_stage(demo_root, tmp_path):
  out = tmp_path / "study"
  first = _study(out)
  # Kill it hard once the second pretraining run has finished.
  start = time.time()
  while len(list(out.glob("pretrain/*/result.json"))) < 2:
    assert first.poll() is None, first.communicate()[0][-3000:]
    assert time.time() - start < 600
    time.sleep(0.5)
  first.send_signal(signal.SIGKILL)
  first.wait()
  done_before = {p.parent.name: p.stat().st_mtime for p in out.glob("pretrain/*/result.json")}

  second = _study(out)
  log = second.communicate(timeout=1200)[0]
  assert second.returncode == 0, log[-3000:]
  for name, mtime in done_before.items():  # finished runs were skipped, not redone
    assert (out / "pretrain" / name / "result.json").stat().st_mtime == mtime
  missing = [str(p) for p in _expected_outputs(out) if not p.exists()]
  assert not missing, missing

  fitted = json.loads((out / "scaling" / "fits.json").read_text())["fits"]
  for domain in scaling.DOMAINS:
    for axis in scaling.AXES:
      for arch in ("decllm", "redllm"):
        fit = fitted[domain][axis][arch]
        assert all(math.isfinite(fit[k]) for k in ("a", "b", "r2")), (domain, axis, arch)
  report = (out / "REPORT.md").read_text()
  for title in FINDINGS:
    assert f"**{title}**" in report, title
  assert "![scaling fits](scaling/scaling.png)" in report

  third = _study(out)  # everything done: only the report is rewritten
  log = third.communicate(timeout=300)[0]
  assert third.returncode == 0 and "done:" not in log, log[-2000:]


def test_changed_plan_in_the_same_directory_is_a_one_line_error(demo_root, tmp_path):
  out = tmp_path / "study"
  out.mkdir()
  (out / "plan.json").write_text(json.dumps({"budgets": [1]}))
  proc = _study(out)
  log = proc.communicate(timeout=300)[0]
  assert proc.returncode == 2, log[-2000:]
  assert "different plan" in log.strip().splitlines()[-1]


def test_paper_scale_study_gin_builds_the_paper_ladder():
  """The same runner at the paper's configs: only gin changes (no training here)."""
  gin_utils.parse_gin(["experiments/study_paper.gin"], [])
  plan = StudyPlan()
  assert len(plan.pretrain_runs()) == 5 * 3 * 2
  expected = {"decllm": 8.72e9, "redllm": 8.59e9}
  for arch, params in expected.items():
    spec = plan.source_run(arch, 0)
    assert spec.name == f"{arch}_8b_400000_s0"
    parse_run(spec, "/tmp/unused")
    model = models.from_gin()
    assert flops.count_params(model.abstract_params()).total == pytest.approx(params, rel=0.01)
  assert [r.parent for r in plan.finetune_runs()] == [
    "decllm_8b_400000_s0",
    "redllm_8b_400000_s0",
    "decllm_8b_400000_s0",
  ]


def test_chance_score_of_the_shipped_harness_tasks():
  assert harness.chance_score(
    harness.load_task(str(ROOT / "tasks/harness/demo_qa_mc.jsonl"))
  ) == pytest.approx(0.25)
  assert (
    harness.chance_score(harness.load_task(str(ROOT / "tasks/harness/demo_qa_gen.jsonl"))) == 0.0
  )


@pytest.mark.parametrize(
  "study_gin", ["study_miniature", "study_miniature_adaptation", "study_quick", "study_paper"]
)
def test_every_run_of_every_study_gin_is_a_valid_training_run(study_gin):
  gin_utils.parse_gin([f"experiments/{study_gin}.gin"], [])
  plan = StudyPlan()
  kept = {}
  for kind, spec in stages.training_specs(plan):
    parse_run(
      spec, "/tmp/unused", ["INITIAL_CHECKPOINT_PATH = '/tmp/parent'"] if spec.parent else []
    )
    model = models.from_gin()
    try:  # The quick study once asked 8 microbatches of its 4 rows.
      microbatches = gin.query_parameter("train.train.num_microbatches")
    except ValueError:
      microbatches = 1  # not bound: train's default
    validation.check_run(
      model,
      feature_converters.make_feature_converter(),
      gin.query_parameter("%TASK_FEATURE_LENGTHS"),
      gin.query_parameter("%BATCH_SIZE"),
      Partitioner(),
      microbatches,
      1,
    )
    if kind != "finetune":
      assert gin.query_parameter("%EVAL_TASKS") == [plan.in_domain, plan.out_of_domain]
    assert (model.config.dropout_rate > 0) == (kind == "finetune"), spec.name
    if kind == "pretrain":
      schedule = optimizers.learning_rate_schedule(decay_steps=spec.steps)  # gin-bound: wsd
      if not spec.branch_of:
        if spec.seed in plan.seeds:  # the largest pair's extra seeds have no branches
          kept[spec.name] = gin.query_parameter("train.train.keep_steps")
      else:  # its cooldown starts where it branches off its longer run
        assert spec.branch_step in kept[spec.branch_of], spec.name
        assert float(schedule(spec.branch_step)) == float(schedule(spec.branch_step - 1))
        assert float(schedule(spec.branch_step + 1)) < float(schedule(spec.branch_step))


def test_pretraining_microbatches_are_bound_per_architecture_and_size():
  gin_utils.parse_gin(["experiments/study_miniature.gin"], [])
  plan = StudyPlan()
  bound = {
    (s.architecture, s.size): [b for b in s.bindings if "num_microbatches" in b]
    for s in plan.pretrain_runs()
  }
  assert bound[("decllm", "l")] == ["train.train.num_microbatches = 8"]
  assert bound[("redllm", "l")] == ["train.train.num_microbatches = 4"]
  unlisted = dataclasses.replace(plan, pretrain_microbatches={"decllm": {"l": 2}})
  assert [
    b
    for s in unlisted.pretrain_runs()
    if s.architecture == "redllm"
    for b in s.bindings
    if "num_microbatches" in b
  ] == []
  with pytest.raises(errors.ConfigError, match="names xl: not an architecture"):
    dataclasses.replace(plan, pretrain_microbatches={"decllm": {"xl": 2}})


def test_the_largest_pair_alone_runs_the_extra_seeds():
  gin_utils.parse_gin(["experiments/study_miniature.gin"], [])
  plan = StudyPlan()
  assert list(plan.seeds) == [0, 1, 2] and list(plan.analysis_seeds) == [0, 1, 2, 3, 4]
  for spec in plan.pretrain_runs():
    budgets = plan.budgets_of(spec.architecture, spec.size)
    if spec.seed in (3, 4):  # only the largest size's longest budget, with no branch points
      assert (spec.size, spec.steps) == ("l", budgets[-1])
      assert not any("keep_steps" in b for b in spec.bindings)
    elif spec.steps == budgets[-1]:
      assert any("keep_steps" in b for b in spec.bindings) or len(budgets) == 1
  assert {s.seed for s in plan.finetune_runs()} == {0, 1, 2, 3, 4}
  assert not plan.adapt_runs()  # adaptation: study_miniature_adaptation.gin
  with pytest.raises(errors.ConfigError, match="must include every seed of the ladder"):
    dataclasses.replace(plan, largest_seeds=[0, 1])


def test_the_largest_pair_is_compute_matched_by_redllm_extra_budget(tmp_path):
  gin_utils.parse_gin(["experiments/study_miniature.gin"], [])
  plan = StudyPlan()
  assert plan.budgets_of("decllm", "l") == [125, 250, 500]
  assert plan.budgets_of("redllm", "l") == [125, 250, 500, 1000]
  assert plan.budgets_of("redllm", "m") == plan.budgets_of("decllm", "m")
  dec, red = plan.source_run("decllm", 3), plan.source_run("redllm", 3)
  assert (dec.name, red.name) == ("decllm_l_500_s3", "redllm_l_1000_s3")
  costs = {}
  for spec in (dec, red):
    parse_run(spec, str(tmp_path / spec.name))
    costs[spec.architecture] = training_cost(models.from_gin(), spec.steps, 64, {"targets": 128})
  # Equal target tokens; training FLOPs within 5% (RedLLM's encoder is not free).
  assert costs["decllm"]["target_tokens"] == costs["redllm"]["target_tokens"]
  assert costs["redllm"]["train_flops"] / costs["decllm"]["train_flops"] == pytest.approx(
    1, rel=0.05
  )
  by_name = {s.name: s for s in plan.pretrain_runs()}
  assert by_name["redllm_l_500_s0"].branch_of == "redllm_l_1000_s0"
  assert "redllm_l_500_s3" not in by_name  # the ladder's 500-step point keeps 3 seeds
  assert "train.train.keep_steps = [100, 200, 400]" in by_name["redllm_l_1000_s0"].bindings
  assert all(
    r.parent == f"redllm_l_1000_s{r.seed}"
    for r in plan.finetune_runs()
    if r.architecture == "redllm"
  )
  with pytest.raises(errors.ConfigError, match="extra_budgets names xl"):
    dataclasses.replace(plan, extra_budgets={"redllm": {"xl": [10]}})


def test_adaptation_is_its_own_stage_of_the_default_study():
  gin_utils.parse_gin(["experiments/study_miniature_adaptation.gin"], [])
  adapted = StudyPlan()
  assert {s.seed for s in adapted.adapt_runs()} == {0, 1, 2, 3, 4}
  assert {s.architecture for s in adapted.finetune_runs()} >= {"redllm_adapted"}


def test_critical_paths_sum_the_longest_chain_of_waiting_work():
  unit = lambda name, work, *after: stages.Unit(name, work, (), lambda: True, True, after)
  units = [
    unit("small", 1.0),
    unit("large", 4.0),
    unit("adapt", 2.0, "large"),
    unit("tune", 3.0, "adapt"),
    unit("score large", 0.5, "large"),
    unit("score tune", 0.5, "tune"),
  ]
  assert stages.critical_paths(units) == {
    "small": 1.0,
    "large": 9.5,
    "adapt": 5.5,
    "tune": 3.5,
    "score large": 0.5,
    "score tune": 0.5,
  }


def test_the_default_study_starts_the_chain_of_its_largest_decllm_first(tmp_path):
  gin_utils.parse_gin(["experiments/study_miniature.gin"], [])
  study = stages.Study(StudyPlan(), str(tmp_path))
  units = stages.worker_units(study)
  chain = stages.critical_paths(units)
  first = max((u for u in units if not u.after), key=lambda u: chain[u.name])
  largest = {study.plan.source_run(a, s).name for a in ARCHITECTURES for s in study.plan.seeds}
  assert first.name.removeprefix("pretrain ") in largest
  scored = [u for u in units if u.name.startswith("score ")]
  assert len(scored) == 5 * (2 + 3)  # the largest pair's seeds x (pretrained, finetuned)
  assert {u.after for u in scored} <= {
    (f"{k} {s.name}",) for k, s in stages.training_specs(study.plan)
  }
