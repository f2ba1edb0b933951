"""Budgets by branching: a shorter `wsd` budget started from a longer run's kept
checkpoint equals the same budget trained on its own, bit for bit."""
import pathlib
import subprocess
import sys

import gin
import jax
import numpy as np
import pytest

from conftest import experiment, train_bindings
from redllm_jax import checkpoints, gin_utils, models, optimizers
from redllm_jax import train as train_module
from redllm_jax.gin_utils import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[2]
WSD = ("optimizers.learning_rate_schedule.kind = 'wsd'",
       "optimizers.learning_rate_schedule.warmup_steps = 2",
       "train.train.checkpoint_every = 100", "train.train.keep_checkpoints = 1")


def test_wsd_schedules_of_two_lengths_agree_until_the_shorter_cooldown():
  long = optimizers.learning_rate_schedule(peak=0.01, warmup_steps=4, decay_steps=50,
                                           kind="wsd", cooldown_fraction=0.2)
  short = optimizers.learning_rate_schedule(peak=0.01, warmup_steps=4, decay_steps=20,
                                            kind="wsd", cooldown_fraction=0.2)
  start = optimizers.cooldown_start(20, 0.2)
  assert start == 16
  assert [float(long(s)) for s in range(start + 1)] == [float(short(s)) for s in range(start + 1)]
  assert float(short(2)) == pytest.approx(0.005)  # warmup
  assert float(short(18)) == pytest.approx(0.01 * (1 - 0.9 * 2 / 4))  # halfway down
  assert float(short(20)) == pytest.approx(0.001)  # final_fraction of the peak
  with pytest.raises(ConfigError, match="inside the 10 warmup steps"):
    optimizers.learning_rate_schedule(warmup_steps=10, decay_steps=11, kind="wsd")


def _params(model_dir):
  gin.clear_config()
  gin_utils.parse_gin([experiment("decllm")], train_bindings("decllm", model_dir, 1, *WSD))
  return jax.tree.leaves(checkpoints.load_params(model_dir, models.from_gin()))


def _train(model_dir, steps, *extra):
  gin.clear_config()
  gin_utils.parse_gin([experiment("decllm")], train_bindings("decllm", model_dir, steps, *WSD,
                                                             *extra))
  return train_module.train()


@pytest.mark.slow  # three short trainings, one a subprocess: about a minute
def test_a_branch_off_a_longer_run_equals_the_shorter_run_trained_alone(demo_root, tmp_path):
  short, branch_step = 10, optimizers.cooldown_start(10, 0.2)
  long_dir, alone, branched = (str(tmp_path / n) for n in ("long", "alone", "branched"))
  # The long run keeps the branch step through the command line, as a user sets it.
  proc = subprocess.run(
      [sys.executable, "-m", "redllm_jax.train", f"--gin_file={experiment('decllm')}",
       *[f"--gin_bindings={b}" for b in train_bindings("decllm", long_dir, 16, *WSD)],
       f"--gin.train.train.keep_steps=[{branch_step}]"],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  kept = sorted(int(p.name) for p in (tmp_path / "long" / "checkpoints").iterdir()
                if p.name.isdigit())
  assert kept == [branch_step, 16]  # the kept step outlives keep_checkpoints = 1

  checkpoints.branch(long_dir, branch_step, branched)
  resumed = _train(branched, short)
  straight = _train(alone, short)
  assert resumed == straight  # the final eval metrics
  for a, b in zip(_params(branched), _params(alone)):
    np.testing.assert_array_equal(a, b)
  checkpoints.branch(long_dir, branch_step, branched)  # already branched: left as it is
  assert [p.name for p in (tmp_path / "branched" / "checkpoints").iterdir()
          if p.name.isdigit()] == [str(short)]
  with pytest.raises(ConfigError, match="no checkpoint at step 3"):
    checkpoints.branch(long_dir, 3, str(tmp_path / "nowhere"))
