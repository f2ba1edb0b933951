"""seqio data source over a built TFDS dataset (`redllm_jax/data/datasets`), with its
directory resolved when the data is first read."""

from typing import Callable, Optional, Sequence

import seqio
import tensorflow as tf
import tensorflow_datasets as tfds


class MissingDatasetError(FileNotFoundError):
  """A task's dataset is not built: one line naming its directory."""


class _LazyDirLoader(seqio.utils.LazyTfdsLoader):
  """Reads the dataset in `dir_fn()` ({data root}/{dataset}/{config}/{version}),
  evaluated at read time, so registering a task needs neither the data nor gin."""

  def __init__(self, dir_fn: Callable[[], str], splits: Sequence[str]):
    super().__init__(name=None, split_map={s: s for s in splits}, read_only=True)
    self._dir_fn = dir_fn

  @property
  def read_config(self) -> tfds.ReadConfig:
    # Shuffling files of a dataset stored in input order is what training asks for;
    # no in-memory cache, which a saved input position would have to hold.
    return tfds.ReadConfig(enable_ordering_guard=False, try_autocache=False)

  @property
  def data_dir(self) -> str:
    path = self._dir_fn()
    if not tf.io.gfile.exists(f"{path}/dataset_info.json"):
      raise MissingDatasetError(
        f"No TFDS dataset at {path}: build it first (docs/data.md, `tfds build`)"
      )
    return path


class TfdsTextSource(seqio.TfdsDataSource):
  """String fields of a dataset that one of the project's TFDS builders wrote.

  Reads through `tfds.builder_from_directory` (read only: nothing is downloaded or
  generated at read time). Hosts shard by the dataset's files where it has enough
  of them, else by examples (seqio's rule).
  """

  def __init__(self, dir_fn: Callable[[], str], splits: Sequence[str] = ("train", "validation")):
    super().__init__(splits=list(splits), read_only=True)
    self._tfds_dataset = _LazyDirLoader(dir_fn, splits)

  def num_input_examples(self, split: str) -> Optional[int]:
    # Unknown to seqio on purpose: a known small count makes seqio cache the split in
    # memory, and the training input's saved position would then hold the cache.
    del split
    return None

  def documents(self, split: str) -> int:
    """The split's examples, from the dataset's own info."""
    return self.tfds_dataset.size(split)
