r"""The paper in miniature: one command reruns the whole study and writes REPORT.md.

  python -m redllm_jax.study.reproduce                  # default ladder, ~40 min on 2 CPU cores
  python -m redllm_jax.study.reproduce --quick          # every stage at smoke-test scale, minutes
  python -m redllm_jax.study.reproduce --gin_file=experiments/study_paper.gin \
      --out_dir=/mnt/shared/study                 # the paper's configs, on every host of a pod

The study (gin: `experiments/study_miniature.gin`, a `study.StudyPlan`) pretrains
DecLLM and RedLLM at every size x budget, fits PPL = a * X^-b, finetunes the largest
pair and DecLLM + BiAttn, runs the harness before and after, length extrapolation
and attention analysis, then judges the paper's seven findings in
`<out_dir>/REPORT.md`. Every unit writes its outputs and is skipped on a rerun; a
killed run (or SIGTERM) resumes where it stopped, mid-training included.
"""
import dataclasses
import json
import os
import sys
import time

from absl import flags
import jax

from redllm_jax import gin_utils, multihost
from redllm_jax.data import demo_corpus
from redllm_jax.study import analyses, findings, report, stages
from redllm_jax.study.directory import Study, read_json, write_json
from redllm_jax.study.plan import StudyPlan
from redllm_jax.study.progress import Progress

_QUICK = flags.DEFINE_bool("quick", False, "Smoke-test scale (experiments/study_quick.gin).")
_OUT_DIR = flags.DEFINE_string("out_dir", None,
                               "Study directory (default runs/study, or runs/study_quick).")

DEFAULT_GIN = "experiments/study_miniature.gin"
QUICK_GIN = "experiments/study_quick.gin"


def _gin_files() -> list[str]:
  """Parses the study gin: --gin_file if given, else the default (or quick) one."""
  files = list(flags.FLAGS.gin_file) or [QUICK_GIN if _QUICK.value else DEFAULT_GIN]
  gin_utils.parse_gin(files, flags.FLAGS.gin_bindings)
  return files


def _check_plan(study: Study) -> None:
  """A study directory holds one plan: a changed plan would mix incomparable runs."""
  path = study.path("plan.json")
  plan = json.loads(json.dumps(dataclasses.asdict(study.plan)))
  stored = read_json(path)
  # Fields a newer version added are not a change of plan.
  changed = sorted(k for k in plan if k in (stored or {}) and stored[k] != plan[k])
  if changed:
    raise gin_utils.ConfigError(f"{study.root} holds a study with a different plan "
                                f"({', '.join(changed)}); use a new --out_dir")
  write_json(path, plan)


def _run_units(study: Study, timings: dict[str, float]) -> bool:
  """Runs every unit not yet done; False if one was interrupted."""
  units = stages.units(study)
  progress = Progress({u.name: u.flops for u in units}, [u.name for u in units if u.done()])
  try:
    for unit in units:
      if unit.done():
        continue
      progress.start(unit.name)
      start = time.perf_counter()
      finished = unit.run()
      timings[unit.name] = timings.get(unit.name, 0.0) + time.perf_counter() - start
      write_json(study.path("timings.json"), timings)
      if not finished:
        progress.log(f"{unit.name} was interrupted and saved a checkpoint; rerun to resume")
        return False
      progress.finish(unit.name)
      progress.log(f"done: {unit.name} ({timings[unit.name]:.0f} s)")
  finally:
    progress.close()
  return True


def main() -> None:
  multihost.initialize()
  gin_files = _gin_files()
  plan = StudyPlan()  # pylint: disable=no-value-for-parameter
  root = os.path.abspath(_OUT_DIR.value or ("runs/study_quick" if _QUICK.value else "runs/study"))
  study = Study(plan, root)
  _check_plan(study)
  if plan.in_domain.startswith("demo_"):
    demo_corpus.build()
  timings = read_json(study.path("timings.json")) or {}
  if not _run_units(study, timings):
    return
  outputs = analyses.outputs(study)
  judged = findings.all_findings(outputs)
  if jax.process_index() == 0:
    command = "python -m redllm_jax.study.reproduce " + " ".join(sys.argv[1:])
    path = report.write_report(study.path("REPORT.md"), plan, outputs, judged, command.strip(),
                               gin_files, timings)
    for i, f in enumerate(judged, 1):
      print(f"{i}. {f.title}: {f.verdict} ({f.strength})")
    print(f"wrote {path}")


if __name__ == "__main__":
  gin_utils.run_flags(main)
