"""Downstream items a tiny model can do, cut from demo-corpus documents.

Pure functions (documents in, items out), shared by the harness task files (from the
validation splits, `demo/harness_tasks.py`) and the instruction-tuning families
(from the train splits, `demo_corpus.build`). A *unit* is one Bible verse or one
Wikipedia sentence; a *run* is a stretch of consecutive units (a chapter, a paragraph),
so "the next unit" is only ever taken inside a run.

Eval items use the harness formats: multiple choice {"inputs", "options", "label"},
generative {"inputs", "targets"}; train items FLAN's {"inputs", "targets"}. Every item
fits `max_tokens` (prompt plus its longest option or target, as measured by `length`):
the study trains on 128-token windows.
"""

import collections
import dataclasses
import itertools
import re
from typing import Callable, Iterator, Sequence

from gensim.parsing.preprocessing import STOPWORDS
import numpy as np

WIKIPEDIA, BIBLE = "wikipedia", "book"  # the demo corpus's RedPajama subsets
SOURCE_NAMES = {WIKIPEDIA: "Wikipedia", BIBLE: "the Bible"}
MAX_TOKENS = 60  # prompt + longest option, in pieces of the 4096-piece demo vocabulary
WORD_SHARE = 0.03  # most items one word may answer, per source (cloze, fill the blank)
LENGTH_MATCH = 1.1  # distractors' length in characters: within this factor of the answer's

# family -> held out of the tuning mixture (measures zero-shot transfer after tuning)
FAMILIES = {"source": False, "next": False, "blank": False, "is_next": True, "book": True}
TUNED_FAMILIES = tuple(f for f, held_out in FAMILIES.items() if not held_out)
FAMILIES_DIR = "flan_families"  # under the demo root: {FAMILIES_DIR}/{family}/{split}/*.tfrecord

# After a lower-case word, not an initial ("Donald C. Baker") or abbreviation.
_SENTENCE_END = re.compile(r"(?<=[a-z0-9)\]][.!?])\s+(?=[A-Z])")
_WORD = re.compile(r"[A-Za-z]+")
_MARKUP = set("[]{}|=<>*#_\\")
# gensim's English stop words and the King James Bible's own.
_STOPWORDS = frozenset(STOPWORDS) | frozenset(
  "thou thee thy thine ye yea unto hath doth art shalt wilt hast saith said".split()
)

Length = Callable[[str], int]


@dataclasses.dataclass(frozen=True)
class Document:
  source: str  # WIKIPEDIA or BIBLE
  name: str  # article title or Bible book
  runs: tuple[tuple[str, ...], ...]


def _clean_unit(text: str) -> bool:
  """A whole, plain sentence or verse: no wiki markup left, no list fragment."""
  return (
    20 <= len(text) <= 200
    and text[0].isupper()
    and text[-1] in ".!?:;,"
    and not _MARKUP & set(text)
    and len(text.split()) >= 4
  )


def bible_document(text: str) -> Document:
  """A chapter as demo_corpus writes it: "Book N", a blank line, "verse text" lines."""
  header, _, body = text.partition("\n\n")
  verses = tuple(line.split(" ", 1)[1] for line in body.splitlines() if " " in line)
  return Document(BIBLE, header.rsplit(" ", 1)[0], (verses,))


def wikipedia_document(text: str) -> Document:
  """An article as demo_corpus writes it (title, blank line, filtered wiki text); each
  prose paragraph is a run of sentences, lists and headings are dropped."""
  title, _, body = text.partition("\n\n")
  runs = []
  for line in body.splitlines():
    line = line.strip().replace("'''", "").replace("''", "")
    if line and line[0].isalpha():
      runs.append(tuple(_SENTENCE_END.split(line)))
  return Document(WIKIPEDIA, title, tuple(runs))


PARSERS = {WIKIPEDIA: wikipedia_document, BIBLE: bible_document}


def documents(
  texts: dict[str, Sequence[str]], keep: Callable[[str], bool] = lambda u: True
) -> list[Document]:
  """Each source's documents (raw texts, in sorted order for determinism), parsed, with
  only clean units that `keep` accepts."""
  return drop_units(
    [PARSERS[source](t) for source, group in sorted(texts.items()) for t in sorted(group)], keep
  )


def drop_units(docs: Sequence[Document], keep: Callable[[str], bool]) -> list[Document]:
  """The documents with each unit that fails `keep` replaced by a run break, so that
  consecutive units stay consecutive in the text."""
  out = []
  for doc in docs:
    runs = []
    for run in doc.runs:
      current: list[str] = []
      for unit in run + ("",):
        if unit and _clean_unit(unit) and keep(unit):
          current.append(unit)
        elif current:
          runs.append(tuple(current))
          current = []
    out.append(dataclasses.replace(doc, runs=tuple(runs)))
  return out


def content_words(text: str) -> list[str]:
  """Words of 4+ letters that are not function words, in order."""
  return [w for w in _WORD.findall(text) if len(w) >= 4 and w.lower() not in _STOPWORDS]


# ----------------------------------------------------------------------------- building blocks

Candidate = tuple  # (document, units...) from which one item may be made


def _contexts(doc: Document, max_units: int) -> Iterator[tuple[Document, tuple[str, ...], str]]:
  """(doc, up to `max_units` preceding units, the unit) for every unit with a predecessor."""
  for run in doc.runs:
    for i in range(1, len(run)):
      yield doc, run[max(0, i - max_units) : i], run[i]


def _windows(doc: Document, units: int) -> Iterator[tuple[Document, tuple[str, ...]]]:
  """(doc, up to `units` consecutive units ending at each unit)."""
  for run in doc.runs:
    for i in range(len(run)):
      yield doc, run[max(0, i - units + 1) : i + 1]


def _by_source(docs: Sequence[Document]) -> dict[str, list[Document]]:
  out: dict[str, list[Document]] = {}
  for doc in sorted(docs, key=lambda d: d.source):
    out.setdefault(doc.source, []).append(doc)
  return out


def _fit(
  context: Sequence[str], rest: str, fixed: str, length: Length, max_tokens: int
) -> tuple[str, ...] | None:
  """The longest tail of `context` whose prompt (with `fixed` instruction text) and
  `rest` fit `max_tokens`, or None."""
  for start in range(len(context)):
    tail = tuple(context[start:])
    if length(fixed + " ".join(tail)) + length(rest) <= max_tokens:
      return tail
  return None


def _shuffled(options: list[str], rng: np.random.RandomState) -> tuple[list[str], int]:
  """Options in a random order and the position of options[0] (the answer)."""
  order = rng.permutation(len(options))
  return [options[i] for i in order], int(np.where(order == 0)[0][0])


def _sample(
  candidates: dict[str, list[Candidate]],
  make: Callable[[str, Candidate], dict | None],
  per_source: int,
  rng: np.random.RandomState,
  equal: bool = False,
  word_share: float | None = None,
) -> list[dict]:
  """Up to `per_source` items per source, made from candidates tried in a random order
  (until enough), kept in text order, sources interleaved. `equal`: as many of each
  source as the smallest source gives. `word_share`: no target word (lower-cased) in
  more than this share of a source's items, so that no constant answer scores much."""
  made: dict[str, list[tuple[int, dict]]] = {}
  for source, group in sorted(candidates.items()):
    made[source] = []
    words: collections.Counter = collections.Counter()
    for i in rng.permutation(len(group)):
      item = make(source, group[i])
      if item and word_share:
        word = item["targets"][0].lower()
        if words[word] >= max(1, int(word_share * per_source)):
          continue
        words[word] += 1
      if item:
        made[source].append((int(i), item))
        if len(made[source]) == per_source:
          break
  n = min(len(v) for v in made.values()) if equal else per_source
  ordered = [[item for _, item in sorted(v[:n], key=lambda x: x[0])] for v in made.values()]
  return [item for row in itertools.zip_longest(*ordered) for item in row if item is not None]


class _Pool:
  """The units of one source's documents sorted by length in characters, to draw
  distractors from other documents (other books for the Bible: never adjacent text)."""

  def __init__(self, docs: Sequence[Document]):
    entries = sorted({(len(u), u, d.name) for d in docs for run in d.runs for u in run})
    self.lengths = np.array([e[0] for e in entries])
    self.units = [e[1] for e in entries]
    self.names = [e[2] for e in entries]

  def draw(
    self,
    rng: np.random.RandomState,
    k: int,
    doc: Document,
    exclude: Sequence[str],
    near: int | None = None,
    least: int | None = None,
  ) -> list[str] | None:
    """`k` distinct units not in `exclude`, of a length within `LENGTH_MATCH` of `near`
    characters (so that neither log-likelihood, favouring short options, nor its
    per-character normalisation finds the answer by its length); with `least`, as many
    as were found if that is at least `least` (a small source has few such units)."""
    lo, hi = 0, len(self.units)
    if near is not None:
      lo = int(np.searchsorted(self.lengths, near / LENGTH_MATCH, "left"))
      hi = int(np.searchsorted(self.lengths, near * LENGTH_MATCH, "right"))
    picks: list[str] = []
    for _ in range(20 * k if hi > lo else 0):
      i = rng.randint(lo, hi)
      if self.names[i] != doc.name and self.units[i] not in exclude and self.units[i] not in picks:
        picks.append(self.units[i])
        if len(picks) == k:
          return picks
    return picks if least is not None and len(picks) >= least else None


# ----------------------------------------------------------------------------- items

# Picks an item's distractors among candidates: (prompt, answer, candidates, how many,
# rng) -> distractors or None. The harness tasks pass an adversarial filter
# (`evaluation/task_baselines.adversarial_distractors`) that keeps shortcuts at chance.
Chooser = Callable[[str, str, Sequence[str], int, np.random.RandomState], "list[str] | None"]


def _same_document(doc: Document, answer: str, exclude: Sequence[str], gap: int = 3) -> list[str]:
  """Units of the answer's own document at least `gap` units away from it in its run (or
  in another run): the same topic and words, never the text around the answer."""
  out = []
  for run in doc.runs:
    at = run.index(answer) if answer in run else None
    out += [u for i, u in enumerate(run) if u not in exclude and (at is None or abs(i - at) >= gap)]
  return sorted(set(out))


def continuation(
  docs: Sequence[Document],
  rng: np.random.RandomState,
  per_source: int,
  length: Length,
  instruction: str = "",
  num_options: int = 4,
  max_tokens: int = MAX_TOKENS,
  choose: Chooser | None = None,
  candidates_per_item: int = 0,
) -> list[dict]:
  """HellaSwag/StoryCloze style: 1-3 consecutive units, then the true next unit among
  `num_options`; the others are units of other documents of the same source, of
  the same length (within `LENGTH_MATCH`), none equal to the answer. With `choose`, it
  picks them among `candidates_per_item` such units plus units of the answer's own
  document (`_same_document`) that fit beside the prompt."""
  groups = _by_source(docs)
  pools = {source: _Pool(group) for source, group in groups.items()}
  k = num_options - 1

  def make(source: str, candidate: Candidate) -> dict | None:
    doc, context, answer = candidate
    exclude = (answer,) + context
    drawn = pools[source].draw(
      rng,
      candidates_per_item if choose else k,
      doc,
      exclude,
      near=len(answer),
      least=k if choose else None,
    )
    if not drawn:
      return None
    if choose:
      # The prompt is cut before choosing: the shortcuts read it as it will be asked.
      tail = _fit(context, answer, instruction, length, max_tokens)
      prompt = tail and instruction + " ".join(tail)
      fits = prompt and [
        c
        for c in drawn + _same_document(doc, answer, exclude)
        if length(prompt) + length(c) <= max_tokens
      ]
      others = fits and choose(prompt, answer, fits, k, rng)
    else:
      others = drawn
      tail = _fit(context, max([answer] + others, key=length), instruction, length, max_tokens)
    if not tail or not others:
      return None
    options, label = _shuffled([answer] + others, rng)
    return {"inputs": instruction + " ".join(tail), "options": options, "label": label}

  candidates = {s: [c for d in group for c in _contexts(d, 3)] for s, group in groups.items()}
  return _sample(candidates, make, per_source, rng)


def balance_labels(items: Sequence[dict], rng: np.random.RandomState) -> list[dict]:
  """The items with each answer moved to a position of a shuffled, exactly balanced
  sequence (each position floor(n/k) or ceil(n/k) times): a random shuffle per item
  leaves the most frequent position a few points above 1/k, and the other options keep
  their order."""
  k = len(items[0]["options"])
  labels = rng.permutation(np.arange(len(items)) % k)
  out = []
  for item, label in zip(items, labels):
    answer = item["options"][item["label"]]
    others = [o for i, o in enumerate(item["options"]) if i != item["label"]]
    out.append(dict(item, options=others[:label] + [answer] + others[label:], label=int(label)))
  return out


def _cloze_cut(text: str) -> tuple[str, str] | None:
  """(passage before its final word, the word) when the final word is a content word
  that also occurs earlier in the passage (LAMBADA's targets mostly do)."""
  words = _WORD.findall(text)
  if not words or words[-1] not in content_words(words[-1]):
    return None
  word = words[-1]
  head = text[: text.rstrip(".!?:;,'\" ").rfind(word)].rstrip()
  if not head or word.lower() not in {w.lower() for w in _WORD.findall(head)}:
    return None
  return head, word


def cloze(
  docs: Sequence[Document],
  rng: np.random.RandomState,
  per_source: int,
  length: Length,
  num_options: int = 10,
  max_tokens: int = MAX_TOKENS,
) -> list[dict]:
  """LAMBADA style: 1-3 consecutive units whose final word is held out (a content word
  also found earlier in the passage). Items carry both formats: `targets` [word] and
  `options` (the word and other content words of the passage, then of the source)."""
  groups = _by_source(docs)
  source_words = {
    source: sorted({w for d in group for run in d.runs for u in run for w in content_words(u)})
    for source, group in groups.items()
  }

  def make(source: str, candidate: Candidate) -> dict | None:
    _, context, last = candidate
    for start in range(len(context) + 1):  # the longest passage that cuts and fits
      cut = _cloze_cut(" ".join(context[start:] + (last,)))
      if not cut:
        continue
      head, word = cut
      others = sorted({w for w in content_words(head) if w.lower() != word.lower()})
      rng.shuffle(others)
      pool = source_words[source]
      while len(others) < num_options - 1:
        extra = pool[rng.randint(len(pool))]
        if extra.lower() not in {w.lower() for w in others + [word]}:
          others.append(extra)
      options = [word] + others[: num_options - 1]
      if length(head) + max(map(length, options)) <= max_tokens:
        options, label = _shuffled(options, rng)
        return {"inputs": head, "targets": [word], "options": options, "label": label}
    return None

  candidates = {s: [c for d in group for c in _contexts(d, 2)] for s, group in groups.items()}
  return _sample(candidates, make, per_source, rng, word_share=WORD_SHARE)


# ----------------------------------------------------------------------------- instruction families


def source_family(
  docs: Sequence[Document],
  rng: np.random.RandomState,
  per_source: int,
  length: Length,
  max_tokens: int = MAX_TOKENS,
) -> list[dict]:
  """Which source a passage of 1-2 units comes from: Wikipedia or the Bible (as many
  of each: otherwise always answering "the Bible" would beat chance)."""
  instruction = "Is this from Wikipedia or the Bible? "
  names = [SOURCE_NAMES[WIKIPEDIA], SOURCE_NAMES[BIBLE]]

  def make(source: str, candidate: Candidate) -> dict | None:
    tail = _fit(candidate[1], max(names, key=length), instruction, length, max_tokens)
    return tail and {
      "inputs": instruction + " ".join(tail),
      "options": names,
      "label": names.index(SOURCE_NAMES[source]),
    }

  candidates = {
    s: [c for d in group for c in _windows(d, 2)] for s, group in _by_source(docs).items()
  }
  return _sample(candidates, make, per_source, rng, equal=True)


def next_family(
  docs: Sequence[Document],
  rng: np.random.RandomState,
  per_source: int,
  length: Length,
  max_tokens: int = MAX_TOKENS,
  choose: Chooser | None = None,
  candidates_per_item: int = 0,
) -> list[dict]:
  """The next unit, asked for: `continuation` with an instruction (its eval version is
  adversarially filtered as continuation is; its train version is a plain draw)."""
  return continuation(
    docs,
    rng,
    per_source,
    length,
    instruction="What comes next? ",
    max_tokens=max_tokens,
    choose=choose,
    candidates_per_item=candidates_per_item,
  )


def blank_family(
  docs: Sequence[Document],
  rng: np.random.RandomState,
  per_source: int,
  length: Length,
  max_tokens: int = MAX_TOKENS,
) -> list[dict]:
  """Fill in the blank: the last occurrence of a content word that occurs twice in a
  passage of 1-2 units is replaced by ___ (the other occurrence is the clue)."""
  instruction = "Fill in the blank: "

  def make(source: str, candidate: Candidate) -> dict | None:
    window = candidate[1]
    for start in range(len(window)):
      text = " ".join(window[start:])
      words = content_words(text)
      repeated = sorted({w for w in words if words.count(w) >= 2})
      if not repeated:
        continue
      word = repeated[rng.randint(len(repeated))]
      at = [m.start() for m in _WORD.finditer(text) if m.group() == word][-1]
      inputs = instruction + text[:at] + "___" + text[at + len(word) :]
      if length(inputs) + length(word) <= max_tokens:
        return {"inputs": inputs, "targets": [word]}
    return None

  candidates = {
    s: [c for d in group for c in _windows(d, 2)] for s, group in _by_source(docs).items()
  }
  return _sample(candidates, make, per_source, rng, word_share=WORD_SHARE)


def is_next_family(
  docs: Sequence[Document],
  rng: np.random.RandomState,
  per_source: int,
  length: Length,
  max_tokens: int = MAX_TOKENS,
) -> list[dict]:
  """Does B follow A, yes or no: B is A's next unit or (as often: `per_source` items
  per answer) a unit of the same length from another document of the same source."""
  instruction = "Does B follow A? Answer yes or no. "
  options = ["yes", "no"]
  groups = _by_source(docs)
  pools = {source: _Pool(group) for source, group in groups.items()}

  def make(label: str, candidate: Candidate) -> dict | None:
    doc, (before,), after = candidate
    b = (
      [after]
      if label == "yes"
      else pools[doc.source].draw(rng, 1, doc, (before, after), near=len(after))
    )
    inputs = b and f"{instruction}A: {before} B: {b[0]}"
    if not inputs or length(inputs) + max(map(length, options)) > max_tokens:
      return None
    return {"inputs": inputs, "options": options, "label": options.index(label)}

  # Each unit with a predecessor goes to "yes" or "no" at random; as many of each.
  candidates: dict[str, list[Candidate]] = {"yes": [], "no": []}
  for d in docs:
    for c in _contexts(d, 1):
      candidates[options[rng.randint(2)]].append(c)
  return _sample(candidates, make, per_source, rng, equal=True)


def book_family(
  docs: Sequence[Document],
  rng: np.random.RandomState,
  per_source: int,
  length: Length,
  num_options: int = 4,
  max_tokens: int = MAX_TOKENS,
) -> list[dict]:
  """Which Bible book a verse is from, among `num_options` books of the split whose
  names are about as long; about `per_source` items, as many from each book."""
  bible = [d for d in docs if d.source == BIBLE]
  books = sorted({d.name for d in bible})

  def make(source: str, candidate: Candidate) -> dict | None:
    doc, (verse,) = candidate
    # Names of about the same length: the answer is not the shortest name more often.
    others = [b for b in books if b != doc.name and abs(len(b) - len(doc.name)) <= 3]
    picks = [others[i] for i in rng.choice(len(others), num_options - 1, replace=False)]
    options, label = _shuffled([doc.name] + picks, rng)
    inputs = f"Which book is this from: {', '.join(options[:-1])} or {options[-1]}? {verse}"
    if length(inputs) + max(map(length, options)) > max_tokens:
      return None
    return {"inputs": inputs, "options": options, "label": label}

  by_book: dict[str, list[Candidate]] = {}  # as many verses of each book: no prior to learn
  for d in bible:
    by_book.setdefault(d.name, []).extend(_windows(d, 1))
  return _sample(by_book, lambda _, c: make(BIBLE, c), -(-per_source // len(books)), rng)


FAMILY_BUILDERS = {
  "source": source_family,
  "next": next_family,
  "blank": blank_family,
  "is_next": is_next_family,
  "book": book_family,
}


def as_flan(item: dict) -> dict[str, str]:
  """The FLAN (train) form of an item: its answer as `targets`."""
  if "label" in item:
    return {"inputs": item["inputs"], "targets": item["options"][item["label"]]}
  return {"inputs": item["inputs"], "targets": item["targets"][0]}
