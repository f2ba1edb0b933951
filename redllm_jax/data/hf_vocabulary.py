"""A seqio.Vocabulary over a Hugging Face `tokenizers` file (tokenizer.json).

What an imported checkpoint (`redllm_jax.hf.import_checkpoint`) records instead of a
SentencePiece model: its ids are the checkpoint's own, not T5's. Text is encoded
without special tokens (seqio adds EOS where a feature asks for it) and decoded
with the special tokens dropped, as SentencePiece drops its control pieces.
`vocabulary.from_file` picks this class for a `.json` file.
"""

import functools
import os
from typing import Callable, Optional, Sequence

import numpy as np
import seqio
import tensorflow as tf


def check_tokenizer_file(path: str) -> None:
  """One-line errors for a missing file or one `tokenizers` cannot read."""
  _load(path)


@functools.lru_cache(maxsize=8)
def _load(path: str):
  """The `tokenizers.Tokenizer` in `path` (imported here: the package is the `hf` extra's)."""
  try:
    import tokenizers  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise ValueError(
      f"{path}: reading a tokenizer.json needs the `hf` extra (tokenizers)"
    ) from None
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"Vocabulary file not found: {path}")
  with tf.io.gfile.GFile(path, "r") as f:
    text = f.read()
  try:
    return tokenizers.Tokenizer.from_str(text)
  except Exception as e:  # pylint: disable=broad-except  # tokenizers raises Exception
    raise ValueError(
      f"Not a Hugging Face tokenizer.json: {path} ({str(e).splitlines()[0][:120]})"
    ) from None


# Where `hf.import_checkpoint` writes the tokenizer.json under its --model_dir.
IMPORTED_TOKENIZER = os.path.join("vocabulary", "tokenizer.json")


class HfTokenizerVocabulary(seqio.Vocabulary):
  """tokenizer.json as a seqio vocabulary; `eos_id` is the id that ends a sequence
  (the checkpoint's), None if nothing does. Either may be a function, resolved at
  first use (tasks are registered before gin is parsed)."""

  def __init__(
    self, path: str | Callable[[], str], eos_id: Optional[int] | Callable[[], Optional[int]] = None
  ):
    self._path = path
    self._eos_id = eos_id
    super().__init__(extra_ids=0)

  @property
  def vocabulary_file(self) -> str:
    return self._path() if callable(self._path) else self._path

  @property
  def tokenizer(self):
    return _load(self.vocabulary_file)

  @property
  def eos_id(self) -> Optional[int]:
    return self._eos_id() if callable(self._eos_id) else self._eos_id

  @property
  def unk_id(self) -> Optional[int]:
    unk = getattr(self.tokenizer.model, "unk_token", None)
    return None if unk is None else self.tokenizer.token_to_id(unk)

  @property
  def _base_vocab_size(self) -> int:
    return self.tokenizer.get_vocab_size(with_added_tokens=True)

  def _encode(self, s: str) -> Sequence[int]:
    return self.tokenizer.encode(s, add_special_tokens=False).ids

  def _decode(self, ids) -> str:
    return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

  def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
    """A scalar string as int32 ids [n] (seqio's `tokenize` calls it per feature)."""
    # Eagerly a numpy scalar, in a tf.data graph plain bytes.
    encode = lambda text: np.asarray(
      self._encode(np.asarray(text).item().decode("utf-8")), np.int32
    )
    ids = tf.numpy_function(encode, [tf.convert_to_tensor(s, tf.string)], tf.int32, stateful=False)
    ids.set_shape([None])
    return ids

  def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
    """ids [n] -> a scalar string, [b, n] -> [b] strings."""

    def decode(array):
      texts = [self._decode(row).encode("utf-8") for row in array.reshape(-1, array.shape[-1])]
      return np.array(texts if array.ndim > 1 else texts[0], dtype=object)

    ids = tf.convert_to_tensor(ids, tf.int32)
    text = tf.numpy_function(decode, [ids], tf.string, stateful=False)
    text.set_shape(ids.shape[:-1])
    return text

  def __eq__(self, other) -> bool:
    return (
      isinstance(other, HfTokenizerVocabulary)
      and self.vocabulary_file == other.vocabulary_file
      and self.eos_id == other.eos_id
    )

  def __hash__(self) -> int:
    return id(self)
