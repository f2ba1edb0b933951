r"""The study's training runs in worker processes, several at a time on one CPU host.

At the study's tiny widths XLA:CPU keeps its two threads only ~60% busy, and two
single-threaded processes side by side train 1.44x faster than one two-threaded
process (measured on a 2-core host: docs/study/README or REPORT.md's throughput
line). So on a CPU-only, single-process host `reproduce` runs each training unit as

  python -m redllm_jax.study.workers --study_dir=STUDY --unit="pretrain decllm_s_100_s0"

with XLA single-threaded, `--workers` of them at once, each logging to
`STUDY/logs/<unit>.log`. A worker trains (or resumes) its run and writes its
`result.json` like the in-process path (`stages.Unit.run`); SIGTERM makes it save a
checkpoint and exit with INTERRUPTED. Workers die with the study (SIGKILL on the
parent's death), so a killed study never leaves a run training behind it.
"""
import ctypes
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from absl import flags

from redllm_jax import gin_utils
from redllm_jax.study import stages
from redllm_jax.study.directory import Study, read_json, share_compilations
from redllm_jax.study.plan import StudyPlan

INTERRUPTED = 3  # a worker's exit code after SIGTERM: its run saved a checkpoint
_PR_SET_PDEATHSIG = 1
SINGLE_THREADED_XLA = "--xla_cpu_multi_thread_eigen=false"


def _die_with_parent(parent: int) -> None:
  """The kernel SIGKILLs this worker when the study process dies (set here, not in a
  preexec_fn: forking a process that runs JAX's threads is unsafe)."""
  ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
  if os.getppid() != parent:  # the study died before the line above
    sys.exit(INTERRUPTED)


def log_path(root: str, unit: str) -> str:
  return os.path.join(root, "logs", unit.replace(" ", "_") + ".log")


@dataclasses.dataclass
class _Running:
  unit: stages.Unit
  process: subprocess.Popen
  started: float


class Pool:
  """Up to `size` training units in worker processes; `wait` returns the next to end."""

  def __init__(self, root: str, size: int):
    self.root, self.size = root, size
    self.running: list[_Running] = []
    self._env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
                     XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {SINGLE_THREADED_XLA}".strip())

  def full(self) -> bool:
    return len(self.running) >= self.size

  def start(self, unit: stages.Unit) -> None:
    path = log_path(self.root, unit.name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "ab") as log:
      process = subprocess.Popen(
          [sys.executable, "-m", "redllm_jax.study.workers", f"--study_dir={self.root}",
           f"--unit={unit.name}", f"--parent={os.getpid()}"], stdout=log,
          stderr=subprocess.STDOUT, env=self._env)
    self.running.append(_Running(unit, process, time.perf_counter()))

  def wait(self) -> tuple[stages.Unit, int, float]:
    """(unit, exit code, seconds) of the first running worker to end."""
    while True:
      for entry in self.running:
        code = entry.process.poll()
        if code is not None:
          self.running.remove(entry)
          return entry.unit, code, time.perf_counter() - entry.started
      time.sleep(0.2)

  def terminate(self) -> None:
    """SIGTERM to every worker: each saves a checkpoint and exits."""
    for entry in self.running:
      entry.process.send_signal(signal.SIGTERM)


def failure(root: str, unit: str, code: int) -> str:
  """One line for a worker that failed: its exit code and the end of its log."""
  path = log_path(root, unit)
  with open(path, errors="replace") as f:
    lines = [line.strip() for line in f.read().replace("\r", "\n").splitlines() if line.strip()]
  last = lines[-1] if lines else "(empty log)"
  return f"{unit} failed (exit {code}): {last[:300]}; full log: {path}"


_STUDY_DIR = flags.DEFINE_string("study_dir", None, "The study directory (holds plan.json).")
_UNIT = flags.DEFINE_string("unit", None, "The training unit's name, e.g. 'pretrain x_s0'.")
_PARENT = flags.DEFINE_integer("parent", None, "The study's process id: die with it.")


def main() -> None:
  if _PARENT.value:
    _die_with_parent(_PARENT.value)
  plan_json = read_json(os.path.join(_STUDY_DIR.value, "plan.json"))
  if plan_json is None:
    raise gin_utils.ConfigError(f"{_STUDY_DIR.value} holds no plan.json (start the study with "
                                "`python -m redllm_jax.study.reproduce`)")
  fields = {f.name for f in dataclasses.fields(StudyPlan)}
  study = Study(StudyPlan(**{k: v for k, v in plan_json.items() if k in fields}),
                os.path.abspath(_STUDY_DIR.value))
  share_compilations(study.root)
  unit = stages.training_unit(study, _UNIT.value)
  if unit is None:
    raise gin_utils.ConfigError(f"the study in {_STUDY_DIR.value} has no training unit "
                                f"{_UNIT.value!r}")
  if not unit.run():
    sys.exit(INTERRUPTED)
  print(json.dumps({"done": unit.name}))


if __name__ == "__main__":
  gin_utils.run_flags(main)
