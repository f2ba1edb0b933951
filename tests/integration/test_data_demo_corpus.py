"""The demo corpus command: real text, RedPajama/FLAN/Paloma formats, two vocabularies,
idempotent (an older cache builds just what it lacks)."""

import glob
import json
import os
import shutil

import tensorflow_datasets as tfds

from redllm_jax.demo import corpus as demo_corpus


def test_demo_corpus_sizes_and_formats(demo_root: str) -> None:
  with open(os.path.join(demo_root, demo_corpus.MARKER)) as f:
    tokens = json.load(f)["tokens"]
  for name in ("wikipedia", "book", "flan:inputs", "flan:targets"):
    assert tokens[name]["train"]["tokens"] > 5 * tokens[name]["validation"]["tokens"] > 0, name
  assert tokens["wikipedia"]["train"]["documents"] > 90  # gensim's 107 articles, minus stubs
  assert tokens["book"]["train"]["tokens"] > 500_000
  assert set(tokens["pydoc"]) == {"validation"} and tokens["pydoc"]["validation"]["documents"] == 79
  # Each part is a TFDS dataset whose info agrees with the counts.
  info = tfds.builder_from_directory(os.path.join(demo_root, "redllm_demo", "book", "1.0.0")).info
  assert info.splits["train"].num_examples == tokens["book"]["train"]["documents"]
  assert info.metadata["bad_files"] == 0 and len(info.metadata["inputs"]) == demo_corpus.RAW_PARTS
  with open(os.path.join(demo_root, "raw", "book", "part-00000.jsonl")) as f:
    assert json.loads(f.readline())["text"].startswith(
      "Genesis 1\n\n1 In the beginning God created"
    )
  with open(os.path.join(demo_root, "raw", "flan", "part-00000.jsonl")) as f:
    assert set(json.loads(f.readline())) == {"inputs", "targets"}


def test_rebuilding_is_a_no_op(demo_root: str) -> None:
  marker = os.path.join(demo_root, demo_corpus.MARKER)
  before = (
    os.path.getmtime(marker),
    os.path.getmtime(os.path.join(demo_root, "vocab", "spm_4096_bpe.model")),
  )
  with open(marker) as f:
    assert demo_corpus.build(demo_root) == json.load(f)
  assert before == (
    os.path.getmtime(marker),
    os.path.getmtime(os.path.join(demo_root, "vocab", "spm_4096_bpe.model")),
  )


def test_the_1024_piece_vocabulary_and_the_demo1k_tasks(demo_root: str) -> None:
  import seqio  # pylint: disable=g-import-not-at-top
  import redllm_jax_tasks  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  from redllm_jax.data import vocabulary  # pylint: disable=g-import-not-at-top

  path = vocabulary.demo_vocab_file(demo_root, vocabulary.DEMO1K_VOCAB_SIZE)
  vocabulary.check_sentencepiece_model(path)  # T5 ids pad/eos/unk = 0/1/2
  small, large = vocabulary.DEMO1K_VOCABULARY, vocabulary.DEMO_VOCABULARY
  assert small.vocab_size == 1024 and small.sentencepiece_model_file == path
  text = "In the beginning God created the heaven and the earth."
  assert small.decode(small.encode(text)) == text
  assert len(small.encode(text)) > len(large.encode(text))
  assert vocabulary.get_vocabulary(demo=True, demo_prefix="demo1k") is small
  with open(os.path.join(demo_root, demo_corpus.MARKER)) as f:
    stats = json.load(f)
  for name in ("demo1k_redpajama", "demo1k_flan", "demo1k_flan_families", "demo1k_paloma_pydoc"):
    split = "validation" if "paloma" in name else "train"
    features = {"targets": 64} if "flan" not in name else {"inputs": 64, "targets": 64}
    ex = next(
      seqio.get_mixture_or_task(name)
      .get_dataset(features, split=split, shuffle=False)
      .as_numpy_iterator()
    )
    assert 1 < ex["targets"].max() < 1024, name
  book = stats["tokens_demo1k"]["book"]["train"]["tokens"]
  assert book > 1.1 * stats["tokens"]["book"]["train"]["tokens"]  # smaller pieces


def test_a_cache_from_before_tfds_builds_the_datasets_and_keeps_its_vocabularies(
  demo_root: str, tmp_path
) -> None:
  """A cache the TFRecord converter wrote (its DONE.json names other parts): the build
  adds the TFDS datasets, keeps the vocabularies, and counts what a fresh build counts."""
  old = str(tmp_path / "demo")
  shutil.copytree(os.path.join(demo_root, "vocab"), os.path.join(old, "vocab"))
  with open(os.path.join(demo_root, demo_corpus.MARKER)) as f:
    stats = json.load(f)
  with open(os.path.join(old, demo_corpus.MARKER), "w") as f:
    parts = ["flan", "paloma/pydoc", "redpajama_v1/book", "redpajama_v1/wikipedia"]
    json.dump({"parts": parts + ["vocab/spm_1024_bpe.model", "vocab/spm_4096_bpe.model"]}, f)
  vocabs = glob.glob(os.path.join(old, "vocab", "*.model"))
  before = {p: os.path.getmtime(p) for p in vocabs}
  new = demo_corpus.build(old)
  assert {p: os.path.getmtime(p) for p in vocabs} == before
  assert new["parts"] == stats["parts"] and new["tokens"] == stats["tokens"]
  for rel in ("raw/families/next/part-00000.jsonl", "raw/wikipedia/part-00003.jsonl"):
    with open(os.path.join(old, rel), "rb") as a, open(os.path.join(demo_root, rel), "rb") as b:
      assert a.read() == b.read(), rel  # the same bytes as a fresh build
