r"""Prints the pretraining input pipeline's throughput on this machine.

  python -m redllm_jax.tools.bench_input [--task=demo_redpajama] [--batch_size=16]

Times `--steps` batches after `--warmup` batches (graph tracing, shuffle
buffer fill) for DecLLM {"targets": 256} and RedLLM 128/128 features, from
TFRecords through tokenization, chunking, shuffling, feature conversion and
batching to numpy. Tokens = batch rows x 256 chunk tokens (encoder + decoder
tokens for RedLLM; padding is rare since chunks are full length).
"""
import time

from absl import flags
import seqio

import redllm_jax_tasks  # noqa: F401  pylint: disable=unused-import  # registers the demo tasks
from redllm_jax import gin_utils
from redllm_jax.data import feature_converters
from redllm_jax.data import input_pipeline

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
