"""`bench --sections=study` as a user runs it: the custom backward and autodiff's, side by side."""

import json
import math
import os
import subprocess
import sys

import pytest

BENCH = [sys.executable, "-m", "redllm_jax.tools.bench", "--sections=study"]


def _env():
  return dict(os.environ, JAX_PLATFORMS="cpu")


@pytest.mark.slow  # Two train-step compiles in a subprocess: about a minute under load.
def test_study_section_times_both_backwards_of_the_same_step(tmp_path):
  out = tmp_path / "bench.json"
  shape = "redllm/micro_s/2x32/256/scan/in_first"
  proc = subprocess.run(
    [*BENCH, f"--study_shapes={shape}", "--repeats=1", f"--out={out}"],
    capture_output=True,
    text=True,
    env=_env(),
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  r = json.loads(out.read_text())["study"][shape]
  assert r["loss_equal"] is True  # The first step's loss, bit for bit.
  for name in ("custom", "autodiff"):
    assert r[name]["params"] > 0 and r[name]["batch"] == 2 and r[name]["tokens_per_row"] == 32
    for key in ("median_s", "tokens_per_s", "model_flops_per_s", "mfu_local_median"):
      assert math.isfinite(r[name][key]) and r[name][key] > 0, (name, key)
  assert math.isfinite(r["speedup_median"]) and r["speedup_median"] > 0
  assert "custom backward:" in proc.stdout


def test_a_bad_study_shape_is_one_line_and_exit_2(tmp_path):
  proc = subprocess.run(
    [*BENCH, "--study_shapes=decllm/mini_s/32by256/4096", f"--out={tmp_path / 'x.json'}"],
    capture_output=True,
    text=True,
    env=_env(),
    timeout=120,
  )
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
    "error: bad --study_shapes entry 'decllm/mini_s/32by256/4096': want "
    "arch/size/ROWSxTOKENS/vocab[/option...], arch in ('decllm', 'redllm'), "
    "options in ('scan', 'in_first')"
  ]
