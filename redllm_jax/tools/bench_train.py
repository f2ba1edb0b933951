"""The train section (the real train step's time and MFU, both architectures side by
side) and the dispatch section (whether train steps dispatched back to back pipeline)."""

import statistics
import time
from typing import Any, Callable, Sequence

import jax

from redllm_jax import flops, optimizers
from redllm_jax.partitioning import Partitioner
from redllm_jax.tools.bench_ceiling import quick_ceiling
from redllm_jax.tools.bench_common import ARCHS, build_model, synthetic_batch
from redllm_jax.trainer import compile_steps

TRAIN_SHAPES = {"tiny": (16, 256)}  # Demo batch 16 x 256; other sizes use the flags.


def lengths_for(arch: str, tokens: int) -> tuple[int, int]:
  """(inputs, targets) per row: DecLLM one sequence; RedLLM split in the middle."""
  return (tokens // 2, tokens - tokens // 2) if arch == "redllm" else (0, tokens)


def train_setup(
  arch: str,
  size: str,
  batch: int,
  tokens: int,
  remat: str = "none",
  bindings: Sequence[str] = (),
  num_microbatches: int = 1,
):
  """(figures so far, run) for the real sharded train step on one device; run() blocks.

  On CPU kernels are stored [out, in] (`kernels_out_first`): XLA's dots run the 150M
  step 1.1-1.2x faster in that layout (docs/perf_notes.md). A binding overrides it.
  """
  extra = [
    f"config.TransformerConfig.kernels_out_first = {jax.default_backend() == 'cpu'}",
    *bindings,
  ]
  if remat != "gin":
    extra.append(f"config.TransformerConfig.remat_policy = '{remat}'")
  model = build_model(arch, size, extra)
  partitioner = Partitioner(mesh_shape=(1, 1, 1), devices=jax.devices()[:1])
  schedule = optimizers.learning_rate_schedule(peak=0.01, warmup_steps=10, decay_steps=100)
  steps = compile_steps(model, optimizers.make_optimizer, partitioner, num_microbatches)
  holder = [steps.init(jax.random.key(0))]
  data = steps.partitioner.global_batch(synthetic_batch(model, batch, tokens))
  rng = jax.random.key(1)

  def run(block: bool = True):
    holder[0], metrics = steps.train(holder[0], data, rng, schedule)  # The state is donated.
    return jax.block_until_ready(metrics) if block else metrics

  tic = time.perf_counter()
  metrics = run()
  inputs, targets = lengths_for(arch, tokens)
  info = {
    "arch": arch,
    "size": size,
    "batch": batch,
    "tokens_per_row": tokens,
    "remat": model.config.remat_policy,
    "dtype": model.config.dtype,
    "kernels_out_first": model.config.kernels_out_first,
    "params": flops.count_params(model.abstract_params()).total,
    "compile_and_first_step_s": time.perf_counter() - tic,
    "model_flops_per_step": batch * flops.training_flops(model.config, arch, inputs, targets),
    "loss": float(metrics["loss"]),
  }
  return info, run


def dispatch_bench(arch: str, steps: int = 20) -> dict[str, float]:
  """Host seconds to dispatch `steps` tiny train steps back to back, against their run time."""
  batch, tokens = TRAIN_SHAPES["tiny"]
  _, run = train_setup(arch, "tiny", batch, tokens)
  tic = time.perf_counter()
  for _ in range(steps):
    metrics = run(block=False)
  dispatched = time.perf_counter() - tic
  jax.block_until_ready(metrics)
  total = time.perf_counter() - tic
  return {
    "steps": steps,
    "dispatch_s_per_step": dispatched / steps,
    "step_s": total / steps,
    "dispatch_over_step": dispatched / total,
  }


def train_compare(
  size: str, batch: int, tokens: int, ceiling: float, repeats: int, remat: str = "none"
) -> dict[str, Any]:
  """Both architectures' steps, timed alternately, each right after a ceiling measurement.

  `mfu` uses the run's ceiling; `mfu_local_*` use the ceiling measured just before
  that step, which cancels most of a shared machine's load changes.
  """
  setups = {arch: train_setup(arch, size, batch, tokens, remat) for arch in ARCHS}
  samples = {arch: [] for arch in ARCHS}
  for _ in range(repeats):
    for arch, (_, run) in setups.items():
      local = quick_ceiling()
      tic = time.perf_counter()
      run()
      samples[arch].append((time.perf_counter() - tic, local))
  out = {}
  for arch, (info, _) in setups.items():
    times = [t for t, _ in samples[arch]]
    local = [info["model_flops_per_step"] / t / c for t, c in samples[arch]]
    best = min(times)
    out[arch] = {
      **info,
      "best_s": best,
      "median_s": statistics.median(times),
      "tokens_per_s": batch * tokens / best,
      "model_flops_per_s": info["model_flops_per_step"] / best,
      "mfu": info["model_flops_per_step"] / best / ceiling,
      "mfu_local_best": max(local),
      "mfu_local_median": statistics.median(local),
      "local_ceilings": [c for _, c in samples[arch]],
    }
  return out


def train_section(
  sizes: Sequence[str],
  ceiling: float,
  repeats: int,
  remat: str,
  train_batch: int,
  train_length: int,
  log: Callable[[str], None],
) -> dict[str, Any]:
  """The train section's figures, `{arch}_{size}`: both architectures at each size."""
  out = {}
  for size in sizes:
    batch, tokens = TRAIN_SHAPES.get(size, (train_batch, train_length))
    for arch, r in train_compare(size, batch, tokens, ceiling, repeats, remat).items():
      out[f"{arch}_{size}"] = r
      log(
        f"train {arch:7s} {size:5s} {batch}x{tokens}: {r['best_s'] * 1e3:8.1f} ms/step "
        f"(median {r['median_s'] * 1e3:.1f})  {r['tokens_per_s']:9.0f} tok/s  "
        f"MFU {r['mfu']:.1%} (vs the ceiling just before each step: best "
        f"{r['mfu_local_best']:.1%}, median {r['mfu_local_median']:.1%})"
      )
  return out


def dispatch_section(log: Callable[[str], None]) -> dict[str, Any]:
  """The dispatch section's figures: each architecture's tiny steps dispatched back to back."""
  out = {arch: dispatch_bench(arch) for arch in ARCHS}
  for arch, r in out.items():
    log(
      f"dispatch {arch:7s} tiny: {r['dispatch_s_per_step'] * 1e3:.2f} ms to dispatch a step "
      f"that takes {r['step_s'] * 1e3:.1f} ms ({r['dispatch_over_step']:.1%})"
    )
  return out
