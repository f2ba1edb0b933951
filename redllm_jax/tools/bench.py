r"""Benchmark suite: matmul ceiling, train-step MFU, decoding, input pipeline.

  python -m redllm_jax.tools.bench                      # everything (~10 min on 2 CPU cores)
  python -m redllm_jax.tools.bench --sections=ceiling,train --sizes=tiny   # quick
  python -m redllm_jax.tools.bench --out=bench.json --compare=old.json

Every figure is measured in one process, side by side, and written to one JSON
(`--out`); `--compare` prints each figure's ratio against an earlier JSON.

- ceiling: the best f32 (CPU) / bf16 (accelerator) matmul FLOP/s over a few
  shapes, including the 150M FFN shape. It is the MFU denominator.
- train: the real train step (`trainer.compile_steps`, 1-device Partitioner,
  Adafactor + global-norm clipping, scanned layers; on CPU kernels stored
  [out, in], `kernels_out_first`) at the tiny gin config and at
  the 150M shape, batch 4 x 512 tokens (RedLLM 256 + 256). MFU = model FLOPs
  from `flops.training_flops` (no remat credit) / step time / ceiling.
- decode: cached decoding (`predict_batch`) tokens/s for both architectures at
  prompt:generation 1:1 with the Red/Dec ratio; and uncached decoding (the full
  forward recomputed for every generated token) to show the caches' effect.
- input: the demo input pipeline's tokens/s against the train step's consumption.
- peers: the same greedy decoding (shapes, batch, f32, lengths) and the same
  train step shape in Hugging Face transformers on PyTorch (`bench_peers`: Llama
  for DecLLM, T5Gemma for RedLLM; Adafactor), timed in alternation with ours; plus
  the memory bandwidth and XLA's matrix-vector read rate, and our decode step
  (the run less its prefill, per token) against both bounds (the bytes of the
  weights a step reads over each rate). Skipped, saying why, without the `peers`
  extra.
- study: the train step at the study's shapes (`--study_shapes`: tiny widths,
  V 1024 / 4096; unrolled layers unless a shape says `scan`) against the same step
  with JAX autodiff's backward for the loss and the dense layers
  (`tools/autodiff_reference.py`), timed alternately, each right after a
  ceiling measurement: step time, tokens/s, model FLOP/s over that ceiling, and
  the speedup of the custom backward (docs/perf_notes.md).
- dispatch: whether train steps pipeline. N steps of the tiny config dispatched
  back to back, the way the loop runs them now that metrics are read back only
  when logged or saved: host seconds per dispatch against seconds per step. A
  ratio well under 1 means the host is never waiting on the device between steps.
"""

import json
import math
import os
import platform
import time
from typing import Any, Callable, Sequence

from absl import flags
import jax

from redllm_jax import gin_utils
from redllm_jax.tools import (
  bench_ceiling,
  bench_decode,
  bench_input,
  bench_peers,
  bench_study,
  bench_train,
)

SECTIONS = ("ceiling", "train", "study", "decode", "peers", "input", "dispatch")

_SECTIONS = flags.DEFINE_list("sections", list(SECTIONS), f"Any of {SECTIONS}.")
_SIZES = flags.DEFINE_list("sizes", ["tiny", "150m"], "Model sizes for train and decode.")
_OUT = flags.DEFINE_string("out", "bench.json", "Where the JSON of all figures goes.")
_COMPARE = flags.DEFINE_string("compare", None, "An earlier JSON: print ratios new/old.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repetitions (best and median kept).")
_REMAT = flags.DEFINE_string(
  "remat", "none", "Remat policy for the train section ('gin' keeps the model gin's)."
)
_TRAIN_BATCH = flags.DEFINE_integer("train_batch", 4, "150M train batch (rows).")
_TRAIN_LENGTH = flags.DEFINE_integer("train_length", 512, "150M tokens per row.")
_DECODE_LENGTH = flags.DEFINE_integer("decode_length", 128, "Prompt and generation length.")
_DECODE_BATCH = flags.DEFINE_integer("decode_batch", 4, "Decode batch.")
_STUDY_SHAPES = flags.DEFINE_list(
  "study_shapes",
  [
    "decllm/mini_s/32x256/4096",
    "redllm/mini_s/32x256/4096",
    "decllm/micro_s/64x128/1024",
    "redllm/micro_s/64x128/1024",
  ],
  f"Study section: arch/size/ROWSxTOKENS/vocab[/option...], options {bench_study.STUDY_OPTIONS} "
  "(scanned layers; kernels stored [in, out] as the study gins do, not [out, in]).",
)
_UNCACHED = flags.DEFINE_bool("uncached", True, "Also time uncached decoding.")


def machine() -> dict[str, Any]:
  try:
    load = os.getloadavg()
  except OSError:
    load = (float("nan"),) * 3
  cpu = platform.processor()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return {
    "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    "host": platform.node(),
    "cpu": cpu,
    "cores": os.cpu_count(),
    "backend": jax.default_backend(),
    "devices": jax.device_count(),
    "jax": jax.__version__,
    "loadavg": list(load),
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }


def run(
  sections: Sequence[str],
  sizes: Sequence[str],
  repeats: int = 3,
  remat: str = "none",
  train_batch: int = 4,
  train_length: int = 512,
  decode_batch: int = 4,
  decode_length: int = 128,
  uncached: bool = True,
  study_shapes: Sequence[str] = (),
  log: Callable[[str], None] = print,
) -> dict[str, Any]:
  """All requested figures as one JSON-able dict (see the module docstring)."""
  unknown = set(sections) - set(SECTIONS)
  if unknown:
    raise ValueError(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
  out: dict[str, Any] = {"machine": machine()}
  ceiling = None
  if "ceiling" in sections or "train" in sections:
    out["ceiling"] = bench_ceiling.matmul_ceiling()
    ceiling = out["ceiling"]["flops_per_s"]
    log(f"matmul ceiling ({out['ceiling']['dtype']}): {ceiling / 1e9:.1f} GFLOP/s")
  if "train" in sections:
    out["train"] = bench_train.train_section(
      sizes, ceiling, repeats, remat, train_batch, train_length, log
    )
    # Re-measure the ceiling after the train section: the load on a shared machine drifts.
    after = bench_ceiling.matmul_ceiling()
    out["ceiling"]["after_train_flops_per_s"] = after["flops_per_s"]
    log(f"matmul ceiling after train: {after['flops_per_s'] / 1e9:.1f} GFLOP/s")
  if "study" in sections:
    out["study"] = bench_study.study_section(study_shapes, repeats, log)
  if "decode" in sections:
    out["decode"] = bench_decode.decode_section(
      sizes, decode_batch, decode_length, repeats, uncached, log
    )
  if "peers" in sections:
    out["peers"] = bench_peers.peers_section(
      sizes, decode_batch, decode_length, train_batch, train_length, repeats, log
    )
  if "dispatch" in sections:
    out["dispatch"] = bench_train.dispatch_section(log)
  if "input" in sections:
    out["input"] = bench_input.input_section(out.get("train", {}), log)
  out["machine"]["loadavg_end"] = list(os.getloadavg())
  return out


def flatten(d: Any, prefix: str = "") -> dict[str, float]:
  """Numeric leaves as {"a.b.c": value}."""
  items = {}
  if isinstance(d, dict):
    for k, v in d.items():
      items.update(flatten(v, f"{prefix}{k}."))
  elif isinstance(d, (int, float)) and not isinstance(d, bool):
    items[prefix[:-1]] = float(d)
  return items


def compare(new: dict, old: dict) -> list[str]:
  """Lines `key: new / old = ratio` for the figures both runs have."""
  a, b = flatten(new), flatten(old)
  lines = []
  for key in sorted(set(a) & set(b)):
    if key.startswith("machine.") or not b[key] or not math.isfinite(b[key]):
      continue
    lines.append(f"{key:60s} {a[key]:14.4g} / {b[key]:14.4g} = {a[key] / b[key]:6.3f}")
  return lines


def main() -> None:
  result = run(
    _SECTIONS.value,
    _SIZES.value,
    _REPEATS.value,
    _REMAT.value,
    _TRAIN_BATCH.value,
    _TRAIN_LENGTH.value,
    _DECODE_BATCH.value,
    _DECODE_LENGTH.value,
    _UNCACHED.value,
    _STUDY_SHAPES.value,
  )
  with open(_OUT.value, "w") as f:
    json.dump(result, f, indent=1, sort_keys=True)
  print(f"wrote {_OUT.value}")
  if _COMPARE.value:
    with open(_COMPARE.value) as f:
      print("\n".join(compare(result, json.load(f))))


if __name__ == "__main__":
  gin_utils.run_flags(main)
