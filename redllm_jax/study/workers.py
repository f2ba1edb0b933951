r"""The study's training and scoring runs in worker processes, several at a time on one
CPU host.

At the study's tiny widths XLA:CPU keeps its threads far from busy, and single-threaded
processes side by side train faster than one multi-threaded process (`tools/bench_workers`
measures it; the dated figures are in docs/perf_notes.md). So on a CPU-only,
single-process host `reproduce` starts `--workers` long-lived processes

  python -m redllm_jax.study.workers --study_dir=STUDY --parent=PID --results_fd=N --core=C

with XLA single-threaded, each pinned to a core of its own, and hands each one training
or scoring unit at a time: the unit's name on the worker's stdin, its outcome back as
one JSON line on the results pipe.
A worker imports JAX, TensorFlow and seqio once for all the units it runs (tens of
seconds a process), logs each unit to `STUDY/logs/<unit>.log`, and trains (or
resumes) it and writes its `result.json` like the in-process path
(`stages.Unit.run`). SIGTERM makes the running unit save a checkpoint and the worker
report it interrupted and exit. Workers die with the study (SIGKILL on the parent's
death), so a killed study never leaves a run training behind it.
"""

import ctypes
import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from typing import IO, Optional

from absl import flags

from redllm_jax import errors, gin_utils, xla_cpu
from redllm_jax.study import stages
from redllm_jax.study.directory import Study, read_json, share_compilations
from redllm_jax.study.plan import StudyPlan

INTERRUPTED = 3  # a unit's code after SIGTERM in training: its run saved a checkpoint
FAILED = 1
_PR_SET_PDEATHSIG = 1


def log_path(root: str, unit: str) -> str:
  return os.path.join(root, "logs", unit.replace(" ", "_") + ".log")


@dataclasses.dataclass
class _Worker:
  process: subprocess.Popen
  results: IO[str]  # the read end of the worker's results pipe
  unit: Optional[stages.Unit] = None  # the unit it runs, if any
  started: float = 0.0


class Pool:
  """`size` worker processes; `start` hands an idle one a unit, `wait` returns the next
  unit to end."""

  def __init__(self, root: str, size: int):
    self.root, self.size = root, size
    self._workers: list[_Worker] = []
    self._env = xla_cpu.single_threaded_env()

  @property
  def running(self) -> list[stages.Unit]:
    return [w.unit for w in self._workers if w.unit is not None]

  def full(self) -> bool:
    return len(self.running) >= self.size

  def _spawn(self) -> _Worker:
    read, write = os.pipe()
    os.makedirs(os.path.join(self.root, "logs"), exist_ok=True)
    # XLA:CPU still runs parallel loops on a second thread; unpinned, the workers' threads
    # migrate between cores and train slower (`tools/bench_workers` measures it).
    cores = sorted(os.sched_getaffinity(0))
    core = cores[len(self._workers) % len(cores)]
    with open(os.path.join(self.root, "logs", f"worker_{len(self._workers)}.log"), "ab") as log:
      process = subprocess.Popen(
        [
          sys.executable,
          "-m",
          "redllm_jax.study.workers",
          f"--study_dir={self.root}",
          f"--parent={os.getpid()}",
          f"--results_fd={write}",
          f"--core={core}",
        ],
        stdin=subprocess.PIPE,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=self._env,
        pass_fds=(write,),
        text=True,
      )
    os.close(write)
    worker = _Worker(process, os.fdopen(read))
    self._workers.append(worker)
    return worker

  def start(self, unit: stages.Unit) -> None:
    idle = [w for w in self._workers if w.unit is None]
    worker = idle[0] if idle else self._spawn()
    worker.unit, worker.started = unit, time.perf_counter()
    worker.process.stdin.write(unit.name + "\n")
    worker.process.stdin.flush()

  def wait(self) -> tuple[stages.Unit, int, float, str]:
    """(unit, code, seconds, error) of the first running unit to end: code 0 done,
    INTERRUPTED, FAILED (error: its first line), or the worker's exit code if it died."""
    busy = {w.results.fileno(): w for w in self._workers if w.unit is not None}
    ready, _, _ = select.select(list(busy), [], [])
    worker = busy[ready[0]]
    line = worker.results.readline()
    unit, seconds = worker.unit, time.perf_counter() - worker.started
    worker.unit = None
    if not line:  # the worker died mid-unit
      return unit, self._retire(worker), seconds, "the worker process died"
    outcome = json.loads(line)
    if outcome["code"] != 0:  # the worker stops after a unit that did not finish
      self._retire(worker)
    return unit, outcome["code"], seconds, outcome.get("error", "")

  def _retire(self, worker: _Worker) -> int:
    """Waits for a worker that has stopped taking units; its exit code."""
    self._workers.remove(worker)
    code = worker.process.wait()
    worker.results.close()
    return code

  def terminate(self) -> None:
    """SIGTERM to every busy worker: each saves a checkpoint and stops."""
    for worker in self._workers:
      if worker.unit is not None and worker.process.poll() is None:
        worker.process.send_signal(signal.SIGTERM)

  def close(self) -> None:
    """Idle workers read the end of their input and exit; busy ones are stopped."""
    self.terminate()
    for worker in self._workers:
      if worker.process.poll() is None:
        worker.process.stdin.close()
      worker.process.wait()
      worker.results.close()


def failure(root: str, unit: str, code: int, error: str) -> str:
  """One line for a unit that failed: its error (or exit code) and where its log is."""
  return f"{unit} failed ({error or f'exit {code}'}); full log: {log_path(root, unit)}"


def _die_with_parent(parent: int) -> None:
  """The kernel SIGKILLs this worker when the study process dies (set here, not in a
  preexec_fn: forking a process that runs JAX's threads is unsafe)."""
  ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
  if os.getppid() != parent:  # the study died before the line above
    sys.exit(INTERRUPTED)


def _log_to(path: str) -> None:
  """Points this process's stdout and stderr (tqdm, logging, XLA) at `path`."""
  sys.stdout.flush()
  sys.stderr.flush()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
  os.dup2(fd, 1)
  os.dup2(fd, 2)
  os.close(fd)


def _run(study: Study, name: str) -> dict:
  """One unit's outcome, as the results pipe carries it."""
  _log_to(log_path(study.root, name))
  try:
    unit = stages.worker_unit(study, name)
    if unit is None:
      return {"code": FAILED, "error": f"the study has no training or scoring unit {name!r}"}
    return {"code": 0 if unit.run() else INTERRUPTED}
  except Exception as e:  # pylint: disable=broad-except  # reported, then the study stops
    traceback.print_exc()
    return {"code": FAILED, "error": errors.first_line(e)}


_STUDY_DIR = flags.DEFINE_string("study_dir", None, "The study directory (holds plan.json).")
_PARENT = flags.DEFINE_integer("parent", None, "The study's process id: die with it.")
_RESULTS_FD = flags.DEFINE_integer("results_fd", None, "Where each unit's outcome goes.")
_CORE = flags.DEFINE_integer("core", None, "The CPU core this worker runs on.")


def main() -> None:
  _die_with_parent(_PARENT.value)
  if _CORE.value is not None:  # every thread: TensorFlow's start at import
    for thread in os.listdir("/proc/self/task"):
      os.sched_setaffinity(int(thread), {_CORE.value})
  plan_json = read_json(os.path.join(_STUDY_DIR.value, "plan.json"))
  fields = {f.name for f in dataclasses.fields(StudyPlan)}
  study = Study(
    StudyPlan(**{k: v for k, v in plan_json.items() if k in fields}),
    os.path.abspath(_STUDY_DIR.value),
  )
  share_compilations(study.root)
  with os.fdopen(_RESULTS_FD.value, "w") as results:
    for line in sys.stdin:
      outcome = _run(study, line.strip())
      results.write(json.dumps(outcome) + "\n")
      results.flush()
      if outcome["code"] != 0:
        return


if __name__ == "__main__":
  gin_utils.run_flags(main)
