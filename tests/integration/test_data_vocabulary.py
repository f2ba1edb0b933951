"""SentencePiece vocabulary: T5 ids, lazy path, one-line errors, training command (train split only)."""

import gzip
import subprocess
import sys

import pytest
import sentencepiece as spm
import tensorflow_datasets as tfds

from redllm_jax.data.datasets import builders, text_builder
from redllm_jax.data import vocabulary


def test_demo_vocabulary_has_t5_ids(demo_root: str) -> None:
  vocab = vocabulary.get_vocabulary(demo=True)
  assert vocab.sentencepiece_model_file.startswith(demo_root)
  assert vocab.vocab_size == 4096
  assert (vocab.tokenizer.pad_id(), vocab.eos_id, vocab.unk_id, vocab.bos_id) == (0, 1, 2, -1)
  ids = vocab.encode("In the beginning God created the heaven and the earth.")
  assert 0 not in ids and 1 not in ids and vocab.decode(ids).startswith("In the beginning")


def test_missing_vocabulary_fails_at_first_use_with_path(tmp_path) -> None:
  vocab = vocabulary.SpmVocabulary(str(tmp_path / "nope.model"))  # constructing is free
  with pytest.raises(FileNotFoundError, match=r"^Vocabulary file not found: .*nope\.model$"):
    vocab.encode("hello")


def test_non_sentencepiece_file_is_rejected(tmp_path) -> None:
  bogus = tmp_path / "bogus.model"
  bogus.write_text("this is not a protobuf\n" * 10)
  with pytest.raises(ValueError, match=r"^Not a SentencePiece model: .*bogus\.model$"):
    vocabulary.check_sentencepiece_model(str(bogus))
  with pytest.raises(ValueError, match="Not a SentencePiece model"):
    vocabulary.SpmVocabulary(str(bogus)).vocab_size


def test_train_on_files_and_reject_non_t5_ids(demo_root: str, tmp_path) -> None:
  texts = list(vocabulary.texts_from_files(f"{demo_root}/raw/pydoc/*.jsonl"))
  out = vocabulary.train_sentencepiece(
    texts, str(tmp_path / "u.model"), vocab_size=500, model_type="unigram"
  )
  vocabulary.check_sentencepiece_model(out)
  assert spm.SentencePieceProcessor(model_file=out).get_piece_size() == 500
  # A model trained with SentencePiece's default ids (unk 0, bos 1, eos 2) is refused.
  spm.SentencePieceTrainer.train(
    sentence_iterator=iter(texts), model_prefix=str(tmp_path / "d"), vocab_size=300, minloglevel=2
  )
  with pytest.raises(ValueError, match=r"need T5 ids pad/eos/unk = 0/1/2, got \(-1, 2, 0\)"):
    vocabulary.check_sentencepiece_model(str(tmp_path / "d.model"))


def test_train_on_registered_task_text(demo_root: str, tmp_path) -> None:
  import redllm_jax_tasks  # noqa: F401

  texts = vocabulary.texts_from_task("demo_flan", "validation")
  out = vocabulary.train_sentencepiece(
    texts, str(tmp_path / "f.model"), vocab_size=300, model_type="bpe"
  )
  assert spm.SentencePieceProcessor(model_file=out).eos_id() == 1


def _one_character_documents(folder) -> dict[str, str]:
  """40 plain-text files, each mostly one CJK character of its own: a character
  is a piece of the vocabulary exactly when its document was trained on."""
  docs = {}
  for i in range(40):
    docs[chr(0x4E00 + i)] = f"Document {i}: " + chr(0x4E00 + i) * 200
    (folder / f"doc{i}.txt.gz").write_bytes(gzip.compress(docs[chr(0x4E00 + i)].encode()))
  return docs


def test_vocabulary_command_reads_plain_text_and_trains_on_the_train_split_only(tmp_path) -> None:
  docs = _one_character_documents(tmp_path)
  split = {c: text_builder.split_of({"text": d}, ["text"], 0.3) for c, d in docs.items()}
  assert 0 < list(split.values()).count("validation") < len(docs)
  out = tmp_path / "v.model"
  run = subprocess.run(
    [
      sys.executable,
      "-m",
      "redllm_jax.data.vocabulary",
      f"--files={tmp_path}/*.txt.gz",
      f"--out={out}",
      "--vocab_size=100",
      "--validation_fraction=0.3",
    ],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
  sp = spm.SentencePieceProcessor(model_file=str(out))
  seen = {c: sp.piece_to_id(c) != sp.unk_id() for c in docs}
  assert seen == {c: s == "train" for c, s in split.items()}


def test_texts_from_files_are_the_builders_train_split(tmp_path) -> None:
  _one_character_documents(tmp_path)
  config = builders.files_config("chars", f"{tmp_path}/*.txt.gz", 0.3)
  builder = text_builder.build(builders.RedllmFiles, config, str(tmp_path / "out"))
  train = [x["text"].decode() for x in tfds.as_numpy(builder.as_dataset(split="train"))]
  assert sorted(
    vocabulary.texts_from_files(f"{tmp_path}/*.txt.gz", validation_fraction=0.3)
  ) == sorted(train)
