"""Resumable, deterministic, per-process input on the real demo corpus."""

import collections

import numpy as np
import pytest
import seqio

from redllm_jax.data import feature_converters
from redllm_jax.data import input_pipeline

ONE = seqio.ShardInfo(index=0, num_shards=1)


@pytest.fixture(scope="module")
def tasks(demo_root: str) -> None:
  import redllm_jax_tasks  # noqa: F401


# The mixture exercises checkpointing through seqio's sampling; a single task is faster.
SOURCES = {
  "dec": {"pretrain": ("demo_redpajama", {"targets": 128})},
  "red": {
    "pretrain": ("demo_redpajama_book", {"targets": 128}),
    "finetune": ("demo_flan", {"inputs": 32, "targets": 16}),
  },
}


def _iterator(arch: str, stage: str, seed: int = 7) -> input_pipeline.InputIterator:
  name, lengths = SOURCES[arch][stage]
  return input_pipeline.make_input_iterator(
    name,
    lengths,
    feature_converters.make_feature_converter(arch, stage),
    batch_size=4,
    seed=seed,
    shard_info=ONE,
  )


def _same(a: list[dict], b: list[dict]) -> bool:
  return len(a) == len(b) and all(
    x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x) for x, y in zip(a, b)
  )


@pytest.mark.parametrize(
  "arch,stage", [("dec", "pretrain"), ("red", "pretrain"), ("red", "finetune")]
)
def test_restore_gives_the_uninterrupted_batches(tasks, tmp_path, arch: str, stage: str) -> None:
  uninterrupted = _iterator(arch, stage)
  expected = [next(uninterrupted) for _ in range(8)]
  first = _iterator(arch, stage)
  for _ in range(5):
    next(first)
  first.save(str(tmp_path / "input-0"))
  resumed = _iterator(arch, stage)  # a fresh process would build the same pipeline
  resumed.restore(str(tmp_path / "input-0"))
  assert resumed.batches_read == 5
  assert _same([next(resumed) for _ in range(3)], expected[5:])
  assert _same([next(first) for _ in range(3)], expected[5:])  # saving does not disturb the stream


def test_order_is_a_function_of_the_seed(tasks) -> None:
  a, b, c = (_iterator("red", "pretrain", seed) for seed in (1, 1, 2))
  first_a = [next(a) for _ in range(3)]
  assert _same(first_a, [next(b) for _ in range(3)])
  assert not _same(first_a, [next(c) for _ in range(3)])


def _flan_pairs(shard_info: seqio.ShardInfo) -> collections.Counter:
  it = input_pipeline.make_input_iterator(
    "demo_flan",
    {"inputs": 32, "targets": 16},
    feature_converters.make_feature_converter("red", "finetune", pack=False),
    batch_size=1,
    seed=0,
    shard_info=shard_info,
    shuffle=False,
    num_epochs=1,
  )
  return collections.Counter(
    (b["encoder_input_tokens"][0].tobytes(), b["decoder_target_tokens"][0].tobytes()) for b in it
  )


def test_two_processes_read_disjoint_shards_whose_union_is_the_whole(tasks) -> None:
  whole = _flan_pairs(ONE)
  shards = [_flan_pairs(seqio.ShardInfo(index=i, num_shards=2)) for i in range(2)]
  assert sum(whole.values()) > 2000 and all(sum(s.values()) > 500 for s in shards)
  # Multiset equality: every example is read by exactly one of the processes.
  assert shards[0] + shards[1] == whole


def test_pretraining_shards_split_the_tokens(tasks) -> None:
  task = seqio.get_mixture_or_task("demo_redpajama_book")  # 4 files: sharded by file

  def tokens(shard_info: seqio.ShardInfo) -> collections.Counter:
    ds = task.get_dataset({"targets": 64}, split="train", shuffle=False, shard_info=shard_info)
    return collections.Counter(
      np.concatenate([ex["targets"] for ex in ds.as_numpy_iterator()]).tolist()
    )

  halves = [tokens(seqio.ShardInfo(index=i, num_shards=2)) for i in range(2)]
  assert halves[0] and halves[1] and halves[0] + halves[1] == tokens(ONE)
