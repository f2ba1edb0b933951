r"""The paper in miniature: one command reruns the whole study and writes REPORT.md.

  python -m redllm_jax.study.reproduce                  # default ladder (README: its time here)
  python -m redllm_jax.study.reproduce --quick          # every stage at smoke-test scale, minutes
  python -m redllm_jax.study.reproduce --gin_file=experiments/study_paper.gin \
      --out_dir=/mnt/shared/study                 # the paper's configs, on every host of a pod

The study (gin: `experiments/study_miniature.gin`, a `study.StudyPlan`) pretrains
DecLLM and RedLLM at every size x budget x seed (shorter budgets branch off each
size's longest run), adapts each seed's largest DecLLM into RedLLMs, fits PPL = a *
X^-b per seed, finetunes the largest models and DecLLM + BiAttn, runs the harness
before and after, length extrapolation and attention analysis, then judges the
paper's seven findings with seed-to-seed standard errors in `<out_dir>/REPORT.md`.
On a CPU host the training runs and the harness's scoring of each model go to worker
processes (`workers.py`, `--workers`), the longest chain of waiting work first.
Every unit writes its outputs and is skipped on a rerun; a killed run (or SIGTERM)
resumes where it stopped, mid-training included.
"""

import dataclasses
import datetime
import json
import os
import signal
import sys
import time

from absl import flags
import jax

from redllm_jax import errors, gin_utils, multihost
from redllm_jax.data import vocabulary
from redllm_jax.demo import corpus as demo_corpus
from redllm_jax.study import analyses, findings, report, stages, workers
from redllm_jax.study.directory import Study, read_json, share_compilations, write_json
from redllm_jax.study.plan import StudyPlan
from redllm_jax.study.progress import Progress
from redllm_jax.tools import bench_ceiling

_QUICK = flags.DEFINE_bool("quick", False, "Smoke-test scale (experiments/study_quick.gin).")
_OUT_DIR = flags.DEFINE_string(
  "out_dir", None, "Study directory (default runs/study, or runs/study_quick)."
)
_WORKERS = flags.DEFINE_integer(
  "workers",
  0,
  "Training runs at once, each a single-threaded worker process (0: one per "
  "CPU core, at most 8, on a CPU-only single-process host; 1: in this process).",
)

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
    raise errors.ConfigError(
      f"{study.root} holds a study with a different plan "
      f"({', '.join(changed)}); use a new --out_dir"
    )
  write_json(path, plan)


def _worker_count() -> int:
  """--workers, or by default one per core on a single-process CPU host (else 1)."""
  single_cpu_host = jax.default_backend() == "cpu" and jax.process_count() == 1
  if _WORKERS.value > 1 and not single_cpu_host:
    raise errors.ConfigError(
      f"--workers={_WORKERS.value}: worker processes are for a "
      "single-process CPU host; use --workers=1 here"
    )
  if _WORKERS.value:
    return _WORKERS.value
  if not single_cpu_host:
    return 1
  return min(len(os.sched_getaffinity(0)), 8)


def _record(study: Study, timings: dict[str, float], unit: str, seconds: float) -> None:
  timings[unit] = timings.get(unit, 0.0) + seconds
  write_json(study.path("timings.json"), timings)


def _train_in_workers(
  study: Study, units: list[stages.Unit], timings: dict[str, float], progress: Progress, size: int
) -> bool:
  """Every training and scoring unit not yet done, `size` worker processes at a time,
  each once the unit it reads is done, the longest chain of waiting work first. False if
  SIGTERM stopped one (it resumes on a rerun)."""
  pool = workers.Pool(study.root, size)
  done = {u.name for u in units if u.done()}
  waiting = [u for u in units if u.in_worker and u.name not in done]
  chain = stages.critical_paths(units)
  stopping, interrupted = [], []

  def on_sigterm(signum, frame):
    del signum, frame
    stopping.append(True)
    pool.terminate()

  previous = signal.signal(signal.SIGTERM, on_sigterm)
  try:
    while waiting or pool.running:
      ready = [u for u in waiting if all(a in done for a in u.after)]
      if ready and not pool.full() and not stopping:
        unit = max(ready, key=lambda u: chain[u.name])
        waiting.remove(unit)
        progress.start(unit.name)
        pool.start(unit)
        if stopping:  # SIGTERM came while the unit was being handed over
          pool.terminate()
        continue
      if not pool.running:
        break
      unit, code, seconds, error = pool.wait()
      _record(study, timings, unit.name, seconds)
      if code == 0 and unit.done():
        done.add(unit.name)
        progress.finish(unit.name)
        progress.log(f"done: {unit.name} ({seconds:.0f} s)")
      elif code == workers.INTERRUPTED or stopping:
        interrupted.append(unit.name)
        progress.log(f"{unit.name} was interrupted; rerun to resume from its last checkpoint")
      else:
        raise RunFailed(workers.failure(study.root, unit.name, code, error))
  finally:
    signal.signal(signal.SIGTERM, previous)
    pool.close()
  return not (stopping or interrupted)


class RunFailed(Exception):
  """A worker's unit failed: one line naming its log."""


def _run_units(study: Study, timings: dict[str, float], size: int) -> bool:
  """Runs every unit not yet done, training and scoring in `size` workers if more than
  1; False if one was interrupted."""
  units = stages.units(study)
  progress = Progress({u.name: u.flops for u in units}, [u.name for u in units if u.done()])
  try:
    if size > 1 and not _train_in_workers(study, units, timings, progress, size):
      return False
    for unit in units:
      if unit.done():
        continue
      progress.start(unit.name)
      start = time.perf_counter()
      finished = unit.run()
      _record(study, timings, unit.name, time.perf_counter() - start)
      if not finished:
        progress.log(f"{unit.name} was interrupted; rerun to resume from its last checkpoint")
        return False
      progress.finish(unit.name)
      progress.log(f"done: {unit.name} ({timings[unit.name]:.0f} s)")
  finally:
    progress.close()
  return True


def _measure_ceiling(study: Study) -> None:
  """The matmul ceiling, once per study directory: the report's FLOP/s are over it."""
  path = study.path("ceiling.json")
  if read_json(path) is None:
    ceiling = bench_ceiling.matmul_ceiling()
    write_json(
      path,
      {
        "flops_per_s": ceiling["flops_per_s"],
        "dtype": ceiling["dtype"],
        "measured": datetime.datetime.now().isoformat(timespec="seconds"),
      },
    )


def _add_wall_clock(study: Study, seconds: float, size: int) -> None:
  """Wall-clock over invocations (units run side by side, so it is not the timings' sum)."""
  path = study.path("wallclock.json")
  total = (read_json(path) or {}).get("seconds", 0.0) + seconds
  write_json(path, {"seconds": total, "workers": size})


def main() -> None:
  multihost.initialize()
  gin_files = _gin_files()
  plan = StudyPlan()  # pylint: disable=no-value-for-parameter
  root = os.path.abspath(_OUT_DIR.value or ("runs/study_quick" if _QUICK.value else "runs/study"))
  study = Study(plan, root)
  _check_plan(study)
  share_compilations(root)
  if any(plan.in_domain.startswith(f"{prefix}_") for prefix in vocabulary.DEMO_PREFIXES):
    demo_corpus.build()  # demo_* and demo1k_* tasks read the demo corpus
  timings = read_json(study.path("timings.json")) or {}
  size = _worker_count()
  _measure_ceiling(study)
  start = time.perf_counter()
  try:
    finished = _run_units(study, timings, size)
  except RunFailed as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  finally:
    _add_wall_clock(study, time.perf_counter() - start, size)
  if not finished:
    return
  outputs = analyses.outputs(study)
  judged = findings.all_findings(outputs)
  if jax.process_index() == 0:
    command = "python -m redllm_jax.study.reproduce " + " ".join(sys.argv[1:])
    path = report.write_report(
      study.path("REPORT.md"), plan, outputs, judged, command.strip(), gin_files, timings
    )
    for i, f in enumerate(judged, 1):
      print(f"{i}. {f.title}: {f.verdict} ({findings.p_text(f.p)}; {f.robustness})")
    print(f"wrote {path}")


if __name__ == "__main__":
  gin_utils.run_flags(main)
