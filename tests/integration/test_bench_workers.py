"""`bench_workers` as a user runs it: workers side by side, by microbatches and pinning."""

import json
import math
import os
import subprocess
import sys

import pytest

BENCH = [sys.executable, "-m", "redllm_jax.tools.bench_workers"]


def _env():
  return dict(os.environ, JAX_PLATFORMS="cpu")


@pytest.mark.slow  # Eight worker processes, each a train-step compile: about a minute.
def test_every_setting_times_the_same_step_in_each_worker(tmp_path):
  out = tmp_path / "workers.json"
  shape = "decllm/micro_s/4x32/256"
  proc = subprocess.run(
    [
      *BENCH,
      f"--shapes={shape}",
      "--microbatches=1,2",
      "--pinning=false,true",
      "--workers=2",
      "--steps=2",
      f"--out={out}",
    ],
    capture_output=True,
    text=True,
    env=_env(),
    timeout=900,
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  rows = json.loads(out.read_text())["shapes"][shape]
  assert list(rows) == [
    "1 microbatches, unpinned",
    "2 microbatches, unpinned",
    "1 microbatches, pinned",
    "2 microbatches, pinned",
  ]
  assert rows["1 microbatches, unpinned"]["speedup"] == 1.0
  losses = [w["loss"] for r in rows.values() for w in r["workers"]]
  assert len(losses) == 8
  # The first step's loss is the batch's per-token mean however the batch is split.
  assert max(losses) - min(losses) <= 1e-5 * abs(losses[0]), losses
  for r in rows.values():
    assert math.isfinite(r["tokens_per_s_per_worker"]) and r["tokens_per_s_per_worker"] > 0


@pytest.mark.parametrize(
  "flag,message",
  [
    (
      "--microbatches=1,3",
      "--microbatches=['1', '3']: each must divide decllm/study_l/64x128/1024/in_first's 64 rows",
    ),
    ("--pinning=maybe", "--pinning=['maybe']: want true and/or false"),
  ],
)
def test_a_bad_flag_is_one_line_and_exit_2(tmp_path, flag, message):
  proc = subprocess.run(
    [*BENCH, flag, f"--out={tmp_path / 'x.json'}"],
    capture_output=True,
    text=True,
    env=_env(),
    timeout=120,
  )
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip().splitlines() == [f"error: {message}"]
