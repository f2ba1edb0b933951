r"""What shortcuts score on the multiple-choice task files: the floor a model must beat.

  python -m redllm_jax.evaluation.task_baselines [--tasks='tasks/harness/*.jsonl']

Per multiple-choice file, beside chance: always the shortest or the longest option
(characters), the option sharing most content words with the prompt (a model that
reads the context), and a bigram model of the demo corpus's RedPajama train splits
(4096 pieces, add-0.1 smoothing) scoring each option after the prompt, as lm-eval's
`acc` does. Ties are split evenly.
"""
import json
from typing import Callable, Sequence

from absl import flags
import numpy as np
import sentencepiece as spm

from redllm_jax import gin_utils
from redllm_jax.data import demo_corpus
from redllm_jax.data import paths
from redllm_jax.data import task_families
from redllm_jax.data import vocabulary
from redllm_jax.evaluation import demo_tasks
from redllm_jax.evaluation import harness

_TASKS = flags.DEFINE_string("tasks", "tasks/harness/*.jsonl", "Task files (multiple choice).")
SMOOTHING = 0.1

Scorer = Callable[[str, str], float]


def accuracy(examples: Sequence[dict], score: Scorer) -> float:
  """Mean over items of 1/ties when the answer is among the best-scored options."""
  hits = []
  for ex in examples:
    scores = np.array([score(ex["inputs"], o) for o in ex["options"]])
    best = np.flatnonzero(scores == scores.max())
    hits.append(float(ex["label"] in best) / len(best))
  return float(np.mean(hits))


def overlap(prompt: str, option: str) -> float:
  """Content words (lower-cased) the option shares with the prompt."""
  words = {w.lower() for w in task_families.content_words(prompt)}
  return float(len(words & {w.lower() for w in task_families.content_words(option)}))


def bigram_scorer(token_ids: Sequence[Sequence[int]], encode: Callable[[str], list[int]],
                  vocab_size: int) -> Scorer:
  """log P(option | the prompt's last token) under an add-`SMOOTHING` bigram model."""
  counts = np.full((vocab_size, vocab_size), SMOOTHING)
  for ids in token_ids:
    np.add.at(counts, (ids[:-1], ids[1:]), 1.0)
  log_p = np.log(counts / counts.sum(axis=1, keepdims=True))

  def score(prompt: str, option: str) -> float:
    ids = encode(prompt)[-1:] + encode(option)
    return float(log_p[ids[:-1], ids[1:]].sum())
  return score


def baselines(tasks: Sequence[harness.Task], bigram: Scorer) -> dict[str, dict[str, float]]:
  scorers = {"shortest": lambda _, o: -len(o), "longest": lambda _, o: len(o),
             "word_overlap": overlap, "bigram": bigram}
  return {t.name: {"chance": harness.chance_score(t),
                   **{k: accuracy(t.examples, s) for k, s in scorers.items()}}
          for t in tasks if t.kind == harness.MC}


def main() -> None:
  root = paths.demo_dir()
  demo_corpus.build(root)
  sp = spm.SentencePieceProcessor(
      model_file=vocabulary.demo_vocab_file(root, vocabulary.DEMO_VOCAB_SIZE))
  train = [t for texts in demo_tasks.split_texts("train").values() for t in texts]
  bigram = bigram_scorer(sp.encode(train), sp.encode, sp.get_piece_size())
  print(json.dumps(baselines(harness.load_tasks(_TASKS.value), bigram), indent=1))


if __name__ == "__main__":
  gin_utils.run_flags(main)
