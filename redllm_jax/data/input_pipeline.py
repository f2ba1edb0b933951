"""The trainer's input: host-local numpy batches with a saveable position.

  it = make_input_iterator("redpajama_v1", {"targets": 2048},
                           make_feature_converter("red", "pretrain"),
                           batch_size=per_process_batch, seed=0)
  batch = next(it)                   # dict of np.int32 [batch_size, length]
  it.save(f"{ckpt_dir}/input-{jax.process_index()}")     # with the model checkpoint
  it.restore(f"{ckpt_dir}/input-{jax.process_index()}")  # exact same next batches

Each process reads only its own shard (files when there are at least as many
as processes, else examples). The stream is deterministic given the seed, and
the position is a tf.data iterator checkpoint (as T5X does), so restoring costs
no replay.
"""

from collections.abc import Iterator, Sequence
import difflib
import itertools
import json
from typing import Mapping, Optional

import jax
from jax.experimental import multihost_utils
import numpy as np
import seqio
import tensorflow as tf

from redllm_jax.data import hf_vocabulary
from redllm_jax.data import sources
from redllm_jax.data import vocabulary
from redllm_jax.errors import ConfigError

Batch = dict[str, np.ndarray]


class InputIterator(Iterator[Batch]):
  """Iterates numpy batches of a tf.data pipeline; `save`/`restore` its position."""

  def __init__(self, dataset: tf.data.Dataset):
    self._iterator = iter(dataset)
    self._checkpoint = tf.train.Checkpoint(iterator=self._iterator)
    self.batches_read = 0
    self.element_spec = dataset.element_spec

  def __next__(self) -> Batch:
    batch = {k: v.numpy() for k, v in next(self._iterator).items()}
    self.batches_read += 1
    return batch

  def empty_batch(self) -> Batch:
    """A batch of all-zero rows (padding: no tokens, no loss weight)."""
    return {
      k: np.zeros(spec.shape, spec.dtype.as_numpy_dtype) for k, spec in self.element_spec.items()
    }

  def save(self, prefix: str) -> None:
    """Writes the position to `prefix`* (local or gs://) plus a readable {prefix}.json."""
    self._checkpoint.write(prefix)
    with tf.io.gfile.GFile(prefix + ".json", "w") as f:
      json.dump({"batches_read": self.batches_read}, f)

  def restore(self, prefix: str) -> None:
    """Continues exactly where the iterator that wrote `prefix` stopped."""
    self._checkpoint.read(prefix).assert_consumed()
    with tf.io.gfile.GFile(prefix + ".json") as f:
      self.batches_read = json.load(f)["batches_read"]

  def close(self) -> None:
    """Stops the pipeline's threads now, not whenever Python frees this object."""
    del self._checkpoint
    del self._iterator


def check_tasks(names: Sequence[str], model_vocab_size: Optional[int] = None) -> None:
  """One-line errors, before any work, for a name that no seqio task or mixture has
  (with the nearest one), for a missing or broken SentencePiece vocabulary, and for a
  vocabulary with more ids than the model's embedding (those ids would embed nothing)."""
  known = sorted({*seqio.TaskRegistry.names(), *seqio.MixtureRegistry.names()})
  for name in names:
    if name not in known:
      close = difflib.get_close_matches(name, known, n=1)
      hint = f" (did you mean {close[0]}?)" if close else f"; registered: {', '.join(known)}"
      raise ConfigError(f"unknown seqio task or mixture {name!r}{hint}")
    for feature in seqio.get_mixture_or_task(name).output_features.values():
      try:  # The path itself may be unresolvable (no data root): also one line.
        vocab_file = _file_of(feature.vocabulary)
        if vocab_file is not None:
          vocabulary.check_vocabulary_file(vocab_file)
      except (OSError, ValueError) as e:
        # Gin appends "In call to configurable ..." lines to errors raised in configurables.
        raise ConfigError(f"{name}: {str(e).splitlines()[0]}") from None
      if model_vocab_size is not None and feature.vocabulary.vocab_size > model_vocab_size:
        raise ConfigError(
          f"{name}: its vocabulary has {feature.vocabulary.vocab_size} ids, "
          f"more than the model's VOCAB_SIZE {model_vocab_size}"
        )


def _file_of(vocab: seqio.Vocabulary) -> str | None:
  """A SentencePiece vocabulary's model file, a Hugging Face one's tokenizer.json."""
  if isinstance(vocab, (seqio.SentencePieceVocabulary, hf_vocabulary.HfTokenizerVocabulary)):
    return vocabulary.vocabulary_file(vocab)
  return None


def vocabulary_file(name: str) -> str | None:
  """The SentencePiece file (or Hugging Face tokenizer.json) a task or mixture tokenizes
  with (None if it has none).

  A task whose features use different SentencePiece files is a one-line error:
  a checkpoint records one vocabulary.
  """
  files = {
    _file_of(feature.vocabulary)
    for feature in seqio.get_mixture_or_task(name).output_features.values()
    if _file_of(feature.vocabulary) is not None
  }
  if len(files) > 1:
    raise ConfigError(
      f"{name}: its features use different vocabularies ({', '.join(sorted(files))})"
    )
  return files.pop() if files else None


def check_one_vocabulary(names: Sequence[str]) -> None:
  """A one-line error when the tasks tokenize with different SentencePiece models (by
  content): a run's eval perplexities mean nothing in another vocabulary."""
  digests = {}
  for name in names:
    path = vocabulary_file(name)
    if path:
      digests.setdefault(vocabulary.file_sha256(path), (name, path))
  if len(digests) > 1:
    (a, a_path), (b, b_path) = list(digests.values())[:2]
    raise ConfigError(
      f"{a} and {b} use different vocabularies ({a_path} and {b_path}); "
      "train and eval tasks must share one"
    )


def recorded_documents(name: str, split: str) -> int | None:
  """The documents in a split of a task or mixture, as its datasets' info records them;
  None when some task's source is not a built dataset or lacks the split."""
  provider = seqio.get_mixture_or_task(name)
  total = 0
  for task in provider.tasks if isinstance(provider, seqio.Mixture) else [provider]:
    if not isinstance(task.source, sources.TfdsTextSource):
      return None
    try:
      total += task.source.documents(split)
    except (KeyError, OSError, ValueError):
      return None  # Not built, or no such split.
  return total


def default_shard_info() -> seqio.ShardInfo:
  return seqio.ShardInfo(index=jax.process_index(), num_shards=jax.process_count())


def make_input_iterator(
  mixture_or_task_name: str,
  task_feature_lengths: Mapping[str, int],
  feature_converter: seqio.FeatureConverter,
  batch_size: int,
  seed: int,
  shard_info: seqio.ShardInfo | None = None,
  split: str = "train",
  shuffle: bool = True,
  num_epochs: int | None = None,
) -> InputIterator:
  """Host-local batches of `batch_size` (per process), repeating forever by default.

  shard_info defaults to this process's (jax.process_index/process_count).
  For evaluation pass split="validation", shuffle=False, num_epochs=1: such a
  finite pass keeps its last partial batch, padded with empty rows (all zeros: no
  loss weight), where seqio's batching would drop it.
  """
  finite = num_epochs is not None
  ds = seqio.get_dataset(
    mixture_or_task_name,
    task_feature_lengths=task_feature_lengths,
    feature_converter=feature_converter,
    dataset_split=split,
    shuffle=shuffle,
    num_epochs=num_epochs,
    shard_info=shard_info or default_shard_info(),
    seed=seed,
    batch_size=None if finite else batch_size,
    verbose=False,
  )
  if finite:
    ds = ds.batch(batch_size).map(lambda batch: _pad_rows(batch, batch_size))
  options = tf.data.Options()
  options.deterministic = True  # parallel maps must not reorder: resume == no interruption
  # No autotuning model: freeing a pipeline waits for its optimizer thread, up to 58 s after
  # the study's runs on a busy core (tf 2.21); without it the stream is the same and as
  # fast (AUTOTUNE parallelism then means one thread per core, prefetch still adapts).
  options.autotune.enabled = False
  return InputIterator(ds.with_options(options).prefetch(tf.data.AUTOTUNE))


def _pad_rows(batch: Mapping[str, tf.Tensor], rows: int) -> dict[str, tf.Tensor]:
  def pad(x):
    padded = tf.pad(x, [[0, rows - tf.shape(x)[0]]] + [[0, 0]] * (len(x.shape) - 1))
    return tf.ensure_shape(padded, [rows, *x.shape[1:]])  # a static batch size

  return {k: pad(v) for k, v in batch.items()}


class ShardedInput(Iterator[Batch]):
  """This process's part of a global batch: its input shards' batches, concatenated.

  The data is cut into `num_shards` shards whatever the process count, and global
  batch row blocks follow shard order. So 1 process reading shards 0..n-1 sees the
  same global batches as n processes reading one shard each, and a saved position
  (one tf.data checkpoint per shard) restores under either layout.

  A finite pass ends when every shard of every process is exhausted; until then a
  shard that ran out contributes empty rows, so all processes take the same
  number of (collective) steps and no example is dropped or read twice. Only a
  finite pass asks the other processes: training's endless input never ends.
  """

  def __init__(self, iterators: Mapping[int, InputIterator], finite: bool = False):
    self._iterators = dict(sorted(iterators.items()))
    self._finite = finite

  def __next__(self) -> Batch:
    parts = {shard: next(it, None) for shard, it in self._iterators.items()}
    more = any(p is not None for p in parts.values())
    if not (_any_process(more) if self._finite else more):
      raise StopIteration
    parts = [
      p if p is not None else self._iterators[shard].empty_batch() for shard, p in parts.items()
    ]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

  def save(self, directory: str) -> None:
    for shard, it in self._iterators.items():
      it.save(f"{directory}/shard_{shard}")

  def restore(self, directory: str) -> None:
    for shard, it in self._iterators.items():
      it.restore(f"{directory}/shard_{shard}")

  def close(self) -> None:
    """Frees every shard's pipeline (`InputIterator.close`); the input is done."""
    for it in self._iterators.values():
      it.close()
    self._iterators = {}

  def first(self, count: Optional[int] = None) -> Iterator[Batch]:
    """The next `count` batches (every one, if None), then the input closed."""
    try:
      yield from itertools.islice(self, count)
    finally:
      self.close()


def _any_process(flag: bool) -> bool:
  if jax.process_count() == 1:
    return flag
  return bool(np.any(multihost_utils.process_allgather(np.array(flag))))


def make_sharded_input(
  mixture_or_task_name: str,
  task_feature_lengths: Mapping[str, int],
  feature_converter: seqio.FeatureConverter,
  global_batch_size: int,
  seed: int,
  num_shards: int,
  split: str = "train",
  shuffle: bool = True,
  num_epochs: int | None = None,
) -> ShardedInput:
  """The shards of this process (a contiguous block of `num_shards / process_count`)."""
  processes = jax.process_count()
  if num_shards % processes or global_batch_size % num_shards:
    raise ValueError(
      f"{num_shards} input shards must split evenly over {processes} processes "
      f"and divide the global batch {global_batch_size}"
    )
  per_process = num_shards // processes
  first = jax.process_index() * per_process
  return ShardedInput(
    {
      shard: make_input_iterator(
        mixture_or_task_name,
        task_feature_lengths,
        feature_converter,
        global_batch_size // num_shards,
        seed,
        seqio.ShardInfo(shard, num_shards),
        split,
        shuffle,
        num_epochs,
      )
      for shard in range(first, first + per_process)
    },
    finite=num_epochs is not None,
  )
