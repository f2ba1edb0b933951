"""launch/local_multiprocess.py notices any dead process at once and reports its code."""

import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_a_dead_second_process_stops_the_job_with_its_exit_code(tmp_path) -> None:
  env = dict(os.environ, PYTHONPATH=str(ROOT / "tests" / "scripts"))
  start = time.monotonic()
  run = subprocess.run(
    [
      sys.executable,
      str(ROOT / "launch" / "local_multiprocess.py"),
      "--num_processes=3",
      f"--log_dir={tmp_path}",
      "--module=die_as_process_1",
    ],
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert run.returncode == 128 + 9, run.stderr  # SIGKILL, as a shell reports it
  assert time.monotonic() - start < 30  # not the 300 s the survivors would sleep
