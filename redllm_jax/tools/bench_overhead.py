r"""Each study unit's time outside its training steps, in one process as a worker runs them.

  XLA_FLAGS=--xla_cpu_multi_thread_eigen=false taskset -c 0 \
    python -m redllm_jax.tools.bench_overhead --study_dir=/tmp/bench_overhead

runs a small study's training units in order (a longest budget, the budget branched
off it, a second seed, a finetuning run) in this one
process, as a study worker would (`workers.py`: the study's persistent compilation
cache, units one after the other), and prints each unit's seconds, its trained steps
times its median step time, and the rest: `analyses.overhead`'s figure. Run it from
two checkouts side by side (one core each) to compare them under the same load.
"""
import json
import os
import time

from absl import app, flags
import gin
import numpy as np

from redllm_jax import gin_utils
from redllm_jax.study import stages
from redllm_jax.study.directory import Study, share_compilations
from redllm_jax.study.plan import StudyPlan

_STUDY_DIR = flags.DEFINE_string("study_dir", None, "A fresh directory for the runs.",
                                 required=True)
_UNITS = ("pretrain decllm_s_100_s0", "pretrain decllm_s_50_s0", "pretrain decllm_s_100_s1",
          "finetune decllm_s_flan_s0")
# The miniature study at one size, two short budgets and two seeds.
_PLAN = ["study.StudyPlan.sizes = {'s': 'models/sizes/study_s.gin'}",
         "study.StudyPlan.budgets = {'s': [50, 100]}", "study.StudyPlan.seeds = [0, 1]",
         "study.StudyPlan.largest_seeds = [0, 1]",
         "study.StudyPlan.pretrain_microbatches = {'decllm': {'s': 8}, 'redllm': {'s': 8}}"]


def _median_step(path: str) -> float:
  with open(path) as f:
    times = [row["step_time"] for row in map(json.loads, f) if "step_time" in row]
  return float(np.median(times))


def main(argv) -> None:
  del argv
  gin_utils.parse_gin(["experiments/study_miniature.gin"], _PLAN)
  study = Study(StudyPlan(), os.path.abspath(_STUDY_DIR.value))
  share_compilations(study.root)
  specs = {stages.unit_name(kind, spec): (kind, spec)
           for kind, spec in stages.training_specs(study.plan)}
  rows = []
  for name in _UNITS:
    started = time.perf_counter()
    assert stages.worker_unit(study, name).run()
    seconds = time.perf_counter() - started
    kind, spec = specs[name]
    steps = study.result(kind, spec)["steps"] - spec.branch_step
    in_steps = steps * _median_step(study.path(kind, spec.name, "metrics.jsonl"))
    rows.append((name, seconds, in_steps))
  for name, seconds, in_steps in rows:
    print(f"{name:28s} {seconds:6.1f} s, steps {in_steps:6.1f} s, outside {seconds - in_steps:5.1f} s")
  print(f"mean outside steps: {np.mean([s - i for _, s, i in rows]):.1f} s per unit")


if __name__ == "__main__":
  app.run(main)
