"""What shortcuts score on multiple-choice tasks: the floor a model must beat.

Per multiple-choice file, beside chance and the most frequent answer position, each
shortcut read both ways (its best option, and its worst): the option's length in
characters, the content words it shares with the prompt (a model that reads the
context), and a bigram model of the demo corpus's RedPajama train splits (each demo
vocabulary, add-0.1 smoothing) scoring it after the prompt, as lm-eval's `acc` does,
and on its own (what mutual-information scoring divides out). Ties are split evenly.
A task's floor is the best of them. `adversarial_distractors` builds tasks where every
one of them stays near chance; `demo.harness_tasks` writes each task's table to its manifest.
"""

import functools
from typing import Callable, Mapping, Sequence

import numpy as np
import sentencepiece as spm

from redllm_jax.demo import task_families
from redllm_jax.evaluation import harness

SMOOTHING = 0.1

Scorer = Callable[[str, str], float]


def accuracy(examples: Sequence[dict], score: Scorer) -> float:
  """Mean over items of 1/ties when the answer is among the best-scored options."""
  return harness.tie_split_accuracy(
    [[score(ex["inputs"], o) for o in ex["options"]] for ex in examples],
    [ex["label"] for ex in examples],
  )


@functools.lru_cache(maxsize=None)
def _content_words(text: str) -> frozenset[str]:
  return frozenset(w.lower() for w in task_families.content_words(text))


def overlap(prompt: str, option: str) -> float:
  """Content words (lower-cased) the option shares with the prompt."""
  return float(len(_content_words(prompt) & _content_words(option)))


def bigram_scorer(
  token_ids: Sequence[Sequence[int]],
  encode: Callable[[str], list[int]],
  vocab_size: int,
  eos_id: int = 1,
) -> Scorer:
  """log P(option | the prompt's last token) under an add-`SMOOTHING` bigram model; an
  empty prompt conditions on EOS (a document start), as lm-eval's unconditional pass
  conditions on nothing but the start."""
  counts = np.full((vocab_size, vocab_size), SMOOTHING)
  for ids in token_ids:
    ids = [eos_id] + list(ids)
    np.add.at(counts, (ids[:-1], ids[1:]), 1.0)
  log_p = np.log(counts / counts.sum(axis=1, keepdims=True))

  def score(prompt: str, option: str) -> float:
    ids = (encode(prompt)[-1:] or [eos_id]) + encode(option)
    return float(log_p[ids[:-1], ids[1:]].sum())

  return score


def unconditional(scorer: Scorer) -> Scorer:
  """The scorer with the prompt left out: how likely the option is on its own."""
  return lambda _, option: scorer("", option)


def shortcut_scorers(bigrams: Mapping[str, Scorer]) -> dict[str, Scorer]:
  """Every shortcut a task must not give away, by name. Each is read both ways (its best
  option and its worst), so that e.g. mutual-information scoring, which favours options
  unlikely on their own, finds no context-free way in either."""
  out = {"length": lambda _, o: float(len(o)), "word_overlap": overlap}
  for name, bigram in bigrams.items():
    out[name] = bigram
    out[f"{name}_no_context"] = unconditional(bigram)
  return out


def shortcut_groups(scorers: Mapping[str, Scorer]) -> list[list[Scorer]]:
  """The scorers grouped by kind (length, word overlap, bigram after the prompt, bigram on
  its own): a bigram in either vocabulary ranks options nearly alike, so the adversarial
  filter gives a group one target rank (independent targets for near-equal scorers
  cannot all be met, and the compromise sits below chance both ways)."""
  groups: dict[str, list[Scorer]] = {}
  for name, scorer in scorers.items():
    kind = "".join(c for c in name if not c.isdigit())  # bigram_4096 -> bigram_
    groups.setdefault(kind, []).append(scorer)
  return list(groups.values())


def adversarial_distractors(
  groups: Sequence[Sequence[Scorer]], tries: int = 256, max_misses: int = 1, slack: float = 6.0
) -> task_families.Chooser:
  """Adversarial filtering (SWAG, HellaSwag) against fixed shortcuts: per item, a target
  rank for the answer under each group of shortcuts (`shortcut_groups`), and the k
  distractors among the candidates whose ranks come closest (random subsets, then single
  swaps). The targets follow quotas (`_target`): the answer winning or losing, whichever
  the group's kept items are furthest behind on, else a middle rank. An item is dropped
  (None), as HellaSwag drops items it cannot make hard, when its pick misses more than
  `max_misses` scorers' targets, or when some scorer's best or worst option would then
  be the answer more than `slack` items above or below its 1/(k+1) share of the kept
  items (`_end_hits`, ties split as `accuracy` splits them). Every shortcut then finds
  the answer 1/(k+1) of the time, read either way, within `slack` items. A scorer that
  scores every option alike adds exactly its share and misses no target."""
  scorers = [s for group in groups for s in group]
  group_of = np.repeat(np.arange(len(groups)), [len(g) for g in groups])
  hits = np.zeros((2, len(scorers)))  # kept items' best / worst option hits per scorer
  kept = 0

  def choose(
    prompt: str, answer: str, candidates: Sequence[str], k: int, rng: np.random.RandomState
  ) -> list[str] | None:
    nonlocal kept
    if len(candidates) < k:
      return None
    table = np.array([[s(prompt, c) for s in scorers] for c in candidates])
    mine = np.array([s(prompt, answer) for s in scorers])
    informative = (table != mine).any(0)
    # Each candidate's share of the answer's rank per scorer (ties count half): a pick's
    # ranks are the sum over its distractors (0: the answer wins).
    above = (table > mine) + 0.5 * (table == mine)
    share = (kept + 1) / (k + 1)
    target = np.array(
      [_target(share - hits[:, group_of == g].mean(1), k, rng) for g in range(len(groups))]
    )[group_of]

    def cost(ranks: np.ndarray) -> np.ndarray:
      # Misses first: an absolute-distance cost alone settles on middle ranks for every
      # shortcut (cheaper than hitting 0 or k), which leaves each below chance both ways.
      miss = np.abs(ranks - target)[..., informative]
      return (miss > 0).sum(-1) + 0.01 * miss.sum(-1)

    best = _search(above, k, cost, tries, rng)
    ranks = above[best].sum(0)
    if ((np.abs(ranks - target) > 0) & informative).sum() > max_misses:
      return None
    after = hits + _end_hits(mine, table[best])
    if (np.abs(after - share) > slack).any():
      return None
    hits[:] = after
    kept += 1
    return [candidates[i] for i in best]

  return choose


def _target(behind: np.ndarray, k: int, rng: np.random.RandomState) -> int:
  """The answer's target rank under a group, from how far its best and worst hits are
  `behind` their share: the answer winning (0) or losing (k), whichever is further
  behind, else a middle rank at random (the ends are the hard ranks to reach)."""
  if behind.max() > 0:
    return 0 if behind[0] >= behind[1] else k
  return int(rng.randint(1, k))


def _search(
  above: np.ndarray,
  k: int,
  cost: Callable[[np.ndarray], np.ndarray],
  tries: int,
  rng: np.random.RandomState,
) -> np.ndarray:
  """The k candidates (rows of `above`) whose summed ranks cost least: the best of
  `tries` random picks, then the best single swap until none lowers the cost."""
  picks = np.array([rng.choice(len(above), k, replace=False) for _ in range(tries)])
  best = picks[np.argmin(cost(above[picks].sum(1)))]
  while True:
    ranks = above[best].sum(0)
    swapped = ranks[None, None] - above[best][:, None] + above[None]  # [slot, candidate, S]
    costs = cost(swapped)
    costs[:, best] = np.inf  # a distractor already picked
    slot, new = np.unravel_index(np.argmin(costs), costs.shape)
    if not costs[slot, new] < cost(ranks):
      return best
    best = best.copy()
    best[slot] = new


def _end_hits(mine: np.ndarray, others: np.ndarray) -> np.ndarray:
  """[2, scorer]: what the item adds to each scorer's accuracy read its best way (the
  answer among the top-scored options, 1/ties) and its worst way (among the bottom)."""
  values = np.vstack([mine[None], others])
  top, bottom = values.max(0), values.min(0)
  return np.stack(
    [(mine == top) / (values == top).sum(0), (mine == bottom) / (values == bottom).sum(0)]
  )


def majority_label(examples: Sequence[dict]) -> float:
  """Always answering the most frequent position (the options' order is shuffled)."""
  labels = np.bincount([ex["label"] for ex in examples])
  return float(labels.max() / len(examples))


def baselines(
  tasks: Sequence[harness.Task], scorers: Mapping[str, Scorer]
) -> dict[str, dict[str, float]]:
  """Per multiple-choice task: chance, the majority position, and each shortcut's
  accuracy read both ways (`<name>`: its best option; `<name>_reversed`: its worst)."""
  out = {}
  for t in tasks:
    if t.kind != harness.MC:
      continue
    row = {"chance": harness.chance_score(t), "majority_label": majority_label(t.examples)}
    for name, score in scorers.items():
      row[name] = accuracy(t.examples, score)
      row[f"{name}_reversed"] = accuracy(t.examples, lambda p, o, s=score: -s(p, o))
    out[t.name] = row
  return out


def floor(row: Mapping[str, float]) -> float:
  """The best a shortcut of `baselines` scores: what a model must beat."""
  return max(row.values())


def bigrams(train_texts: Sequence[str], vocab_files: Mapping[str, str]) -> dict[str, Scorer]:
  """`bigram_scorer` of the texts in each SentencePiece vocabulary, by name."""
  out = {}
  for name, vocab_file in vocab_files.items():
    sp = spm.SentencePieceProcessor(model_file=vocab_file)
    # Cached: the adversarial filter scores each unit as a candidate of many items.
    encode = functools.lru_cache(maxsize=None)(sp.encode)
    out[name] = bigram_scorer(sp.encode(list(train_texts)), encode, sp.get_piece_size())
  return out
