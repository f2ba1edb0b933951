"""Adaptation runs as a user starts them: `python -m redllm_jax.train` with runs/adapt.gin."""

import json
import os
import pathlib
import subprocess
import sys

import gin
import jax
import numpy as np
import pytest

from conftest import experiment, train_bindings
from redllm_jax import adaptation, checkpoints, gin_utils
from redllm_jax import train as train_module

ROOT = pathlib.Path(__file__).resolve().parents[2]
UNBALANCED = "experiments/demo_adapt_redllm_unbalanced.gin"  # 5-layer encoder, 2-layer decoder


@pytest.fixture(scope="module")
def decllm_checkpoint(demo_root, tmp_path_factory) -> str:
  """A tiny demo DecLLM (5 layers) after 2 steps: the checkpoint to adapt."""
  model_dir = str(tmp_path_factory.mktemp("decllm"))
  gin.clear_config()
  gin_utils.parse_gin([experiment("decllm")], train_bindings("decllm", model_dir, 2))
  train_module.train()
  gin.clear_config()
  return model_dir


def _adapt(gin_file, model_dir, source, steps, *extra, env_extra=None):
  bindings = [
    *train_bindings("redllm", model_dir, steps),
    f"INITIAL_CHECKPOINT_PATH = '{source}'",
    "train.train.checkpoint_every = 1",
    *extra,
  ]
  return subprocess.run(
    [
      sys.executable,
      "-m",
      "redllm_jax.train",
      f"--gin_file={gin_file}",
      *[f"--gin_bindings={b}" for b in bindings],
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=900,
    env=dict(os.environ, **(env_extra or {})),
  )


def _one_line_error(result) -> str:
  assert result.returncode == 2, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: "), result.stderr[-3000:]
  return last


@pytest.mark.slow  # four train subprocesses: about 2 min idle, 10 under load
def test_adapt_command_starts_from_the_mapped_decllm_resumes_and_refuses_bad_sources(
  decllm_checkpoint, tmp_path
):
  run = str(tmp_path / "adapted")
  # Learning rate 0: step 1 leaves the parameters as adapted, so the checkpoint shows
  # what the command built from its flags (the layer rules given as macros).
  rules = ["ENCODER_LAYERS = 'first'", "DECODER_LAYERS = 'evenly_spaced'"]
  first = _adapt(
    UNBALANCED, run, decllm_checkpoint, 1, *rules, "optimizers.learning_rate_schedule.peak = 0.0"
  )
  assert first.returncode == 0, first.stderr[-3000:]
  red_model, saved = checkpoints.load_model_and_params(run)
  assert (red_model.config.num_encoder_layers, red_model.config.num_decoder_layers) == (5, 2)
  source, params = checkpoints.load_model_and_params(decllm_checkpoint)
  want = adaptation.adapt_params(params, source.config, red_model.config, "first", "evenly_spaced")
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(saved), jax.tree.leaves(want)):
    np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))

  # Resume: an adaptation run continues from MODEL_DIR like any run (not re-adapted).
  second = _adapt(UNBALANCED, run, decllm_checkpoint, 2, *rules)
  assert second.returncode == 0, second.stderr[-3000:]
  assert "steps 1 -> 2" in second.stdout
  assert (tmp_path / "adapted" / "checkpoints" / "2").is_dir()

  # A checkpoint of the wrong architecture (the RedLLM just made), and a shape that
  # does not match (a wider FFN than the DecLLM's), are one line each, exit 2.
  wrong = _one_line_error(_adapt(UNBALANCED, str(tmp_path / "w"), run, 1))
  assert "holds a redllm checkpoint" in wrong
  wider = _one_line_error(
    _adapt(
      UNBALANCED, str(tmp_path / "s"), decllm_checkpoint, 1, "config.TransformerConfig.d_ff = 1024"
    )
  )
  assert "d_ff=512" in wider and "1024" in wider


@pytest.mark.slow
def test_adaptation_on_an_8_device_mesh_equals_one_device(decllm_checkpoint, tmp_path):
  eight = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  losses = {}
  for mesh, env in (("(1, 1, 1)", None), ("(2, 2, 2)", eight)):
    run = tmp_path / mesh.replace(" ", "")
    result = _adapt(
      UNBALANCED,
      str(run),
      decllm_checkpoint,
      3,
      f"partitioning.Partitioner.mesh_shape = {mesh}",
      "optimizers.learning_rate_schedule.warmup_steps = 1",
      env_extra=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(run / "metrics.jsonl") as f:
      losses[mesh] = [row["loss"] for row in map(json.loads, f) if "loss" in row]
  assert len(losses["(1, 1, 1)"]) == 3
  np.testing.assert_allclose(losses["(2, 2, 2)"], losses["(1, 1, 1)"], rtol=1e-5)


# model_info of each paper adaptation gin: (total parameters, encoder, decoder layers).
# Non-embedding parameters per layer at d 4096: 268M (encoder), 335M (with cross-attention).
PAPER = {
  "adapt_redllm_2b": (4_802_769_920, 20, 20),
  "adapt_redllm_8b": (19_462_283_264, 32, 32),
  "adapt_redllm_8b_2b": (10_737_784_832, 32, 6),
}


@pytest.mark.parametrize(
  "name",
  [
    pytest.param("adapt_redllm_2b", marks=pytest.mark.slow),
    pytest.param("adapt_redllm_8b", marks=pytest.mark.slow),
    "adapt_redllm_8b_2b",
  ],
)
def test_paper_adaptation_gins_in_model_info(name):
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "redllm_jax.tools.model_info",
      f"--gin_file=experiments/{name}.gin",
      "--gin.MODEL_DIR='/tmp/unused'",
      "--gin.INITIAL_CHECKPOINT_PATH='/tmp/unused'",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  total, enc, dec = PAPER[name]
  assert "model: redllm" in result.stdout
  assert f"total_params: {total:,}" in result.stdout
  # An independent count: heads x head_dim = d at both sizes; each attention block has
  # Q, K, V, O (4 d^2) and four per-head norms of 128 (Q, K, V, output); SwiGLU 3 d d_ff.
  d, ff = (2560, 10240) if name == "adapt_redllm_2b" else (4096, 16384)
  attention, ffn = 4 * d * d + 4 * 128, 3 * d * ff
  encoder_layer = attention + ffn + 2 * d
  decoder_layer = 2 * attention + ffn + 3 * d
  assert total == 32768 * d + enc * encoder_layer + dec * decoder_layer + 2 * d
