"""`bench --sections=peers` as a user runs it: HF PyTorch decoding beside ours, or a
one-line skip when the `hf` extra is not installed."""

import json
import pathlib
import subprocess
import sys

import pytest

from redllm_jax.tools import bench_peers

ROOT = pathlib.Path(__file__).resolve().parents[2]


# Minutes with torch installed (make installs the hf extra): both stacks train and decode.
@pytest.mark.slow
def test_peers_section_times_both_stacks_or_says_why_not(tmp_path):
  out = tmp_path / "peers.json"
  run = subprocess.run(
    [
      sys.executable,
      "-m",
      "redllm_jax.tools.bench",
      "--sections=peers",
      "--sizes=tiny",
      "--repeats=1",
      "--decode_length=16",
      f"--out={out}",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert run.returncode == 0, run.stderr[-3000:]
  peers = json.loads(out.read_text())["peers"]
  reason = bench_peers.missing()
  if reason:
    assert peers == {"skipped": reason} and f"peers: skipped, {reason}" in run.stdout
    return
  rows = peers["tiny"]
  assert rows["read_bytes_per_s"] > 1e8 and rows["matvec_bytes_per_s"] > 1e8
  for arch in ("decllm", "redllm"):
    r = rows[arch]
    # The peer has our widths and depths: parameter counts within 10% (no QKV norms in
    # Llama; T5Gemma's extra norms).
    assert abs(r["hf_params"] / r["params"] - 1) < 0.1, r
    assert r["ours"]["tokens_per_s"] > 0 and r["hf"]["tokens_per_s"] > 0
    assert r["ours_over_hf"] == r["ours"]["tokens_per_s"] / r["hf"]["tokens_per_s"]
    assert r["step_over_bound"] > 0 and r["step_over_matvec_bound"] > 0
    # A step reads fewer weights than the model has: RedLLM's encoder runs once.
    assert (r["step_weight_bytes"] < 4 * r["params"]) == (arch == "redllm")
    assert f"peers {arch}" in run.stdout
    train = rows["train"][arch]
    assert train["ours_over_hf"] == train["ours"]["tokens_per_s"] / train["hf"]["tokens_per_s"]
    assert f"peers {arch:7s} tiny  train" in run.stdout
