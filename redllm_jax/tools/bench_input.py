r"""Prints the pretraining input pipeline's throughput on this machine.

  python -m redllm_jax.tools.bench_input [--task=demo_redpajama] [--batch_size=16]

Times `--steps` batches after `--warmup` batches (graph tracing, shuffle
buffer fill) for DecLLM {"targets": 256} and RedLLM 128/128 features, from
TFRecords through tokenization, chunking, shuffling, feature conversion and
batching to numpy. Tokens = batch rows x 256 chunk tokens (encoder + decoder
tokens for RedLLM; padding is rare since chunks are full length).
`bench --sections=input` times it on the demo task beside the train step's consumption.
"""

import time
from typing import Any, Callable

from absl import flags
import seqio

import redllm_jax_tasks  # noqa: F401  pylint: disable=unused-import  # registers the demo tasks
from redllm_jax import gin_utils
from redllm_jax.demo import corpus as demo_corpus
from redllm_jax.data import feature_converters
from redllm_jax.data import input_pipeline
from redllm_jax.tools.bench_common import ARCHS

CHUNK = 256


def tokens_per_second(task: str, arch: str, batch_size: int, steps: int, warmup: int) -> float:
  """Task tokens per second delivered by the training iterator for `arch`."""
  it = input_pipeline.make_input_iterator(
    task,
    {"targets": CHUNK},
    feature_converters.make_feature_converter(arch, "pretrain"),
    batch_size=batch_size,
    seed=0,
    shard_info=seqio.ShardInfo(index=0, num_shards=1),
  )
  for _ in range(warmup):
    next(it)
  start = time.perf_counter()
  for _ in range(steps):
    next(it)
  return steps * batch_size * CHUNK / (time.perf_counter() - start)


def input_bench(batch: int = 16, steps: int = 100, warmup: int = 20) -> dict[str, Any]:
  """Demo pretraining input pipeline tokens/s for both architectures (256-token chunks)."""
  demo_corpus.build()
  return {
    arch: {
      "tokens_per_s": tokens_per_second("demo_redpajama", arch[:3], batch, steps, warmup),
      "batch": batch,
      "tokens_per_row": CHUNK,
    }
    for arch in ARCHS
  }


def input_section(train: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
  """The input section's figures, each over the consumption of the `train` section's rows."""
  out = input_bench()
  for arch in ARCHS:
    rate = out[arch]["tokens_per_s"]
    line = f"input {arch}: {rate:,.0f} tok/s"
    for key, r in train.items():
      if key.startswith(arch):
        out[arch][f"over_train_{key}"] = rate / r["tokens_per_s"]
        line += f"  ({rate / r['tokens_per_s']:.1f}x {key} training consumption)"
    log(line)
  return out


def main() -> None:
  f = flags.FLAGS
  for arch in ("dec", "red"):
    rate = tokens_per_second(f.task, arch, f.batch_size, f.steps, f.warmup)
    print(f"{f.task} {arch} pretrain batch={f.batch_size} chunk={CHUNK}: {rate:,.0f} tokens/s")


if __name__ == "__main__":
  flags.DEFINE_string("task", "demo_redpajama", "Pretraining task or mixture.")
  flags.DEFINE_integer("batch_size", 16, "Rows per batch.")
  flags.DEFINE_integer("steps", 300, "Timed batches.")
  flags.DEFINE_integer("warmup", 30, "Untimed batches first.")
  gin_utils.run_flags(main)
