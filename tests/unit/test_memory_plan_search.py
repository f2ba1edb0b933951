"""The TPU memory plan's search, against a fake compiler with a known memory law."""

import json

import pytest

from redllm_jax.errors import ConfigError
from redllm_jax.tools import memory_plan


def _fake_compiler(monkeypatch, fixed_gib: float, per_row_gib: float, lines: list):
  """Per-chip peak = fixed + rows per chip per microbatch x per-row activations."""
  gib = 2**30
  monkeypatch.setattr("redllm_jax.tools.tpu_compile.tpu_devices", lambda topology: list(range(64)))
  monkeypatch.setattr(memory_plan, "tpu_versions", lambda: "jax test, libtpu test")

  def compile_one(arch, size, stage, devices, tensor, micro, batch):
    rows = batch // (micro * len(devices))
    lines.append(micro)
    temps = rows * per_row_gib * gib
    return {
      "arch": arch,
      "size": size,
      "stage": stage,
      "devices": len(devices),
      "fsdp": 64,
      "tensor": 1,
      "microbatches": micro,
      "batch": batch,
      "arguments": fixed_gib * gib,
      "outputs": 0,
      "temporaries": temps,
      "aliased": 0,
      "total": fixed_gib * gib + temps,
      "compile_s": 1.0,
    }

  monkeypatch.setattr(memory_plan, "compile_one", compile_one)


def test_the_fewest_microbatches_under_90_percent_of_the_hbm(monkeypatch, tmp_path):
  compiled = []
  _fake_compiler(monkeypatch, fixed_gib=2.0, per_row_gib=1.5, lines=compiled)
  cache = tmp_path / "cache.json"
  memory_plan.tpu_plan(["v5e:8x8"], [("decllm", "8b", "pretrain")], str(cache), float("inf"))
  rows = [r for r in json.loads(cache.read_text()).values() if "total" in r]
  # 16 GiB x 0.9 = 14.4 GiB: 8 rows per chip (14 GiB) fit, 16 (26 GiB) do not.
  fitting = [r for r in rows if r["total"] <= 0.9 * 16 * 2**30]
  assert min(r["microbatches"] for r in fitting) == 2048 // (8 * 64)
  assert compiled == [32, 4, 2]  # 1 row, the line's answer (8 rows), one step up (16 rows)
  table = memory_plan.tpu_markdown(rows, [("decllm", "8b", "pretrain")], ["v5e:8x8"], [])
  assert "| decllm 8b | pretrain | v5e:8x8 | (1,64,1) | 4 |" in table


def test_a_config_that_does_not_fit_at_one_row_is_reported_so(monkeypatch, tmp_path):
  compiled = []
  _fake_compiler(monkeypatch, fixed_gib=15.0, per_row_gib=1.0, lines=compiled)
  cache = tmp_path / "cache.json"
  memory_plan.tpu_plan(["v5e:8x8"], [("decllm", "8b", "finetune")], str(cache), float("inf"))
  assert compiled == [16]
  rows = list(json.loads(cache.read_text()).values())
  table = memory_plan.tpu_markdown(rows, [("decllm", "8b", "finetune")], ["v5e:8x8"], [])
  assert "does not fit (16.00 GiB)" in table
  # A rerun compiles nothing: the cache answers.
  memory_plan.tpu_plan(["v5e:8x8"], [("decllm", "8b", "finetune")], str(cache), float("inf"))
  assert compiled == [16]


def test_adaptation_configs_are_the_adapt_gins_of_the_sizes_asked_for():
  configs = memory_plan.all_configs(["8b", "2b"], ["decllm", "redllm"], ["adapt"])
  assert configs == [
    ("redllm", "8b", "adapt"),
    ("redllm", "8b_2b", "adapt"),
    ("redllm", "2b", "adapt"),
  ]
  assert [c[1] for c in sorted(configs, key=lambda c: memory_plan.size_order(c[1]))] == [
    "2b",
    "8b",
    "8b_2b",
  ]
  with pytest.raises(ConfigError, match="no config for sizes 150m"):
    memory_plan.all_configs(["150m"], ["redllm"], ["adapt"])
  with pytest.raises(ConfigError, match="unknown adpt"):
    memory_plan.all_configs(["2b"], ["redllm"], ["adpt"])
