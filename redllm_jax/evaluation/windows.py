"""Evaluation text: windows of real token streams, and padded widths that few shapes share.

Length extrapolation and the attention analysis read the same windows: a task's
documents, longest first, tokenized and concatenated (EOS between documents).
"""

from typing import Any, Sequence

import numpy as np
import seqio

from redllm_jax.functional import EOS_ID
from redllm_jax.errors import ConfigError


def token_windows(
  texts: Sequence[str], encode, length: int, max_windows: int, longest_first: bool = True
) -> np.ndarray:
  """[n, length] windows of the concatenated (EOS-separated) token stream."""
  docs = [list(encode(t)) + [EOS_ID] for t in texts]
  if longest_first:
    docs.sort(key=len, reverse=True)
  stream: list[int] = []
  for doc in docs:
    stream.extend(doc)
    if len(stream) >= length * max_windows:
      break
  n = min(max_windows, len(stream) // length)
  if n == 0:
    raise ConfigError(f"only {len(stream)} tokens of text: need {length} for one window")
  return np.asarray(stream[: n * length], np.int32).reshape(n, length)


def task_texts(task_name: str, split: str = "validation") -> tuple[list[str], Any]:
  """Raw texts of a seqio task or mixture's split and its `targets` vocabulary."""
  provider = seqio.get_mixture_or_task(task_name)
  tasks = provider.tasks if isinstance(provider, seqio.Mixture) else [provider]
  texts = []
  for task in tasks:
    for ex in task.source.get_dataset(split=split, shuffle=False).as_numpy_iterator():
      texts.append(ex["text"].decode("utf-8"))
  return texts, tasks[0].output_features["targets"].vocabulary


def bucket_size(n: int, minimum: int = 8) -> int:
  """The next power of two >= n (>= minimum): few distinct shapes, few compiles."""
  size = minimum
  while size < n:
    size *= 2
  return size
