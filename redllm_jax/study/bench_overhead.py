r"""Each study unit's time outside its training steps, in one process as a worker runs them.

  XLA_FLAGS=--xla_cpu_multi_thread_eigen=false taskset -c 0 \
    python -m redllm_jax.study.bench_overhead --study_dir=/tmp/bench_overhead

runs a small study's training units in order (a longest budget, the budget branched
off it, a second seed, a finetuning run) in this one
process, as a study worker would (`workers.py`: the study's persistent compilation
cache, units one after the other), and prints each unit's seconds, its trained steps
times its median step time, and the rest: `analyses.overhead`'s figure. Run it from
two checkouts side by side (one core each) to compare them under the same load.
"""

import os
import time

from absl import app, flags

from redllm_jax import gin_utils
from redllm_jax.study import analyses, stages
from redllm_jax.study.directory import Study, share_compilations
from redllm_jax.study.plan import StudyPlan

_STUDY_DIR = flags.DEFINE_string(
  "study_dir", None, "A fresh directory for the runs.", required=True
)
_UNITS = (
  "pretrain decllm_s_100_s0",
  "pretrain decllm_s_50_s0",
  "pretrain decllm_s_100_s1",
  "finetune decllm_s_flan_s0",
)
# The miniature study at one size, two short budgets and two seeds.
_PLAN = [
  "study.StudyPlan.sizes = {'s': 'models/sizes/study_s.gin'}",
  "study.StudyPlan.budgets = {'s': [50, 100]}",
  "study.StudyPlan.extra_budgets = {}",
  "study.StudyPlan.seeds = [0, 1]",
  "study.StudyPlan.largest_seeds = [0, 1]",
  "study.StudyPlan.pretrain_microbatches = {'decllm': {'s': 8}, 'redllm': {'s': 8}}",
]


def main(argv) -> None:
  del argv
  gin_utils.parse_gin(["experiments/study_miniature.gin"], _PLAN)
  study = Study(StudyPlan(), os.path.abspath(_STUDY_DIR.value))
  share_compilations(study.root)
  timings = {}
  for name in _UNITS:
    started = time.perf_counter()
    assert stages.worker_unit(study, name).run()
    timings[name] = time.perf_counter() - started
  for name, seconds in timings.items():
    outside = analyses.overhead(study, {name: seconds})["seconds_outside_steps"]
    print(f"{name:28s} {seconds:6.1f} s, outside its steps {outside:5.1f} s")
  print(f"mean outside steps: {analyses.overhead(study, timings)['per_unit']:.1f} s per unit")


if __name__ == "__main__":
  app.run(main)
