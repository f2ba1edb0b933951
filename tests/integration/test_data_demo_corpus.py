"""The demo corpus command: real text, RedPajama/FLAN/Paloma formats, idempotent."""
import json
import os

from redllm_jax.data import demo_corpus


def test_demo_corpus_sizes_and_formats(demo_root: str) -> None:
  with open(os.path.join(demo_root, demo_corpus.MARKER)) as f:
    tokens = json.load(f)["tokens"]
  for name in ("redpajama_v1/wikipedia", "redpajama_v1/book", "flan:inputs", "flan:targets"):
    assert tokens[name]["train"]["tokens"] > 5 * tokens[name]["validation"]["tokens"] > 0, name
  assert tokens["redpajama_v1/wikipedia"]["train"]["documents"] > 90  # gensim's 107 articles, minus stubs
  assert tokens["redpajama_v1/book"]["train"]["tokens"] > 500_000
  assert set(tokens["paloma/pydoc"]) == {"validation"} and tokens["paloma/pydoc"]["validation"]["documents"] == 79
  with open(os.path.join(demo_root, "raw", "redpajama_v1", "book", "part-00000.jsonl")) as f:
    assert json.loads(f.readline())["text"].startswith("Genesis 1\n\n1 In the beginning God created")
  with open(os.path.join(demo_root, "raw", "flan", "part-00000.jsonl")) as f:
    assert set(json.loads(f.readline())) == {"inputs", "targets"}


def test_rebuilding_is_a_no_op(demo_root: str) -> None:
  marker = os.path.join(demo_root, demo_corpus.MARKER)
  before = os.path.getmtime(marker), os.path.getmtime(os.path.join(demo_root, "vocab", "spm_4096_bpe.model"))
  with open(marker) as f:
    assert demo_corpus.build(demo_root) == json.load(f)
  assert before == (os.path.getmtime(marker), os.path.getmtime(os.path.join(demo_root, "vocab", "spm_4096_bpe.model")))
