"""The real TPU compiler, on this CPU host: the tiny configs' train step and cached
decoding compile for a v5e:2x2 slice (4 compile-only TPU devices), with einsum
attention and with the Pallas flash kernel lowered by Mosaic."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from redllm_jax import flops, gin_utils, models

ROOT = pathlib.Path(__file__).resolve().parents[2]
# `make` installs libtpu here, outside the venv's packages (see the Makefile).
LIBTPU_DIR = pathlib.Path(sys.prefix) / "libtpu"


@pytest.fixture(scope="module")
def tpu_env() -> dict[str, str]:
  if not (LIBTPU_DIR / "libtpu").is_dir():
    pytest.skip(f"no libtpu in {LIBTPU_DIR} (make .venv/.installed puts it there)")
  return dict(
    os.environ,
    PYTHONPATH=str(LIBTPU_DIR),
    JAX_PLATFORMS="cpu",
    TPU_SKIP_MDS_QUERY="1",
    ALLOW_MULTIPLE_LIBTPU_LOAD="1",
  )


@pytest.mark.parametrize("impl", ["einsum", "pallas_flash"])
@pytest.mark.parametrize("arch", ["decllm", "redllm"])
def test_tiny_train_step_and_decoding_compile_for_a_v5e_slice(tpu_env, arch, impl):
  run = subprocess.run(
    [
      sys.executable,
      "-m",
      "redllm_jax.tools.tpu_compile",
      "--topology=v5e:2x2",
      f"--gin_file=experiments/demo_pretrain_{arch}.gin",
      "--gin.partitioning.Partitioner.mesh_shape=(1, 4, 1)",
      f"--gin.TransformerConfig.attention_impl='{impl}'",
    ],
    cwd=ROOT,
    env=tpu_env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert run.returncode == 0, run.stderr[-3000:]
  rows = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
  assert [r["what"] for r in rows] == ["train_step", "predict_batch"]
  for row in rows:
    assert row["platform"] == "tpu" and row["device_kind"].startswith("TPU v5")
    assert row["devices"] == 4 and row["mesh"] == {"data": 1, "fsdp": 4, "tensor": 1}
    assert row["model"] == arch and row["arguments"] > 0 and row["temporaries"] > 0
    # The flash kernel is in the TPU program (forward, and dq and dk/dv when training);
    # with einsum there is no Pallas kernel at all.
    assert (row["mosaic_kernels"] > 0) == (impl == "pallas_flash"), row
  # FSDP over 4 chips: each holds a quarter of the f32 parameters (plus its share of
  # Adafactor's factored state and of the batch), never all of them.
  gin_utils.parse_gin([f"experiments/demo_pretrain_{arch}.gin"], [], finalize=False)
  param_bytes = 4 * flops.count_params(models.from_gin().abstract_params()).total
  assert param_bytes / 4 < rows[0]["arguments"] < param_bytes


def test_an_unknown_topology_is_one_line(tpu_env):
  run = subprocess.run(
    [
      sys.executable,
      "-m",
      "redllm_jax.tools.tpu_compile",
      "--topology=v9z:1x1",
      "--gin_file=experiments/demo_pretrain_redllm.gin",
    ],
    cwd=ROOT,
    env=tpu_env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  errors = [l for l in run.stderr.splitlines() if l.startswith("error: ")]
  assert run.returncode == 2 and len(errors) == 1 and "v9z:1x1" in errors[0], run.stderr[-2000:]
  assert "Traceback" not in run.stderr
