"""Smoke test of the benchmark suite: tiny sections, finite figures and ratios."""

import json
import math

from redllm_jax.tools import bench, bench_decode, bench_train


def test_bench_tiny_sections_are_finite(tmp_path):
  out = bench.run(["ceiling"], [], repeats=1, log=lambda _: None)
  ceiling = out["ceiling"]["flops_per_s"]
  train = bench_train.train_compare("tiny", 2, 32, ceiling, repeats=1)
  decode = bench_decode.decode_compare("tiny", 1, 8, repeats=1, uncached=True)
  out.update(train=train, decode=decode)
  for r in train.values():
    for key in (
      "best_s",
      "median_s",
      "tokens_per_s",
      "model_flops_per_s",
      "mfu",
      "mfu_local_best",
      "mfu_local_median",
      "loss",
    ):
      assert math.isfinite(r[key]) and r[key] > 0, (key, r)
    assert r["mfu"] < 1.5  # A FLOPs or ceiling bug would show up as a huge MFU.
  for r in decode.values():
    for key in ("cached_tokens_per_s", "uncached_tokens_per_s", "cache_speedup"):
      assert math.isfinite(r[key]) and r[key] > 0, (key, r)
    # Greedy decoding with and without caches picks the same tokens.
    assert r["uncached_matches_cached"] == 1.0
  path = tmp_path / "bench.json"
  path.write_text(json.dumps(out))
  lines = bench.compare(out, json.loads(path.read_text()))
  assert lines and all(line.rstrip().endswith("1.000") for line in lines)
