r"""Fault injection against `python -m redllm_jax.train`: the figures of the README's
reliability section.

  python -m redllm_jax.tools.fault_trials [--kill_trials=5] [--term_trials=3] \
      [--out=docs/reliability.json]

On the demo corpus (tiny RedLLM, 20 steps, checkpoints every 5):
- SIGKILL at a random step (some while an async save is in flight), then rerun:
  per-step losses (each step once) and final parameters equal a straight run bit
  for bit?
- SIGTERM at a random step: seconds from the signal to exit, and is the last step
  checkpointed?
- each kind of checkpoint damage on the newest checkpoint: detected (a warning
  naming the step), and the final parameters again equal the straight run's?
- every checkpoint damaged: one line and exit code 2? The same command again: the
  same line, metrics.jsonl untouched? Then `on_unreadable="restart"`: the old
  metrics.jsonl kept under a new name?
- a read-only checkpoints/ folder (a read-only bind mount) and a full disk (a 3 MB
  tmpfs): seconds to exit, one line, exit 2, no traceback, no logged step past the
  last saved one; the full disk's run resumes once there is room. Both need root
  (mount); without it they are reported as skipped.
- the data converter over good and bad files: bad files skipped and counted?
"""

import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Optional

from absl import flags
import numpy as np

from redllm_jax import gin_utils

_KILLS = flags.DEFINE_integer("kill_trials", 5, "SIGKILL-and-resume trials.")
_TERMS = flags.DEFINE_integer("term_trials", 3, "SIGTERM trials.")
_OUT = flags.DEFINE_string("out", None, "Write the figures here as JSON.")
_SEED = flags.DEFINE_integer("seed", 0, "Picks the kill and signal steps.")

STEPS = 20
BINDINGS = (
  f"TRAIN_STEPS = {STEPS}",
  "BATCH_SIZE = 4",
  "TASK_FEATURE_LENGTHS = {'targets': 64}",
  "EVAL_TASKS = []",
  "train.train.checkpoint_every = 5",
  "train.train.log_every = 1",
  "optimizers.learning_rate_schedule.warmup_steps = 5",
)


def start(model_dir: str, *extra: str) -> subprocess.Popen:
  args = [
    sys.executable,
    "-m",
    "redllm_jax.train",
    "--gin_file=experiments/demo_pretrain_redllm.gin",
    *[f"--gin_bindings={b}" for b in (f"MODEL_DIR = '{model_dir}'", *BINDINGS, *extra)],
  ]
  return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(model_dir: str, *extra: str) -> tuple[int, str]:
  proc = start(model_dir, *extra)
  _, err = proc.communicate(timeout=900)
  return proc.returncode, err


def logged_steps(model_dir: str) -> list[tuple[int, float]]:
  path = os.path.join(model_dir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [(r["step"], r["loss"]) for r in map(json.loads, f) if "loss" in r]


def wait_for_step(proc: subprocess.Popen, model_dir: str, step: int) -> None:
  while not logged_steps(model_dir) or logged_steps(model_dir)[-1][0] < step:
    if proc.poll() is not None:
      raise RuntimeError(f"the run ended before step {step}: {proc.stderr.read()[-2000:]}")
    time.sleep(0.05)


def final_params(model_dir: str) -> list[np.ndarray]:
  from redllm_jax import checkpoints  # pylint: disable=g-import-not-at-top  # jax after flags
  import jax  # pylint: disable=g-import-not-at-top

  _, params = checkpoints.load_model_and_params(model_dir)
  return [np.asarray(a) for a in jax.tree.leaves(params)]


def same_as(reference: dict[str, Any], model_dir: str) -> bool:
  return logged_steps(model_dir) == reference["losses"] and all(
    np.array_equal(a, b) for a, b in zip(final_params(model_dir), reference["params"])
  )


def kill_trial(root: str, reference: dict[str, Any], step: int) -> dict[str, Any]:
  model_dir = os.path.join(root, f"kill_{step}")
  proc = start(model_dir)
  wait_for_step(proc, model_dir, step)
  proc.kill()
  proc.wait()
  code, err = run(model_dir)
  return {
    "killed_after_step": step,
    "exit": code,
    "exact": code == 0 and same_as(reference, model_dir),
  }


def term_trial(root: str, step: int) -> dict[str, Any]:
  model_dir = os.path.join(root, f"term_{step}")
  proc = start(model_dir)
  wait_for_step(proc, model_dir, step)
  signalled = time.monotonic()
  proc.send_signal(signal.SIGTERM)
  proc.communicate(timeout=600)
  seconds = time.monotonic() - signalled
  last = logged_steps(model_dir)[-1][0]
  saved = max(int(s) for s in os.listdir(os.path.join(model_dir, "checkpoints")) if s.isdigit())
  return {
    "signalled_after_step": step,
    "seconds_to_exit": round(seconds, 2),
    "exit": proc.returncode,
    "last_step_saved": saved == last,
  }


def _largest_param_file(step_dir: str) -> str:
  files = [
    os.path.join(d, f)
    for d, _, fs in os.walk(os.path.join(step_dir, "params"))
    for f in fs
    if f"{os.sep}d{os.sep}" in os.path.join(d, f)
  ]
  return max(files, key=os.path.getsize)


def _random_bytes(step_dir: str) -> None:
  path = _largest_param_file(step_dir)
  with open(path, "r+b") as f:
    f.write(np.random.RandomState(0).bytes(os.path.getsize(path)))


def _flip_one_bit(step_dir: str) -> None:
  path = _largest_param_file(step_dir)
  data = bytearray(open(path, "rb").read())
  data[len(data) // 2] ^= 0x10
  open(path, "wb").write(bytes(data))


def _truncate(step_dir: str) -> None:
  path = _largest_param_file(step_dir)
  os.truncate(path, os.path.getsize(path) // 2)


def _delete(step_dir: str) -> None:
  os.remove(_largest_param_file(step_dir))


def _empty_newer_step(step_dir: str) -> None:
  os.makedirs(os.path.join(os.path.dirname(step_dir), str(STEPS + 5)))


DAMAGE: dict[str, Callable[[str], None]] = {
  "random bytes, length kept": _random_bytes,
  "one flipped bit": _flip_one_bit,
  "truncated file": _truncate,
  "deleted file": _delete,
  "empty newer step directory": _empty_newer_step,
}


def damage_trial(root: str, reference: dict[str, Any], kind: str) -> dict[str, Any]:
  model_dir = os.path.join(root, "damage_" + kind.split()[0])
  shutil.copytree(reference["dir"], model_dir)
  DAMAGE[kind](os.path.join(model_dir, "checkpoints", str(STEPS)))
  code, err = run(model_dir)
  return {
    "damage": kind,
    "exit": code,
    "detected": "is unreadable" in err,
    "traceback": _traceback(err),
    "final_params_exact": code == 0
    and all(np.array_equal(a, b) for a, b in zip(final_params(model_dir), reference["params"])),
  }


def _traceback(stderr: str) -> str:
  """The end of the first traceback on stderr, or '' (there should be none)."""
  start = stderr.find("Traceback")
  return "" if start < 0 else stderr[start : start + 3000].strip().splitlines()[-1]


def all_damaged_trial(root: str, reference: dict[str, Any]) -> dict[str, Any]:
  model_dir = os.path.join(root, "damage_all")
  shutil.copytree(reference["dir"], model_dir)
  checkpoint_dir = os.path.join(model_dir, "checkpoints")
  for step in (s for s in os.listdir(checkpoint_dir) if s.isdigit()):
    _random_bytes(os.path.join(checkpoint_dir, step))
  history = _metrics_text(model_dir)
  code, err = run(model_dir)
  rerun_code, rerun_err = run(model_dir)
  rerun_untouched = _metrics_text(model_dir) == history
  restart_code, _ = run(model_dir, "train.train.on_unreadable = 'restart'")
  kept = [f for f in os.listdir(model_dir) if f.startswith("metrics.before_restart_")]
  line = _one_line(err)
  return {
    "exit": code,
    "one_line": line is not None,
    "traceback": _traceback(err),
    "rerun_exit": rerun_code,
    "rerun_same_line": line is not None and _one_line(rerun_err) == line,
    "rerun_metrics_untouched": rerun_untouched,
    "restart_exit": restart_code,
    "restart_kept_history": len(kept) == 1 and _metrics_text(model_dir, kept[0]) == history,
  }


def _metrics_text(model_dir: str, name: str = "metrics.jsonl") -> str:
  with open(os.path.join(model_dir, name), encoding="utf-8") as f:
    return f.read()


def _one_line(stderr: str) -> Optional[str]:
  """The one `error:` line of a run's stderr; None if there are more, none, or a traceback."""
  errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
  return errors[0] if len(errors) == 1 and "Traceback" not in stderr else None


def _mount(*args: str) -> bool:
  return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def _storage_fault(model_dir: str, target_steps: int) -> dict[str, Any]:
  """Runs to `target_steps` on a faulty disk: time, exit, the line, rows past the last save."""
  started = time.monotonic()
  code, err = run(model_dir, f"TRAIN_STEPS = {target_steps}")
  folder = os.path.join(model_dir, "checkpoints")
  saved = (
    max((int(s) for s in os.listdir(folder) if s.isdigit()), default=0)
    if os.path.isdir(folder)
    else 0
  )
  unsaved_rows = [s for s, _ in logged_steps(model_dir) if s > saved]
  return {
    "seconds": round(time.monotonic() - started, 1),
    "exit": code,
    "line": _one_line(err),
    "stderr_lines": len(err.strip().splitlines()),
    "traceback": _traceback(err),
    "rows_past_last_save": len(unsaved_rows),
  }


def read_only_trial(root: str, reference: dict[str, Any]) -> dict[str, Any]:
  model_dir = os.path.join(root, "read_only")
  shutil.copytree(reference["dir"], model_dir)
  folder = os.path.join(model_dir, "checkpoints")
  if not _mount("--bind", folder, folder):
    return {"skipped": "a read-only bind mount needs root"}
  try:
    _mount("-o", "remount,bind,ro", folder)
    return _storage_fault(model_dir, STEPS + 2)
  finally:
    _mount_undo(folder)


def full_disk_trial(root: str) -> dict[str, Any]:
  disk = os.path.join(root, "small_disk")
  os.makedirs(disk)
  if not _mount("-t", "tmpfs", "-o", "size=3m", "tmpfs", disk):
    return {"skipped": "mounting a small tmpfs needs root"}
  try:
    model_dir = os.path.join(disk, "run")
    figures = _storage_fault(model_dir, STEPS)
    _mount("-o", "remount,size=200m", disk)
    code, err = run(model_dir)
    figures.update(
      resumed_exit=code,
      resumed_to_the_end=code == 0 and logged_steps(model_dir)[-1][0] == STEPS,
      resumed_traceback=_traceback(err),
    )
    return figures
  finally:
    _mount_undo(disk)


def _mount_undo(path: str) -> None:
  subprocess.run(["umount", path], check=True)


def converter_trial(root: str) -> dict[str, Any]:
  import zstandard  # pylint: disable=g-import-not-at-top  # a dependency of the converter

  raw = os.path.join(root, "raw")
  os.makedirs(raw)
  records = lambda n: b"".join(
    json.dumps({"text": f"document {i}"}).encode() + b"\n" for i in range(n)
  )
  zst = zstandard.ZstdCompressor().compress
  files = {
    "good_a.jsonl.zst": zst(records(500)),
    "good_b.jsonl.gz": gzip.compress(records(500)),
    "truncated.jsonl.zst": zst(records(2000))[:300],
    "truncated.jsonl.gz": gzip.compress(records(2000))[:300],
    "corrupt.jsonl.zst": b"\x28\xb5\x2f\xfd" + os.urandom(400),
    "binary.jsonl": b"\x00\x01binary" * 100,
  }
  for name, data in files.items():
    with open(os.path.join(raw, name), "wb") as f:
      f.write(data)
  tfds_cli = os.path.join(os.path.dirname(sys.executable), "tfds")
  proc = subprocess.run(
    [tfds_cli, "build", "redllm_files", "--imports=redllm_jax.data.datasets"]
    + [f"--manual_dir={raw}", f"--data_dir={root}/built"],
    capture_output=True,
    text=True,
    timeout=600,
  )
  meta_path = os.path.join(root, "built", "redllm_files", "default", "1.0.0", "metadata.json")
  counts = {}
  if os.path.exists(meta_path):
    with open(meta_path) as f:
      counts = json.load(f)
  return {
    "files": len(files),
    "bad_files": counts.get("bad_files"),
    "records_kept": counts.get("ok"),
    "exit": proc.returncode,
    "traceback": _traceback(proc.stderr),
  }


def main() -> None:
  rng = random.Random(_SEED.value)
  root = tempfile.mkdtemp(prefix="fault_trials_")
  straight = os.path.join(root, "straight")
  code, err = run(straight)
  if code:
    raise RuntimeError(f"the straight run failed: {err[-2000:]}")
  reference = {"dir": straight, "losses": logged_steps(straight), "params": final_params(straight)}
  figures = {
    "sigkill": [
      kill_trial(root, reference, rng.randint(2, STEPS - 1)) for _ in range(_KILLS.value)
    ],
    "sigterm": [term_trial(root, rng.randint(3, STEPS - 2)) for _ in range(_TERMS.value)],
    "damage": [damage_trial(root, reference, kind) for kind in DAMAGE],
    "all_damaged": all_damaged_trial(root, reference),
    "read_only": read_only_trial(root, reference),
    "full_disk": full_disk_trial(root),
    "converter": converter_trial(root),
    "machine": {"cpus": os.cpu_count()},
  }
  shutil.rmtree(root, ignore_errors=True)
  print(json.dumps(figures, indent=1))
  if _OUT.value:
    with open(_OUT.value, "w", encoding="utf-8") as f:
      json.dump(figures, f, indent=1)


if __name__ == "__main__":
  gin_utils.run_flags(main)
