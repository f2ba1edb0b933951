"""The ceiling section: the best measured matmul FLOP/s, the MFU denominator."""

import statistics
import time
from typing import Any, Callable, Optional, Sequence

import jax


def _timeit(fn: Callable[[], Any], repeats: int) -> dict[str, float]:
  """Seconds of `fn()` (which must block): best and median of `repeats` after one warmup."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    tic = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - tic)
  return {"best_s": min(times), "median_s": statistics.median(times)}


_matmul = jax.jit(lambda a, b: a @ b)
CEILING_SHAPES = ((2048, 1024, 4096), (2048, 4096, 1024), (2048, 2048, 2048))


def matmul_ceiling(
  repeats: int = 5,
  dtype: Optional[str] = None,
  shapes: Sequence[tuple[int, int, int]] = CEILING_SHAPES,
) -> dict[str, Any]:
  """Best measured matmul FLOP/s over `shapes` (m x k @ k x n)."""
  if dtype is None:
    dtype = "float32" if jax.default_backend() == "cpu" else "bfloat16"
  per_shape = {}
  for m, k, n in shapes:
    a = jax.random.normal(jax.random.key(0), (m, k), dtype)
    b = jax.random.normal(jax.random.key(1), (k, n), dtype)
    t = _timeit(lambda: _matmul(a, b), repeats)
    per_shape[f"{m}x{k}x{n}"] = 2.0 * m * k * n / t["best_s"]
  return {"dtype": dtype, "flops_per_s": max(per_shape.values()), "per_shape": per_shape}


def quick_ceiling() -> float:
  """The 150M FFN-shaped matmul, best of 3: re-measured right before each timed step."""
  return matmul_ceiling(repeats=3, shapes=CEILING_SHAPES[:1])["flops_per_s"]
