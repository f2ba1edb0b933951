r"""SentencePiece vocabulary with T5 ids (pad 0, eos 1, unk 2, no BOS).

Train one on the train split of a registered task, or of raw JSON-lines / text files:
  python -m redllm_jax.data.vocabulary --task=redpajama_v1 \
      --out=$REDLLM_DATA_DIR/vocab/spm_32768.model --vocab_size=32768 --model_type=bpe
  python -m redllm_jax.data.vocabulary --files='/my/docs/*.md' --out=/my/spm.model --vocab_size=4096
Never the validation split: with --files, the records that the TFDS builders (and a
gin `files_task`) with the same --validation_fraction hold out are skipped.
Gin: `VOCABULARY = @get_vocabulary()`; its file is `vocab_path.path` (the demo's:
`demo_vocab_path.path`; your own: `get_vocabulary.path`), the very file the
registered tasks tokenize with.
"""

import collections
import functools
import hashlib
import io
import os
from typing import Callable, Iterable, Iterator, Optional, Sequence

from absl import flags, logging
from etils import epath
import gin
import jax
import seqio
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2
import tensorflow as tf

from redllm_jax import checkpoints, errors, gin_utils
from redllm_jax.data import files_task
from redllm_jax.data import hf_vocabulary
from redllm_jax.data import json_source
from redllm_jax.data import paths
from redllm_jax.data.datasets import text_builder
from redllm_jax.data import text_source
from redllm_jax.functional import EOS_ID, PAD_ID, UNK_ID

DEMO_VOCAB_SIZE = 4096
# The study's tiny widths: a 4096-piece tied embedding would outweigh the rest of the model.
DEMO1K_VOCAB_SIZE = 1024
DEMO_VOCAB_SIZES = (DEMO_VOCAB_SIZE, DEMO1K_VOCAB_SIZE)
DEFAULT_VOCAB_SIZE = 32768
# SentencePiece drops longer "sentences"; documents are fed line by line.
MAX_SENTENCE_BYTES = 8192


def check_sentencepiece_model(path: str) -> None:
  """One-line errors for a missing file, a non-SentencePiece file, or non-T5 ids."""
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"Vocabulary file not found: {path}")
  with tf.io.gfile.GFile(path, "rb") as f:
    data = f.read()
  try:
    model = sentencepiece_model_pb2.ModelProto.FromString(data)
  except Exception:  # protobuf raises DecodeError or others on garbage
    model = None
  if model is None or not model.pieces:
    raise ValueError(f"Not a SentencePiece model: {path}")
  ids = (model.trainer_spec.pad_id, model.trainer_spec.eos_id, model.trainer_spec.unk_id)
  if ids != (PAD_ID, EOS_ID, UNK_ID):
    raise ValueError(f"{path}: need T5 ids pad/eos/unk = 0/1/2, got {ids}")


class SpmVocabulary(seqio.SentencePieceVocabulary):
  """seqio.SentencePieceVocabulary whose path resolves (and is checked) at first use.

  Tasks are registered at import time, before gin or the data exist; a path
  function defers both the location and the error to the first tokenization.
  """

  def __init__(self, path: str | Callable[[], str]):
    self._path = path
    # Not tf_text's FastSentencepieceTokenizer: it gives wrong ids for BPE models.
    super().__init__("", use_fast_tokenizer=False)

  @property
  def sentencepiece_model_file(self) -> str:
    return self._path() if callable(self._path) else self._path

  def _model_context(self):
    if not self._model:
      self._sentencepiece_model_file = self.sentencepiece_model_file
      check_sentencepiece_model(self._sentencepiece_model_file)
    return super()._model_context()

  def __eq__(self, other) -> bool:
    return (
      isinstance(other, seqio.SentencePieceVocabulary)
      and self.sentencepiece_model_file == other.sentencepiece_model_file
    )

  def __hash__(self) -> int:
    return id(self)


@gin.configurable
def vocab_path(path: str | None = None) -> str:
  """Real-data vocabulary: gin `vocab_path.path`, else {data_dir}/vocab/spm_32768.model."""
  return path or os.path.join(paths.data_dir(), "vocab", f"spm_{DEFAULT_VOCAB_SIZE}.model")


def demo_vocab_file(root: str, pieces: int) -> str:
  """Where the demo corpus build writes its `pieces`-piece BPE vocabulary."""
  return os.path.join(root, "vocab", f"spm_{pieces}_bpe.model")


@gin.configurable
def demo_vocab_path(path: str | None = None) -> str:
  """Demo vocabulary: {demo_dir}/vocab/spm_4096_bpe.model unless bound in gin."""
  return path or demo_vocab_file(paths.demo_dir(), DEMO_VOCAB_SIZE)


@gin.configurable
def demo1k_vocab_path(path: str | None = None) -> str:
  """The demo1k_ tasks' vocabulary: {demo_dir}/vocab/spm_1024_bpe.model unless bound in gin."""
  return path or demo_vocab_file(paths.demo_dir(), DEMO1K_VOCAB_SIZE)


@gin.configurable
def imported_vocab_path(model_dir: str | None = None) -> str:
  """The imported tasks' vocabulary (`imported_*`, `demo_imported_*`): the tokenizer.json
  `hf.import_checkpoint` wrote under its --model_dir (gin `imported_vocab_path.model_dir`)."""
  if not model_dir:
    raise errors.ConfigError(
      "the imported_* and demo_imported_* tasks tokenize with an imported "
      "checkpoint's tokenizer.json: bind imported_vocab_path.model_dir"
    )
  return os.path.join(model_dir, hf_vocabulary.IMPORTED_TOKENIZER)


@gin.configurable
def imported_eos_id(eos_id: int | None = None) -> int:
  """The id the imported tasks end each text with (gin `imported_eos_id.eos_id`: the
  imported model's own, e.g. SmolLM2-Instruct's <|im_end|> = 2; its id 0 is seqio's pad)."""
  if eos_id is None:
    raise errors.ConfigError(
      "the imported_* and demo_imported_* tasks need the imported model's EOS id: "
      "bind imported_eos_id.eos_id"
    )
  return eos_id


REAL_VOCABULARY = SpmVocabulary(vocab_path)
DEMO_VOCABULARY = SpmVocabulary(demo_vocab_path)
DEMO1K_VOCABULARY = SpmVocabulary(demo1k_vocab_path)
IMPORTED_VOCABULARY = hf_vocabulary.HfTokenizerVocabulary(imported_vocab_path, imported_eos_id)
# task-name prefix -> vocabulary: each real corpus's tasks are registered once per entry
# (tasks/redpajama.py, paloma.py, flan.py), each demo task likewise (tasks/demo.py).
REAL_PREFIXES = {"": REAL_VOCABULARY, "imported_": IMPORTED_VOCABULARY}
DEMO_PREFIXES = {
  "demo": DEMO_VOCABULARY,
  "demo1k": DEMO1K_VOCABULARY,
  "demo_imported": IMPORTED_VOCABULARY,
}


@gin.configurable
def get_vocabulary(
  demo: bool = False, path: str | None = None, demo_prefix: str = "demo", imported: bool = False
) -> seqio.Vocabulary:
  """The registered tasks' vocabulary (the demo corpus's, the real one, or the file
  at `path` for a task of your own), so that inference, export and the harness
  read text as training tokenized it. `demo_prefix="demo1k"`: the 1024-piece demo one.
  `imported`: the real corpora's imported_* tasks' (an imported checkpoint's
  tokenizer.json). A `path` ending in .json is a Hugging Face tokenizer.json (`from_file`)."""
  if path:
    return _vocabulary_at(path)
  if not demo:
    return IMPORTED_VOCABULARY if imported else REAL_VOCABULARY
  if demo_prefix not in DEMO_PREFIXES:
    raise errors.ConfigError(
      f"get_vocabulary.demo_prefix={demo_prefix!r}: expected one of {sorted(DEMO_PREFIXES)}"
    )
  return DEMO_PREFIXES[demo_prefix]


@functools.lru_cache(maxsize=None)
def _vocabulary_at(path: str) -> seqio.Vocabulary:
  return from_file(path)


def from_file(path: str) -> seqio.Vocabulary:
  """The vocabulary a file holds: a Hugging Face tokenizer.json (`.json`, an imported
  checkpoint's) or a SentencePiece model."""
  if path.endswith(".json"):
    return hf_vocabulary.HfTokenizerVocabulary(path)
  return SpmVocabulary(path)


def vocabulary_file(vocab: seqio.Vocabulary) -> str | None:
  """The file a vocabulary reads (SentencePiece model or tokenizer.json); None for others."""
  return getattr(vocab, "vocabulary_file", None) or getattr(vocab, "sentencepiece_model_file", None)


def check_vocabulary_file(path: str) -> None:
  """One-line errors (OSError, ValueError) for a vocabulary file that cannot be used."""
  if path.endswith(".json"):
    hf_vocabulary.check_tokenizer_file(path)
  else:
    check_sentencepiece_model(path)


# A checkpoint's vocabulary: recorded in its meta at training (path, sha256 and a copy
# in MODEL_DIR/vocabulary/), found again and checked by every command that reads text.


def file_sha256(path: str | os.PathLike) -> str:
  """The sha256 of a file's bytes (local or gs://): how vocabularies are compared."""
  with tf.io.gfile.GFile(os.fspath(path), "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def record_vocabulary(model_dir: str, vocab_file: str) -> dict[str, str]:
  """meta's record of the run's SentencePiece file; copies it to MODEL_DIR/vocabulary/ once.

  The copy's name is kept relative to MODEL_DIR, so a MODEL_DIR moved or copied
  elsewhere still finds it. A copy already there with other bytes means this
  MODEL_DIR was trained with another vocabulary: a one-line ConfigError.
  """
  source = _absolute_path(vocab_file)
  if not source.exists():
    raise errors.ConfigError(f"vocabulary file not found: {source}")
  record = {
    "path": os.fspath(source),
    "sha256": file_sha256(source),
    "copy": f"{checkpoints.VOCABULARY_DIR}/{source.name}",
  }
  copy = _absolute_path(model_dir) / record["copy"]
  if copy.exists():
    checkpoints.check_same_vocabulary(
      {**record, "path": os.fspath(copy), "sha256": file_sha256(copy)}, record, model_dir
    )
  elif jax.process_index() == 0:
    copy.parent.mkdir(parents=True, exist_ok=True)
    partial = copy.parent / (copy.name + ".tmp")
    partial.write_bytes(source.read_bytes())
    partial.rename(copy)  # Atomic: a killed copy never looks like the vocabulary.
  return record


def vocabulary_path(checkpoint_path: str) -> str:
  """The SentencePiece file the checkpoint was trained with, its bytes checked by sha256.

  The copy in MODEL_DIR/vocabulary/ if it matches the record, else the recorded
  path if that file matches. A one-line ConfigError if neither does, or if the
  checkpoint records no vocabulary (saved before checkpoints recorded it): then
  the command's vocabulary has to be named (e.g. a data gin's VOCABULARY).
  """
  record, model_dir = checkpoints.recorded_vocabulary(checkpoint_path)
  if record is None:
    raise errors.ConfigError(
      f"{checkpoint_path} records no vocabulary (saved before checkpoints "
      "recorded theirs); name the SentencePiece file it was trained with"
    )
  candidates = (model_dir / record["copy"], _absolute_path(record["path"]))
  for candidate in candidates:
    if candidate.exists() and file_sha256(candidate) == record["sha256"]:
      return os.fspath(candidate)
  raise errors.ConfigError(
    f"the vocabulary of {checkpoint_path} is missing or changed: neither "
    f"{candidates[0]} nor {candidates[1]} has sha256 {record['sha256'][:16]}..."
  )


def resolve_vocabulary(checkpoint_path: str, override: Optional[str], what: str) -> str:
  """The SentencePiece file to read the checkpoint's text with: its own
  (`vocabulary_path`), or `override` once `check_vocabulary` found it the same."""
  if override is None:
    return vocabulary_path(checkpoint_path)
  check_vocabulary(checkpoint_path, override, what)
  return override


def check_vocabulary(checkpoint_path: str, vocab_file: str, what: str) -> None:
  """A one-line ConfigError when `vocab_file` (brought by `what`, a task or a flag) is
  not the vocabulary the checkpoint was trained with (its sha256 differs).

  A checkpoint that records no vocabulary (older ones) cannot be checked: a warning.
  """
  record, _ = checkpoints.recorded_vocabulary(checkpoint_path)
  if record is None:
    logging.warning(
      "%s records no vocabulary; cannot check that %s's %s is the one it was trained with",
      checkpoint_path,
      what,
      vocab_file,
    )
    return
  path = _absolute_path(vocab_file)
  if not path.exists():
    raise errors.ConfigError(f"{what}: vocabulary file not found: {path}")
  if file_sha256(path) != record["sha256"]:
    raise errors.ConfigError(
      f"{what} uses the vocabulary {path}, but {checkpoint_path} was trained "
      f"with {record['path']} (sha256 differs)"
    )


def checkpoint_vocabulary(
  checkpoint_path: str, vocabulary: Optional[seqio.Vocabulary] = None
) -> seqio.Vocabulary:
  """The checkpoint's recorded vocabulary (SentencePiece, or an imported checkpoint's
  tokenizer.json); or `vocabulary`, once checked against that record."""
  path = resolve_vocabulary(
    checkpoint_path, vocabulary_file(vocabulary) if vocabulary else None, "infer.infer.vocabulary"
  )
  return vocabulary or from_file(path)


def _absolute_path(path: str | os.PathLike) -> epath.Path:
  """Absolute, as the checkpoint records paths; gs:// and other URLs already are."""
  return epath.Path(path if "://" in os.fspath(path) else os.path.abspath(path))


def _lines(texts: Iterable[str], max_chars: int) -> Iterator[str]:
  used = 0
  for text in texts:
    for line in text.splitlines():
      line = line.strip()
      if line and len(line.encode("utf-8")) <= MAX_SENTENCE_BYTES:
        yield line
        used += len(line)
    if used >= max_chars:
      return


def texts_from_task(name: str, split: str = "train") -> Iterator[str]:
  """Raw strings (every string feature) of a registered task's or mixture's source."""
  provider = seqio.get_mixture_or_task(name)
  tasks = provider.tasks if isinstance(provider, seqio.Mixture) else [provider]
  for task in tasks:
    for ex in task.source.get_dataset(split=split, shuffle=False).as_numpy_iterator():
      yield from (v.decode("utf-8") for v in ex.values() if isinstance(v, bytes))


def texts_from_files(
  pattern: str,
  fields: Sequence[str] = ("text",),
  validation_fraction: float = files_task.DEFAULT_VALIDATION_FRACTION,
) -> Iterator[str]:
  """Strings of the train split of raw files, read as the TFDS builders read them (JSON
  lines or plain-text documents); the records a builder with this
  `validation_fraction` puts in validation are skipped. Bad records and files are
  skipped as there, with a warning."""
  for path in json_source.list_files(pattern):
    counts: collections.Counter = collections.Counter()
    try:
      for record in text_source.read_records(path, fields, counts):
        if text_builder.split_of(record, fields, validation_fraction) == "train":
          yield from record.values()
    except json_source.BadFileError as e:  # The texts read so far are still good text.
      logging.warning("Vocabulary: stopped reading a bad file, %s", e)


def train_sentencepiece(
  texts: Iterable[str],
  out_path: str,
  vocab_size: int = DEFAULT_VOCAB_SIZE,
  model_type: str = "bpe",
  max_chars: int = 2_000_000_000,
  byte_fallback: bool = False,
) -> str:
  """Trains a T5-id SentencePiece model on `texts` and writes it to `out_path` (local or gs://)."""
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
    sentence_iterator=_lines(texts, max_chars),
    model_writer=model,
    vocab_size=vocab_size,
    model_type=model_type,
    pad_id=PAD_ID,
    eos_id=EOS_ID,
    unk_id=UNK_ID,
    bos_id=-1,
    byte_fallback=byte_fallback,
    max_sentence_length=MAX_SENTENCE_BYTES,
    num_threads=os.cpu_count() or 1,
    # Sample when the corpus is large; deterministic via SentencePiece's fixed seed.
    input_sentence_size=20_000_000,
    shuffle_input_sentence=True,
    minloglevel=2,
  )
  tf.io.gfile.makedirs(os.path.dirname(out_path) or ".")
  tmp = out_path + ".tmp"
  with tf.io.gfile.GFile(tmp, "wb") as f:
    f.write(model.getvalue())
  tf.io.gfile.rename(tmp, out_path, overwrite=True)
  logging.info("Wrote %d-piece %s vocabulary to %s", vocab_size, model_type, out_path)
  return out_path


def main() -> None:
  f = flags.FLAGS
  if bool(f.task) == bool(f.files):
    raise errors.ConfigError("give exactly one of --task or --files")
  if f.task:
    import redllm_jax_tasks  # noqa: F401  registers the tasks (they import this module)  pylint: disable=g-import-not-at-top,unused-import

    texts = texts_from_task(f.task)
  else:
    texts = texts_from_files(f.files, f.fields, f.validation_fraction)
  train_sentencepiece(texts, f.out, f.vocab_size, f.model_type, f.max_chars, f.byte_fallback)


if __name__ == "__main__":
  flags.DEFINE_string("task", None, "Registered task or mixture whose train split to train on.")
  flags.DEFINE_string(
    "files", None, "Glob of raw JSON-lines or plain-text files instead of --task."
  )
  flags.DEFINE_list("fields", ["text"], "JSON fields to read with --files.")
  flags.DEFINE_float(
    "validation_fraction",
    files_task.DEFAULT_VALIDATION_FRACTION,
    "With --files: skip what the builders / files_task with this fraction hold out "
    "(at least their fraction: a larger one skips a superset).",
  )
  flags.DEFINE_string("out", None, "Output .model path (local or gs://).", required=True)
  flags.DEFINE_integer("vocab_size", DEFAULT_VOCAB_SIZE, "Number of pieces.")
  flags.DEFINE_enum("model_type", "bpe", ["bpe", "unigram"], "SentencePiece algorithm.")
  flags.DEFINE_integer("max_chars", 2_000_000_000, "Stop reading text after this many characters.")
  flags.DEFINE_bool("byte_fallback", False, "Encode unknown characters as bytes instead of unk.")
  gin_utils.run_flags(main)
