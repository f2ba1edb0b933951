"""The study section: the train step at the study's shapes, the custom backward against
JAX autodiff's (`autodiff_reference`), timed alternately."""

import statistics
import time
from typing import Any, Callable, Sequence

from redllm_jax import errors
from redllm_jax.tools import autodiff_reference
from redllm_jax.tools.bench_ceiling import quick_ceiling
from redllm_jax.tools.bench_common import ARCHS
from redllm_jax.tools.bench_train import train_setup

STUDY_OPTIONS = ("scan", "in_first")  # Scanned layers; kernels [in, out] (the study gins').


def parse_study_shape(shape: str) -> tuple[str, str, int, int, list[str]]:
  """(arch, size, rows, tokens per row, gin bindings) of "arch/size/RxT/vocab[/option...]"."""
  try:
    arch, size, rows_tokens, vocab, *options = shape.split("/")
    rows, tokens = map(int, rows_tokens.split("x"))
    if arch not in ARCHS or not set(options) <= set(STUDY_OPTIONS):
      raise ValueError
  except ValueError:
    raise errors.ConfigError(
      f"bad --study_shapes entry {shape!r}: want arch/size/ROWSxTOKENS/vocab[/option...], "
      f"arch in {ARCHS}, options in {STUDY_OPTIONS}"
    ) from None
  bindings = [
    f"config.TransformerConfig.vocab_size = {int(vocab)}",
    f"config.TransformerConfig.scan_layers = {'scan' in options}",
  ]
  if "in_first" in options:
    bindings.append("config.TransformerConfig.kernels_out_first = False")
  return arch, size, rows, tokens, bindings


def study_compare(shape: str, repeats: int) -> dict[str, Any]:
  """One study shape's train step, custom backward vs autodiff's, timed alternately."""
  arch, size, batch, tokens, bindings = parse_study_shape(shape)
  with autodiff_reference.autodiff_step():  # Traced (and compiled) inside the context.
    autodiff = train_setup(arch, size, batch, tokens, bindings=bindings)
  setups = {
    "custom": train_setup(arch, size, batch, tokens, bindings=bindings),
    "autodiff": autodiff,
  }
  samples = {name: [] for name in setups}
  for _ in range(repeats):
    for name, (_, run) in setups.items():
      local = quick_ceiling()
      tic = time.perf_counter()
      run()
      samples[name].append((time.perf_counter() - tic, local))
  out = {"shape": shape}
  for name, (info, _) in setups.items():
    times = [t for t, _ in samples[name]]
    flops_per_step = info["model_flops_per_step"]
    out[name] = {
      **info,
      "best_s": min(times),
      "median_s": statistics.median(times),
      "tokens_per_s": batch * tokens / statistics.median(times),
      "model_flops_per_s": flops_per_step / statistics.median(times),
      "mfu_local_median": statistics.median(flops_per_step / t / c for t, c in samples[name]),
      "local_ceilings": [c for _, c in samples[name]],
    }
  out["speedup_median"] = out["autodiff"]["median_s"] / out["custom"]["median_s"]
  out["speedup_best"] = out["autodiff"]["best_s"] / out["custom"]["best_s"]
  out["loss_equal"] = out["autodiff"]["loss"] == out["custom"]["loss"]
  return out


def study_section(
  study_shapes: Sequence[str], repeats: int, log: Callable[[str], None]
) -> dict[str, Any]:
  """The study section's figures, one entry per shape."""
  for shape in study_shapes:
    parse_study_shape(shape)  # Every entry checked before the first compile.
  out = {shape: study_compare(shape, repeats) for shape in study_shapes}
  for shape, r in out.items():
    for name in ("custom", "autodiff"):
      t = r[name]
      log(
        f"study {shape:28s} {name:8s}: {t['median_s'] * 1e3:7.1f} ms/step (best "
        f"{t['best_s'] * 1e3:.1f})  {t['tokens_per_s']:7.0f} tok/s  "
        f"{t['model_flops_per_s'] / 1e9:5.1f} GFLOP/s = {t['mfu_local_median']:.1%} "
        f"of the ceiling"
      )
    log(
      f"study {shape:28s} custom backward: {r['speedup_median']:.2f}x at the median "
      f"({r['speedup_best']:.2f}x best), same first loss: {r['loss_equal']}"
    )
  return out
