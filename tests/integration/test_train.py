"""Training: learning, mesh equivalence, resume after SIGKILL, SIGTERM, faults, bad config."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import gin
import jax
import numpy as np
import pytest
from tensorboard.backend.event_processing import plugin_event_accumulator

from conftest import experiment, train_bindings
from redllm_jax import checkpoints, gin_utils, models, optimizers
from redllm_jax import train as train_module
from redllm_jax.errors import ConfigError
from redllm_jax.partitioning import Partitioner
from redllm_jax.errors import TrainingError
from redllm_jax.trainer import compile_steps

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _parse(arch, model_dir, steps, *extra):
  gin.clear_config()
  gin_utils.parse_gin([experiment(arch)], train_bindings(arch, model_dir, steps, *extra))


def _train(arch, model_dir, steps, *extra):
  _parse(arch, model_dir, steps, *extra)
  return train_module.train()


def _metrics(model_dir):
  """The last logged value of each metric at each step (a restart re-logs steps)."""
  rows = {}
  with open(os.path.join(model_dir, "metrics.jsonl")) as f:
    for line in f:
      row = json.loads(line)
      rows.setdefault(row["step"], {}).update(row)
  return rows


@pytest.mark.parametrize("arch", ["decllm", "redllm"])
def test_tiny_models_lower_eval_loss_within_50_steps(arch, demo_root, tmp_path):
  before = _train(arch, str(tmp_path / "a"), 0)
  after = _train(arch, str(tmp_path / "b"), 50)
  assert after["demo_redpajama/loss"] < before["demo_redpajama/loss"] - 0.5, (before, after)
  logged = _metrics(str(tmp_path / "b"))
  for name in (
    "loss",
    "z_loss",
    "accuracy",
    "learning_rate",
    "grad_norm",
    "tokens_per_second",
    "step_time",
    "model_flops_per_second",
  ):
    assert np.isfinite(logged[50][name]), name
  assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "b").iterdir())
  assert (tmp_path / "b" / "checkpoints" / "50").is_dir()


def _run(args, env_extra=None, **kwargs):
  env = dict(os.environ, **(env_extra or {}))
  return subprocess.Popen(
    [sys.executable, "-m", "redllm_jax.train", *args],
    cwd=ROOT,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    **kwargs,
  )


def _cli(arch, model_dir, steps, *extra):
  return [
    f"--gin_file={experiment(arch)}",
    *[f"--gin_bindings={b}" for b in train_bindings(arch, model_dir, steps, *extra)],
  ]


def _wait_for(predicate, proc, timeout=240):
  start = time.time()
  while not predicate():
    assert proc.poll() is None, proc.communicate()
    assert time.time() - start < timeout
    time.sleep(0.2)


def _final_params(arch, model_dir):
  _parse(arch, model_dir, 1)
  return checkpoints.load_params(model_dir, models.from_gin())


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_run(demo_root, tmp_path):
  arch, every = "redllm", "train.train.checkpoint_every = 10"
  straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
  proc = _run(_cli(arch, straight, 20, every))
  assert proc.wait(timeout=600) == 0, proc.communicate()
  proc = _run(_cli(arch, killed, 20, every))
  _wait_for(
    lambda: (
      (pathlib.Path(killed) / "checkpoints" / "10" / "commit_success.txt").exists()
      or any((pathlib.Path(killed) / "checkpoints").glob("10/*/commit_success.txt"))
    ),
    proc,
  )
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  proc = _run(_cli(arch, killed, 20, every))
  assert proc.wait(timeout=600) == 0, proc.communicate()
  a, b = _metrics(straight), _metrics(killed)
  assert [a[s]["loss"] for s in range(1, 21)] == [b[s]["loss"] for s in range(1, 21)]
  # Each step is logged once, in metrics.jsonl and as TensorBoard reads the events.
  with open(os.path.join(killed, "metrics.jsonl")) as f:
    assert [r["step"] for r in map(json.loads, f) if "loss" in r] == list(range(1, 21))
  events = plugin_event_accumulator.EventAccumulator(killed, size_guidance={"tensors": 0})
  events.Reload()
  assert [e.step for e in events.Tensors("loss")] == list(range(1, 21))
  for x, y in zip(
    jax.tree.leaves(_final_params(arch, straight)), jax.tree.leaves(_final_params(arch, killed))
  ):
    np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_sigterm_saves_a_restorable_checkpoint_at_that_step(demo_root, tmp_path):
  model_dir = str(tmp_path / "run")
  proc = _run(_cli("decllm", model_dir, 1000))
  _wait_for(
    lambda: (
      os.path.exists(os.path.join(model_dir, "metrics.jsonl")) and len(_metrics(model_dir)) >= 3
    ),
    proc,
  )
  signalled = time.monotonic()
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=240)
  assert proc.returncode == 0, err
  assert time.monotonic() - signalled < 30  # inside a cluster's preemption notice
  steps = sorted(
    int(p.name) for p in (pathlib.Path(model_dir) / "checkpoints").iterdir() if p.name.isdigit()
  )
  assert steps and steps[-1] >= 3 and steps[-1] == max(_metrics(model_dir))
  assert "preempted" in err + out
  params = _final_params("decllm", model_dir)
  assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(params))


class _Poisoned:
  """Wraps a batch iterator; batch number `at` gets NaN loss weights."""

  def __init__(self, inner, at):
    self.inner, self.at, self.count = inner, at, 0

  def __next__(self):
    batch = next(self.inner)
    self.count += 1
    if self.count == self.at:
      batch = dict(
        batch,
        decoder_loss_weights=np.full(batch["decoder_target_tokens"].shape, np.nan, np.float32),
      )
    return batch

  def save(self, directory):
    self.inner.save(directory)

  def restore(self, directory):
    self.inner.restore(directory)

  def close(self):
    self.inner.close()


def test_nan_loss_stops_cleanly_and_writes_no_checkpoint(demo_root, tmp_path, monkeypatch):
  from redllm_jax.data import input_pipeline

  original = input_pipeline.make_sharded_input

  def poisoned(*args, split="train", **kwargs):
    inner = original(*args, split=split, **kwargs)
    return _Poisoned(inner, 4) if split == "train" else inner

  monkeypatch.setattr(input_pipeline, "make_sharded_input", poisoned)
  model_dir = tmp_path / "nan"
  with pytest.raises(TrainingError, match="at step 4"):
    _train("decllm", str(model_dir), 10, "train.train.checkpoint_every = 1")
  steps = sorted(int(p.name) for p in (model_dir / "checkpoints").iterdir() if p.name.isdigit())
  assert steps == [1, 2, 3]  # Steps before the NaN, none for it.


def test_truncated_latest_checkpoint_falls_back_with_a_warning(demo_root, tmp_path, caplog):
  model_dir = tmp_path / "run"
  _train("redllm", str(model_dir), 4, "train.train.checkpoint_every = 2")
  latest = model_dir / "checkpoints" / "4" / "params"
  for path in sorted(latest.rglob("*")):
    if path.is_file():
      path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])  # Truncate every file.
  _parse("redllm", str(model_dir), 4)
  model = models.from_gin()
  compiled = compile_steps(model, optimizers.make_optimizer, Partitioner())
  checkpointer = checkpoints.Checkpointer(str(model_dir), 2)
  restored = checkpointer.restore_latest(
    compiled.abstract_state.params, compiled.abstract_state.opt_state, model.describe()
  )
  assert restored is not None and restored[2] == 2
  assert any("step 4 is unreadable" in r.getMessage() for r in caplog.records)


def _config_error(arch, tmp_path, *extra):
  _parse(arch, str(tmp_path / "bad"), 2, *extra)
  with pytest.raises(ConfigError) as error:
    train_module.train()
  message = error.value.message
  assert "\n" not in message
  return message


def test_bad_configurations_are_one_line_errors(demo_root, tmp_path):
  assert "does not divide" in _config_error(
    "decllm", tmp_path, "partitioning.Partitioner.mesh_shape = (3, -1, 1)"
  )
  assert "has 4 devices" in _config_error(
    "decllm", tmp_path, "partitioning.Partitioner.mesh_shape = (2, 2, 1)"
  )
  assert "microbatches" in _config_error("decllm", tmp_path, "train.train.num_microbatches = 3")
  assert "does not fit a redllm" in _config_error(
    "redllm", tmp_path, "make_feature_converter.arch = 'dec'"
  )
  assert "split_point" in _config_error(
    "redllm", tmp_path, "make_feature_converter.split_point = 64"
  )
  assert "does not exist" in _config_error(
    "decllm", tmp_path, f"train.train.initial_checkpoint_path = '{tmp_path}/nowhere'"
  )


def test_finetuning_refuses_the_other_architecture_and_restores_params_only(demo_root, tmp_path):
  pretrained = str(tmp_path / "red")
  _train("redllm", pretrained, 2)
  message = _config_error(
    "decllm", tmp_path, f"train.train.initial_checkpoint_path = '{pretrained}'"
  )
  assert "holds a redllm model" in message
  tuned = tmp_path / "tuned"
  _train("redllm", str(tuned), 1, f"train.train.initial_checkpoint_path = '{pretrained}'")
  # A fresh step: the finetuned run's first checkpoint is step 1, not 3.
  assert sorted(p.name for p in (tuned / "checkpoints").iterdir() if p.name.isdigit()) == ["1"]


def test_missing_macro_and_unknown_binding_exit_2_with_one_line(demo_root, tmp_path):
  missing = subprocess.run(
    [sys.executable, "-m", "redllm_jax.train", f"--gin_file={experiment('decllm')}"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert missing.returncode == 2 and "MODEL_DIR" in missing.stderr
  assert missing.stderr.strip().splitlines()[-1].startswith("error:")
  assert "Traceback" not in missing.stderr
  unknown = subprocess.run(
    [
      sys.executable,
      "-m",
      "redllm_jax.train",
      *_cli("decllm", str(tmp_path), 1, "train.train.bogus = 1"),
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert unknown.returncode == 2 and "bogus" in unknown.stderr and "Traceback" not in unknown.stderr


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["decllm", "redllm"])
def test_meshes_agree_with_one_device(arch, demo_root, tmp_path):
  out = tmp_path / "mesh.json"
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  subprocess.run(
    [
      sys.executable,
      str(ROOT / "tests" / "scripts" / "mesh_run.py"),
      arch,
      str(out),
      "10",
      "1",
      "8,1,1",
      "2,2,2",
      "1,2,4",
    ],
    check=True,
    env=env,
    cwd=ROOT,
    timeout=900,
  )
  runs = json.loads(out.read_text())
  reference = np.array(runs["1"]["losses"])
  for mesh in ("8,1,1", "2,2,2", "1,2,4"):
    np.testing.assert_allclose(runs[mesh]["losses"], reference, rtol=1e-5)
  assert any("fsdp" in spec for spec in runs["2,2,2"]["specs"])
  assert any("tensor" in spec for spec in runs["1,2,4"]["specs"])


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["decllm", "redllm"])
def test_flash_attention_trains_like_einsum_on_sharded_meshes(arch, demo_root, tmp_path):
  """The Pallas kernel (interpret mode here) inside shard_map, batch over data/fsdp and
  heads over tensor, gives einsum's single-device losses: forward and backward agree."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  runs = {}
  for impl, meshes in (("einsum", ["1"]), ("pallas_flash", ["1", "2,2,2", "1,2,4"])):
    out = tmp_path / f"{impl}.json"
    subprocess.run(
      [
        sys.executable,
        str(ROOT / "tests" / "scripts" / "mesh_run.py"),
        arch,
        str(out),
        "4",
        *meshes,
        f"--gin=TransformerConfig.attention_impl='{impl}'",
      ],
      check=True,
      env=env,
      cwd=ROOT,
      timeout=900,
    )
    runs[impl] = json.loads(out.read_text())
  reference = np.array(runs["einsum"]["1"]["losses"])
  for mesh, run in runs["pallas_flash"].items():
    np.testing.assert_allclose(run["losses"], reference, rtol=1e-4, err_msg=mesh)


@pytest.mark.slow
def test_two_gloo_processes_train_checkpoint_resume_and_match_one_process(demo_root, tmp_path):
  sys.path.insert(0, str(ROOT / "launch"))
  from local_multiprocess import launch  # pylint: disable=import-outside-toplevel

  extra = (
    "partitioning.Partitioner.mesh_shape = (2, 2, 2)",
    "train.train.num_input_shards = 2",
    "train.train.checkpoint_every = 2",
    "optimizers.learning_rate_schedule.kind = 'constant'",
  )
  multi, single = str(tmp_path / "multi"), str(tmp_path / "single")
  for steps in (4, 8):  # Train to 4, then resume to 8.
    code = launch(2, 4, _cli("redllm", multi, steps, *extra), str(tmp_path / "logs"))
    assert code == 0, [p.read_text() for p in (tmp_path / "logs").iterdir()]
  proc = _run(
    _cli("redllm", single, 8, *extra),
    env_extra={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"},
  )
  assert proc.wait(timeout=600) == 0, proc.communicate()
  a, b = _metrics(multi), _metrics(single)
  np.testing.assert_allclose(
    [a[s]["loss"] for s in range(1, 9)], [b[s]["loss"] for s in range(1, 9)], rtol=1e-5
  )
  assert sorted(
    p.name
    for p in (pathlib.Path(multi) / "input_positions" / "8").iterdir()
    if p.name.endswith(".json")
  ) == ["shard_0.json", "shard_1.json"]


def _child_with_process_id(parent: int, process_id: int) -> int:
  """The pid of the launcher's child that jax.distributed knows as `process_id`."""
  for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
      with open(f"/proc/{pid}/stat") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
      with open(f"/proc/{pid}/environ", "rb") as f:
        env = f.read().split(b"\0")
    except OSError:
      continue
    if ppid == parent and f"REDLLM_PROCESS_ID={process_id}".encode() in env:
      return int(pid)
  raise AssertionError(f"no child with process id {process_id}")


@pytest.mark.slow
def test_sigterm_to_one_of_two_processes_stops_both_at_one_saved_step(demo_root, tmp_path):
  """Only process 1 is signalled: the device-side agreement stops both at the same step."""
  model_dir = tmp_path / "multi"
  args = _cli(
    "redllm",
    str(model_dir),
    200,
    "partitioning.Partitioner.mesh_shape = (2, 2, 2)",
    "train.train.num_input_shards = 2",
    "train.train.checkpoint_every = 100",
    "train.train.log_every = 1",
  )
  launcher = subprocess.Popen(
    [
      sys.executable,
      str(ROOT / "launch" / "local_multiprocess.py"),
      f"--log_dir={tmp_path / 'logs'}",
      "--",
      *args,
    ],
    cwd=ROOT,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  _wait_for(
    lambda: (model_dir / "metrics.jsonl").exists() and len(_metrics(model_dir)) >= 3,
    launcher,
    timeout=400,
  )
  os.kill(_child_with_process_id(launcher.pid, 1), signal.SIGTERM)
  _, err = launcher.communicate(timeout=120)
  assert launcher.returncode == 0, err[-3000:]
  saved = sorted(int(p.name) for p in (model_dir / "checkpoints").iterdir() if p.name.isdigit())
  assert saved[-1] == max(_metrics(model_dir)) < 200


def test_a_relative_model_dir_trains_and_resumes(demo_root, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  _train("decllm", "relative/run", 2, "train.train.checkpoint_every = 1")
  assert (tmp_path / "relative" / "run" / "checkpoints" / "2").is_dir()
  assert "demo_redpajama/loss" in _train("decllm", "relative/run", 3)
