"""seqio data source over converted TFRecord shards, with lazily resolved paths."""

import os
from typing import Callable, Iterator, Mapping, Sequence

import seqio
import tensorflow as tf

from redllm_jax.data import json_source


class _LazyPatterns(Mapping[str, str]):
  """split -> "{dir_fn()}/{split}/*.tfrecord", evaluated on each lookup."""

  def __init__(self, dir_fn: Callable[[], str], splits: Sequence[str]):
    self._dir_fn = dir_fn
    self._splits = tuple(splits)

  def __getitem__(self, split: str) -> str:
    if split not in self._splits:
      raise KeyError(split)
    return os.path.join(self._dir_fn(), split, "*.tfrecord")

  def __iter__(self) -> Iterator[str]:
    return iter(self._splits)

  def __len__(self) -> int:
    return len(self._splits)

  def __repr__(self) -> str:
    return f"<{{data root}}/.../{{split}}/*.tfrecord for {self._splits}>"


class TFRecordTextSource(seqio.TFExampleDataSource):
  """Reads string `fields` of TFRecords written by `redllm_jax.data.prepare`.

  `dir_fn` is called at read time, so registering a task needs neither the data
  nor the final gin config. Files shard across hosts (one file per input shard).
  """

  def __init__(
    self,
    dir_fn: Callable[[], str],
    fields: Sequence[str],
    splits: Sequence[str] = ("train", "validation"),
  ):
    super().__init__(
      split_to_filepattern=_LazyPatterns(dir_fn, splits),
      feature_description={f: tf.io.FixedLenFeature([], tf.string) for f in fields},
    )

  def list_shards(self, split: str) -> Sequence[str]:
    """The split's files; one-line errors (naming the path) for none or all empty."""
    pattern = self._split_to_filepattern[split]
    files = json_source.list_files(pattern)
    # `prepare` never writes a file without records, but guard hand-made data.
    if not any(tf.io.gfile.stat(f).length for f in files):
      raise ValueError(f"Zero valid examples in {pattern}")
    return files
