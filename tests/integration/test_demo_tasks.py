"""The demo downstream tasks and instruction families: built from held-out text only,
deterministic (the committed files are what the command rebuilds), chance levels in
the manifest, the held-out families absent from the tuning mixture."""

import collections
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import seqio
import sentencepiece as spm

import redllm_jax_tasks  # noqa: F401  pylint: disable=unused-import
from redllm_jax.demo import task_families
from redllm_jax.data import vocabulary
from redllm_jax.evaluation import harness

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMITTED = os.path.join(REPO, "tasks", "harness")
CORPUS_TASKS = (
  "demo_continuation_mc",
  "demo_cloze_greedy",
  "demo_cloze_mc",
  "demo_family_source_mc",
  "demo_family_next_mc",
  "demo_family_blank_gen",
  "demo_family_is_next_mc",
  "demo_family_book_mc",
)
INSTRUCTIONS = ("Is this from Wikipedia or the Bible? ", "What comes next? ", "Fill in the blank: ")


def _doc(source, name, *runs):
  return task_families.Document(source, name, tuple(tuple(r) for r in runs))


def _words(text):
  return len(text.split())


def test_continuation_and_cloze_items_on_known_documents():
  verses = [f"Verse {i} of the chapter speaks of the river again." for i in range(8)]
  docs = [
    _doc("book", "Genesis", verses),
    _doc("book", "Exodus", [v.replace("river", "mountain") for v in verses]),
    _doc("book", "Ruth", [v.replace("river", "field") for v in verses]),
  ]
  items = task_families.continuation(docs, np.random.RandomState(0), 100, _words, max_tokens=40)
  assert len(items) == 3 * 7  # every unit that has a predecessor
  for item in items:
    answer = item["options"][item["label"]]
    context = item["inputs"]
    doc = next(d for d in docs if context.split(" ", 2)[-1] in " ".join(d.runs[0]))
    run = doc.runs[0]
    assert run[run.index(answer) - 1] in context and len(set(item["options"])) == 4
    assert all(o not in run for o in item["options"] if o != answer)  # other books only
    assert _words(context) + max(map(_words, item["options"])) <= 40
  cloze_doc = _doc(
    "wikipedia", "Rivers", ["The river Nile is long.", "Many people live near the river."]
  )
  (item,) = task_families.cloze([cloze_doc], np.random.RandomState(0), 10, _words, num_options=4)
  assert item["inputs"] == "The river Nile is long. Many people live near the" and item[
    "targets"
  ] == ["river"]
  assert item["options"][item["label"]] == "river" and len(set(item["options"])) == 4


def test_the_rebuild_command_gives_the_committed_files(demo_root, tmp_path):
  """As a user runs it; byte-identical task files and manifest (fixed seeds, sorted inputs)."""
  run = subprocess.run(
    [sys.executable, "-m", "redllm_jax.demo.harness_tasks", f"--out_dir={tmp_path}"],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert run.returncode == 0, run.stderr[-2000:]
  counts = json.loads(run.stdout.strip().splitlines()[0])  # then the shortcut table
  assert "| `demo_continuation_mc` |" in run.stdout
  assert all(counts[name] >= 240 for name in CORPUS_TASKS), counts
  built = sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "*.jsonl")))
  assert built == sorted(os.path.basename(p) for p in glob.glob(os.path.join(COMMITTED, "*.jsonl")))
  for name in built + ["manifest.json"]:
    with open(tmp_path / name, "rb") as a, open(os.path.join(COMMITTED, name), "rb") as b:
      assert a.read() == b.read(), name
  for name in built:  # each lm-eval YAML reads its JSON lines where they were written
    yaml = (tmp_path / name.replace(".jsonl", ".yaml")).read_text()
    assert f'test: "{tmp_path}/{name}"' in yaml
    with open(os.path.join(COMMITTED, name.replace(".jsonl", ".yaml"))) as f:
      assert yaml.replace(str(tmp_path), "tasks/harness") == f.read()


def _train_text():
  return {
    s: "\n".join(
      ex["text"].decode()
      for ex in seqio.get_mixture_or_task(f"demo_redpajama_{s}")
      .source.get_dataset(split="train", shuffle=False)
      .as_numpy_iterator()
    )
    for s in ("wikipedia", "book")
  }


def _passages(example):
  """The corpus text of an item: its inputs without the instruction, its long options."""
  text = example["inputs"]
  for prefix in INSTRUCTIONS:
    text = text.removeprefix(prefix)
  if text.startswith("Does B follow A? Answer yes or no. A: "):
    text = text.split("A: ", 1)[1].replace(" B: ", "\n")
  if text.startswith("Which book is this from: "):
    text = text.split("? ", 1)[1]
  return [p for p in text.split("\n") + example.get("options", []) if len(p.split()) >= 4]


def _grams(words, n=4):
  return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def test_no_task_passage_is_training_text(demo_root):
  train = "\n".join(_train_text().values())
  train_grams = _grams(train.split())
  checked = 0
  for name in CORPUS_TASKS:
    for example in harness.load_task(os.path.join(COMMITTED, f"{name}.jsonl")).examples:
      for passage in _passages(example):
        # A substring of the train text has its inner words' 4-grams there too: the
        # substring search is needed only when they all are.
        inner = passage.split()[1:-1]
        if len(inner) < 4 or _grams(inner) <= train_grams:
          assert passage not in train, (name, passage)
        checked += 1
  assert checked > 3000


def test_manifest_chance_lengths_and_labels(demo_root):
  with open(os.path.join(COMMITTED, "manifest.json")) as f:
    manifest = json.load(f)
  assert set(manifest) == {
    os.path.basename(p)[:-6] for p in glob.glob(os.path.join(COMMITTED, "*.jsonl"))
  }
  sp = spm.SentencePieceProcessor(
    model_file=vocabulary.demo_vocab_file(demo_root, vocabulary.DEMO_VOCAB_SIZE)
  )
  expected_chance = {
    "demo_continuation_mc": 0.25,
    "demo_cloze_mc": 0.1,
    "demo_family_source_mc": 0.5,
    "demo_family_next_mc": 0.25,
    "demo_family_book_mc": 0.25,
    "demo_family_is_next_mc": 0.5,
    "demo_cloze_greedy": 0.0,
    "demo_family_blank_gen": 0.0,
  }
  for name, chance in expected_chance.items():
    task = harness.load_task(os.path.join(COMMITTED, f"{name}.jsonl"))
    entry = manifest[name]
    assert entry["chance"] == harness.chance_score(task) == pytest.approx(chance), name
    assert entry["items"] == len(task.examples) and entry["kind"] == task.kind
    assert entry["held_out_family"] == (entry["family"] in ("is_next", "book"))
    answers = [
      ex.get("options") or ex.get("targets") or [ex["continuation"]] for ex in task.examples
    ]
    longest = max(
      len(sp.encode(ex["inputs"])) + max(len(sp.encode(a)) for a in options)
      for ex, options in zip(task.examples, answers)
    )
    assert longest == entry["tokens_4096"]["max"] <= task_families.MAX_TOKENS, name
    if task.kind == harness.MC:  # the answer's position is uniform
      positions = collections.Counter(ex["label"] for ex in task.examples)
      n = len(task.examples[0]["options"])
      assert min(positions[i] for i in range(n)) > 0.6 * len(task.examples) / n, (name, positions)
    else:
      top = collections.Counter(
        harness.normalize_answer(ex.get("targets", [None])[0] or ex["continuation"])
        for ex in task.examples
      )
      assert entry["majority_baseline"] == pytest.approx(
        top.most_common(1)[0][1] / len(task.examples)
      )
      assert entry["majority_baseline"] < 0.05, name  # no word answers many items
  cloze = harness.load_task(os.path.join(COMMITTED, "demo_cloze_greedy.jsonl")).examples
  assert all(ex["continuation"].lower() in ex["inputs"].lower() for ex in cloze)  # as LAMBADA


def test_the_tuning_mixture_holds_the_tuned_families_only(demo_root):
  for prefix, vocab in vocabulary.DEMO_PREFIXES.items():
    mixture = seqio.get_mixture_or_task(f"{prefix}_flan_families")
    assert sorted(t.name for t in mixture.tasks) == sorted(
      f"{prefix}_flan_{f}" for f in task_families.TUNED_FAMILIES
    )
    assert all(t.output_features["inputs"].vocabulary is vocab for t in mixture.tasks)
  assert set(task_families.FAMILIES) - set(task_families.TUNED_FAMILIES) == {"is_next", "book"}
  seen = collections.Counter()
  for path in glob.glob(os.path.join(demo_root, "raw", "families", "*", "*.jsonl")):
    with open(path) as f:
      for record in map(json.loads, f):
        seen[next((p for p in INSTRUCTIONS if record["inputs"].startswith(p)), None)] += 1
        assert not record["inputs"].startswith(("Does B follow A?", "Which book is this from:"))
  assert None not in seen and all(seen[p] > 2000 for p in INSTRUCTIONS), seen
  ds = seqio.get_mixture_or_task("demo1k_flan_families").get_dataset(
    {"inputs": 64, "targets": 32}, split="train", shuffle=False
  )
  for ex in ds.take(8).as_numpy_iterator():
    assert 0 < ex["inputs"].max() < vocabulary.DEMO1K_VOCAB_SIZE and ex["targets"][-1] in (0, 1)


def test_no_length_or_prior_shortcut():
  """Picking the longest or the shortest option, or always the same answer, does not
  beat chance (by more than sampling noise)."""
  for name in ("demo_continuation_mc", "demo_family_next_mc", "demo_family_book_mc"):
    examples = harness.load_task(os.path.join(COMMITTED, f"{name}.jsonl")).examples
    for pick in (max, min):
      hits = np.mean(
        [len(ex["options"][ex["label"]]) == pick(map(len, ex["options"])) for ex in examples]
      )
      assert hits < 0.32, (name, pick.__name__, hits)  # chance 0.25, ties included
  for name in ("demo_family_is_next_mc", "demo_family_source_mc"):
    labels = collections.Counter(
      ex["label"] for ex in harness.load_task(os.path.join(COMMITTED, f"{name}.jsonl")).examples
    )
    assert labels[0] == labels[1], (name, labels)
  books = collections.Counter(
    ex["options"][ex["label"]]
    for ex in harness.load_task(os.path.join(COMMITTED, "demo_family_book_mc.jsonl")).examples
  )
  assert max(books.values()) <= 7 and len(books) > 40


def test_shortcut_baselines_on_known_items():
  from redllm_jax.evaluation import task_baselines  # pylint: disable=g-import-not-at-top

  items = [
    {"inputs": "The river Nile", "options": ["river flows", "a", "mountains high"], "label": 0},
    {"inputs": "Nothing", "options": ["ab", "cd"], "label": 1},
  ]
  shortest = task_baselines.accuracy(items, lambda _, o: -len(o))
  assert shortest == pytest.approx((0 + 0.5) / 2)  # a tie counts half
  assert task_baselines.accuracy(items, task_baselines.overlap) == pytest.approx((1 + 0.5) / 2)
  encode = lambda text: [int(t) for t in text.split()]
  bigram = task_baselines.bigram_scorer([[1, 2, 3], [1, 2, 3, 1, 2]], encode, vocab_size=5)
  # Each text starts after EOS (id 1): from 1, counts (1,1) 2 and (1,2) 3; from 2, (2,3) 2.
  assert bigram("3 1", "2 3") == pytest.approx(np.log(3.1 / 5.5) + np.log(2.1 / 2.5))
  assert bigram("", "2") == pytest.approx(np.log(3.1 / 5.5))  # no prompt: after EOS
  assert (
    task_baselines.accuracy([{"inputs": "1", "options": ["4", "2"], "label": 1}], bigram) == 1.0
  )
  table = task_baselines.baselines(
    [harness.Task("t", harness.MC, [dict(i, label=0) for i in items], collections.Counter())],
    {"length": lambda _, o: float(len(o))},
  )["t"]
  assert table["length"] == pytest.approx((0 + 0.5) / 2)  # "river flows" is not the longest
  assert table["length_reversed"] == pytest.approx((0 + 0.5) / 2)
  assert table["majority_label"] == 1.0 and task_baselines.floor(table) == 1.0


def test_adversarial_distractors_hold_every_shortcut_near_chance():
  """On random candidates whose scores the answer would win, the filter's picks put each
  shortcut's best and worst option on the answer 1/k of the time (within `slack` items),
  where a random pick lets it win far more often."""
  from redllm_jax.evaluation import task_baselines  # pylint: disable=g-import-not-at-top

  rng = np.random.RandomState(0)
  strength = {}  # option text -> two correlated scores, the answer drawn higher
  groups = [
    [lambda _, o: strength[o][0], lambda _, o: strength[o][0] + 0.01 * strength[o][1]],
    [lambda _, o: strength[o][1]],
  ]
  choose = task_baselines.adversarial_distractors(groups, max_misses=0, slack=4)
  items, plain = [], []
  for i in range(800):
    answer = f"a{i}"
    strength[answer] = rng.normal(1.0, 1.0, size=2)
    candidates = [f"c{i}_{j}" for j in range(24)]
    for c in candidates:
      strength[c] = rng.normal(0.0, 1.0, size=2)
    picked = choose("", answer, candidates, 3, rng)
    if picked:
      items.append({"inputs": "", "options": [answer] + picked, "label": 0})
    plain.append({"inputs": "", "options": [answer] + candidates[:3], "label": 0})
  assert len(items) > 300  # dropped: items that would unbalance the ends
  for group in groups:
    for score in group:
      assert task_baselines.accuracy(plain, score) > 0.4  # the shortcut works unfiltered
      for sign in (1, -1):  # its best option, and its worst
        hits = task_baselines.accuracy(items, lambda p, o, s=score: sign * s(p, o))
        assert abs(hits - 0.25) * len(items) <= 4 + 1e-9, (sign, hits, len(items))


def test_balanced_labels_keep_the_answer_and_the_other_options_order():
  items = [
    {"inputs": str(i), "options": [f"x{i}", f"y{i}", f"z{i}", f"w{i}"], "label": i % 2}
    for i in range(10)
  ]
  balanced = task_families.balance_labels(items, np.random.RandomState(0))
  assert sorted(collections.Counter(ex["label"] for ex in balanced).values()) == [2, 2, 3, 3]
  for before, after in zip(items, balanced):
    answer = before["options"][before["label"]]
    assert after["options"][after["label"]] == answer and after["inputs"] == before["inputs"]
    assert [o for o in after["options"] if o != answer] == [
      o for o in before["options"] if o != answer
    ]


# The study's multiple-choice tasks (gin/experiments/study_miniature.gin: demo_[cf]*, but
# demo_cloze_mc, which a bigram wins).
STUDY_MC_TASKS = (
  "demo_continuation_mc",
  "demo_family_source_mc",
  "demo_family_next_mc",
  "demo_family_is_next_mc",
  "demo_family_book_mc",
)


def test_no_shortcut_on_the_study_tasks(demo_root):
  """The referee's bar: every shortcut, read either way, within 5 points of chance."""
  manifest = json.load(open(os.path.join(COMMITTED, "manifest.json")))
  assert (
    manifest["demo_continuation_mc"]["items"] >= 1400
  )  # the bar needs an item SE near 1.2 points
  for name in STUDY_MC_TASKS:
    entry = manifest[name]
    for shortcut, hits in entry["shortcuts"].items():
      assert abs(hits - entry["chance"]) <= 0.05, (name, shortcut, hits)
  for name in ("demo_continuation_mc", "demo_family_next_mc"):  # exactly balanced positions
    labels = collections.Counter(
      ex["label"] for ex in harness.load_task(os.path.join(COMMITTED, f"{name}.jsonl")).examples
    )
    assert max(labels.values()) - min(labels.values()) <= 1, (name, labels)
  assert manifest["demo_cloze_mc"]["floor"] > manifest["demo_cloze_mc"]["chance"] + 0.05
