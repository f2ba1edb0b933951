"""AOT memory plan for one paper size (150M) on 8 fake CPU devices, in a subprocess."""

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_memory_plan_150m_on_8_devices(tmp_path):
  out_dir = tmp_path / "plan"
  cmd = [
    sys.executable,
    "-m",
    "redllm_jax.tools.memory_plan",
    "--sizes=150m",
    "--devices=8",
    "--batch=16",
    "--parallel=1",
    f"--out_dir={out_dir}",
  ]
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=1200)
  result = json.loads((out_dir / "memory_plan.json").read_text())
  rows = result["compiles"]
  assert {(r["arch"], r["stage"]) for r in rows} == {
    (a, s) for a in ("decllm", "redllm") for s in ("pretrain", "finetune")
  }
  for r in rows:
    assert r["devices"] == 8 and r["remat"] == "dots_no_batch" and r["dtype"] == "bfloat16"
    for key in ("arguments", "outputs", "temporaries", "total"):
      assert r[key] > 0, (key, r)
  plan = {(e["arch"], e["stage"]): e for e in result["plan"]}
  assert len(plan) == 4
  # Smaller microbatches use less memory.
  dec = sorted(
    (r for r in rows if r["arch"] == "decllm" and r["stage"] == "pretrain"),
    key=lambda r: r["microbatches"],
  )
  assert dec[0]["total"] > dec[-1]["total"]
  assert (out_dir / "memory_plan.md").read_text().count("| decllm 150m |") >= 2
  assert (out_dir / "memory_plan.csv").exists()


@pytest.mark.slow
def test_memory_plan_covers_the_paper_adaptation_gins(tmp_path):
  """`--stages=adapt`: the 2B DecLLM adapted into a 20 + 20-layer RedLLM compiles on a
  fake mesh like the pretraining configs, and its memory is planned the same way."""
  out_dir = tmp_path / "plan"
  cmd = [
    sys.executable,
    "-m",
    "redllm_jax.tools.memory_plan",
    "--stages=adapt",
    "--sizes=2b",
    "--archs=redllm",
    "--devices=8",
    "--batch=16",
    "--parallel=1",
    f"--out_dir={out_dir}",
  ]
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=1800)
  result = json.loads((out_dir / "memory_plan.json").read_text())
  assert {(r["arch"], r["size"], r["stage"]) for r in result["compiles"]} == {
    ("redllm", "2b", "adapt")
  }
  assert all(r["total"] > 0 for r in result["compiles"])
  assert [(e["arch"], e["size"], e["stage"]) for e in result["plan"]] == [("redllm", "2b", "adapt")]
  bad = subprocess.run(
    [sys.executable, "-m", "redllm_jax.tools.memory_plan", "--stages=adpt", f"--out_dir={out_dir}"],
    env=env,
    capture_output=True,
    text=True,
  )
  assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: --stages")
