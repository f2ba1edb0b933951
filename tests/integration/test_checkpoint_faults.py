"""Damaged checkpoints are caught, named, moved aside and never silently trained over.

Each scenario damages a copy of one real 20-step run (checkpoints at 1, 10 and 20)
and resumes it as a user does, with `python -m redllm_jax.train`.
"""
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import experiment, train_bindings

ROOT = pathlib.Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _train(model_dir: pathlib.Path, steps: int, *extra: str) -> subprocess.CompletedProcess:
  bindings = train_bindings("redllm", str(model_dir), steps, "train.train.checkpoint_every = 10",
                            "train.train.log_every = 10", *extra)
  return subprocess.run([sys.executable, "-m", "redllm_jax.train",
                         f"--gin_file={experiment('redllm')}",
                         *[f"--gin_bindings={b}" for b in bindings]],
                        cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def trained(demo_root, tmp_path_factory) -> pathlib.Path:
  model_dir = tmp_path_factory.mktemp("trained") / "run"
  run = _train(model_dir, 20)
  assert run.returncode == 0, run.stderr[-3000:]
  return model_dir


def _copy(trained: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
  shutil.copytree(trained, tmp_path / "run")
  return tmp_path / "run"


def _scramble_params(model_dir: pathlib.Path, step: int) -> None:
  """Random bytes over the largest parameter data file, its length kept."""
  files = [p for p in (model_dir / "checkpoints" / str(step) / "params").rglob("*")
           if p.is_file() and "/d/" in str(p)]
  victim = max(files, key=lambda p: p.stat().st_size)
  victim.write_bytes(np.random.RandomState(step).bytes(victim.stat().st_size))


def _steps(model_dir: pathlib.Path) -> list[int]:
  return sorted(int(p.name) for p in (model_dir / "checkpoints").iterdir() if p.name.isdigit())


def test_a_damaged_newest_checkpoint_falls_back_and_is_saved_again(trained, tmp_path):
  model_dir = _copy(trained, tmp_path)
  _scramble_params(model_dir, 20)
  (model_dir / "checkpoints" / "25").mkdir()  # An empty step directory.
  run = _train(model_dir, 30)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "checkpoint at step 25 is unreadable" in run.stderr
  assert "checkpoint at step 20 is unreadable" in run.stderr
  assert "Traceback" not in run.stderr and "Exception ignored" not in run.stderr
  assert _steps(model_dir) == [10, 20, 30]  # 20 retrained from 10 and saved again
  moved = sorted(p.name.rsplit("-", 2)[0] for p in (model_dir / "corrupt_checkpoints").iterdir())
  assert moved == ["checkpoints-20", "checkpoints-25", "input_positions-20"]


def test_every_checkpoint_unreadable_stops_with_one_line_then_restart_moves_them(
    trained, tmp_path):
  model_dir = _copy(trained, tmp_path)
  for step in _steps(model_dir):  # 1 (orbax always saves the first step), 10 and 20
    _scramble_params(model_dir, step)
  run = _train(model_dir, 30)
  assert run.returncode == 2
  errors = [l for l in run.stderr.splitlines() if l.startswith("error: ")]
  assert len(errors) == 1 and f"no readable checkpoint in {model_dir}" in errors[0], run.stderr
  assert "Traceback" not in run.stderr
  assert not (model_dir / "checkpoints" / "10").exists()  # moved aside, not deleted
  run = _train(model_dir, 10, "train.train.on_unreadable = 'restart'")
  assert run.returncode == 0, run.stderr[-3000:]
  assert _steps(model_dir) == [1, 10]  # a fresh run: orbax always saves the first step
  assert len(list((model_dir / "corrupt_checkpoints").glob("checkpoints-*"))) == 3


def test_a_single_flipped_bit_is_caught(trained, tmp_path):
  model_dir = _copy(trained, tmp_path)
  files = [p for p in (model_dir / "checkpoints" / "20" / "params").rglob("*")
           if p.is_file() and "/d/" in str(p)]
  victim = max(files, key=lambda p: p.stat().st_size)
  data = bytearray(victim.read_bytes())
  data[len(data) // 2] ^= 0x10
  victim.write_bytes(bytes(data))
  run = _train(model_dir, 20)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "checkpoint at step 20 is unreadable" in run.stderr
  assert _steps(model_dir) == [1, 10, 20]  # step 20 retrained from 10


@pytest.fixture
def small_disk(tmp_path):
  """A 3 MB tmpfs: room for the run's logs but not for a checkpoint of the tiny model."""
  mount = tmp_path / "disk"
  mount.mkdir()
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                    capture_output=True).returncode:
    pytest.skip("mounting a small tmpfs needs root")
  yield mount
  subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_one_line_and_the_run_resumes_once_there_is_room(demo_root, small_disk):
  model_dir = small_disk / "run"
  full = _train(model_dir, 20)
  assert full.returncode == 2, full.stderr[-3000:]
  assert "Traceback" not in full.stderr
  assert full.stderr.strip().splitlines()[-1].startswith("error: no space left on device")
  subprocess.run(["mount", "-o", "remount,size=200m", str(small_disk)], check=True)
  resumed = _train(model_dir, 20)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert sorted(os.listdir(model_dir / "checkpoints"))[-1] == "20"
