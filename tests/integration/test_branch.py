"""Budgets by branching: a shorter `wsd` budget started from a longer run's kept
checkpoint equals the same budget trained on its own, bit for bit."""

import pathlib
import subprocess
import sys

import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import experiment, train_bindings
from redllm_jax import checkpoints, gin_utils, models, optimizers
from redllm_jax import train as train_module
from redllm_jax.errors import ConfigError
from redllm_jax.partitioning import Partitioner
from redllm_jax.tools import bench_common
from redllm_jax.trainer import compile_steps

ROOT = pathlib.Path(__file__).resolve().parents[2]
WSD = (
  "optimizers.learning_rate_schedule.kind = 'wsd'",
  "optimizers.learning_rate_schedule.warmup_steps = 2",
  "train.train.checkpoint_every = 100",
  "train.train.keep_checkpoints = 1",
)


def test_wsd_schedules_of_two_lengths_agree_until_the_shorter_cooldown():
  long = optimizers.learning_rate_schedule(
    peak=0.01, warmup_steps=4, decay_steps=50, kind="wsd", cooldown_fraction=0.2
  )
  short = optimizers.learning_rate_schedule(
    peak=0.01, warmup_steps=4, decay_steps=20, kind="wsd", cooldown_fraction=0.2
  )
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
  gin_utils.parse_gin(
    [experiment("decllm")], train_bindings("decllm", model_dir, steps, *WSD, *extra)
  )
  return train_module.train()


@pytest.mark.slow  # three short trainings, one a subprocess: about a minute
def test_a_branch_off_a_longer_run_equals_the_shorter_run_trained_alone(demo_root, tmp_path):
  short, branch_step = 10, optimizers.cooldown_start(10, 0.2)
  long_dir, alone, branched = (str(tmp_path / n) for n in ("long", "alone", "branched"))
  # The long run keeps the branch step through the command line, as a user sets it.
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "redllm_jax.train",
      f"--gin_file={experiment('decllm')}",
      *[f"--gin_bindings={b}" for b in train_bindings("decllm", long_dir, 16, *WSD)],
      f"--gin.train.train.keep_steps=[{branch_step}]",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  kept = sorted(
    int(p.name) for p in (tmp_path / "long" / "checkpoints").iterdir() if p.name.isdigit()
  )
  assert kept == [branch_step, 16]  # the kept step outlives keep_checkpoints = 1

  checkpoints.branch(long_dir, branch_step, branched)
  resumed = _train(branched, short)
  straight = _train(alone, short)
  assert resumed == straight  # the final eval metrics
  for a, b in zip(_params(branched), _params(alone)):
    np.testing.assert_array_equal(a, b)
  checkpoints.branch(long_dir, branch_step, branched)  # already branched: left as it is
  assert [
    p.name for p in (tmp_path / "branched" / "checkpoints").iterdir() if p.name.isdigit()
  ] == [str(short)]
  with pytest.raises(ConfigError, match="no checkpoint at step 3"):
    checkpoints.branch(long_dir, 3, str(tmp_path / "nowhere"))


def _static_wsd(decay_steps, warmup_steps=4, peak=0.01):
  """The wsd schedule as optax built it with its boundaries as constants (before they
  became arguments of the train step)."""
  start = optimizers.cooldown_start(decay_steps, 0.2)
  return optax.join_schedules(
    [
      optax.linear_schedule(0.0, peak, warmup_steps),
      optax.constant_schedule(peak),
      optax.linear_schedule(peak, peak * 0.1, decay_steps - start),
    ],
    [warmup_steps, start],
  )


@pytest.mark.parametrize("decay_steps", [5, 12, 50, 125, 250, 500])
def test_the_traced_wsd_schedule_is_optax_with_constant_boundaries_bit_for_bit(decay_steps):
  counts = jnp.arange(decay_steps + 3, dtype=jnp.int32)
  constant = jax.jit(jax.vmap(_static_wsd(decay_steps)))(counts)
  schedule = optimizers.learning_rate_schedule(
    peak=0.01, warmup_steps=4, decay_steps=decay_steps, kind="wsd"
  )
  traced = jax.jit(lambda s, c: jax.vmap(s)(c))(schedule, counts)
  assert traced.dtype == constant.dtype
  np.testing.assert_array_equal(traced, constant)


def test_a_train_step_with_the_schedule_as_argument_equals_the_constant_one():
  """Same parameters and metrics after steps across the cooldown: passing the schedule
  as an argument changes what is compiled, not one bit of what it computes."""
  model = bench_common.build_model("decllm", "micro_s")
  partitioner = Partitioner(mesh_shape=(1, 1, 1), devices=jax.devices()[:1])
  schedule = optimizers.learning_rate_schedule(
    peak=0.01, warmup_steps=4, decay_steps=10, kind="wsd"
  )
  traced = compile_steps(model, optimizers.make_optimizer, partitioner)
  constant = compile_steps(
    model, lambda _: optimizers.make_optimizer(learning_rate=_static_wsd(10)), partitioner
  )
  states = [steps.init(jax.random.key(0)) for steps in (traced, constant)]
  for step in range(10):
    batch = partitioner.global_batch(bench_common.synthetic_batch(model, 4, 32, seed=step))
    states[0], ours = traced.train(states[0], batch, jax.random.key(1), schedule)
    states[1], theirs = constant.train(states[1], batch, jax.random.key(1), schedule)
    np.testing.assert_array_equal(ours["loss"], theirs["loss"])
    np.testing.assert_array_equal(ours["learning_rate"], theirs["learning_rate"])
  for ours, theirs in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1])):
    np.testing.assert_array_equal(ours, theirs)


def test_runs_of_one_shape_in_one_process_share_their_compiled_steps(
  demo_root, tmp_path, monkeypatch
):
  """A study worker's later runs of a shape (another budget or seed) reuse the steps the
  first one traced and compiled; another optimizer setting gets its own."""
  built = []

  def counted(*args):
    built.append(args)
    return compile_steps(*args)

  monkeypatch.setattr(train_module, "compile_steps", counted)
  monkeypatch.setattr(train_module, "_STEPS", {})
  _train(str(tmp_path / "six"), 6)
  _train(str(tmp_path / "eight"), 8, "train.train.seed = 1")
  assert len(built) == 1
  _train(str(tmp_path / "other"), 6, "optimizers.make_optimizer.decay_rate = 0.7")
  assert len(built) == 2
