r"""Builds the demo harness tasks and their manifest from held-out text only.

  python -m redllm_jax.demo.harness_tasks [--out_dir=tasks/harness]

From the validation splits of demo_redpajama_{wikipedia,book} (units that also occur in
a train split are dropped, `task_families`):
  demo_continuation_mc   1-3 units, the true next one among 4 (HellaSwag / StoryCloze)
  demo_cloze_greedy / _mc  the final word of a passage: greedy exact match / among 10 (LAMBADA)
  (continuation's and demo_family_next_mc's distractors adversarially filtered:
   `task_baselines.adversarial_distractors`)
  demo_family_*          the instruction families' eval versions (`FAMILIES`; the
                         tuned ones train in demo_flan_families, the others are held out)
From demo_flan's validation split (chatterbot): demo_qa_gen / demo_qa_mc.
Each task is a JSON-lines file and its lm-eval YAML (`harness.task_yaml`), so that
`lm_eval_model`'s command reads them with `--include_path tasks/harness`;
manifest.json gives each one's kind, chance, family, split, length in tokens and, for
multiple choice, its shortcut table and floor.
"""

import functools
import json
import os
import zlib
from typing import Callable, Mapping, Sequence

from absl import flags
import numpy as np
import seqio
import sentencepiece as spm

import redllm_jax_tasks  # noqa: F401  pylint: disable=unused-import  # registers the demo tasks
from redllm_jax import gin_utils
from redllm_jax.demo import corpus as demo_corpus
from redllm_jax.data import paths
from redllm_jax.demo import task_families
from redllm_jax.data import vocabulary
from redllm_jax.evaluation import harness
from redllm_jax.evaluation import task_baselines

_OUT_DIR = flags.DEFINE_string("out_dir", "tasks/harness", "Where the task files go.")
PER_SOURCE = 300  # items per source and task (fewer where the split has fewer)
# Continuation carries the study's bar (3 SE above its floor): every held-out unit the
# filter can serve (the Bible's 2678 give about 1400), so the smallest item SE.
CONTINUATION_PER_SOURCE = 2000
# Distractor candidates an adversarially filtered item picks from: with 128 the filter
# keeps 1414 continuation items (48 kept 1306), every shortcut within 0.2 of chance.
ADVERSARIAL_CANDIDATES = 128
MANIFEST = "manifest.json"


def build_qa_tasks(num_options: int = 4, seed: int = 0) -> dict[str, list[dict]]:
  """demo_qa_{gen,mc} from demo_flan's validation split.

  Questions asked several times become one example with all their answers as
  references (generative) or with the first answer as the label (multiple choice);
  distractors are answers to other questions, never one of this question's answers.
  """
  ds = seqio.get_mixture_or_task("demo_flan").source.get_dataset(split="validation", shuffle=False)
  answers: dict[str, list[str]] = {}
  for ex in ds.as_numpy_iterator():
    q, a = ex["inputs"].decode("utf-8").strip(), ex["targets"].decode("utf-8").strip()
    if q and a and a not in answers.setdefault(q, []):
      answers[q].append(a)
  questions = sorted(answers)
  pool = sorted({a for q in questions for a in answers[q]})
  rng = np.random.RandomState(seed)
  generative = [{"inputs": q, "targets": answers[q]} for q in questions]
  multiple_choice = []
  for q in questions:
    candidates = [a for a in pool if a not in answers[q]]
    if len(candidates) < num_options - 1:
      continue
    picks = rng.choice(len(candidates), num_options - 1, replace=False)
    options = [answers[q][0]] + [candidates[i] for i in picks]
    order = rng.permutation(num_options)
    multiple_choice.append(
      {
        "inputs": q,
        "options": [options[i] for i in order],
        "label": int(np.where(order == 0)[0][0]),
      }
    )
  return {"demo_qa_gen": generative, "demo_qa_mc": multiple_choice}


def split_texts(split: str) -> dict[str, list[str]]:
  """Each RedPajama demo subset's documents of `split`, through its seqio source."""
  return {
    s: [
      ex["text"].decode("utf-8")
      for ex in seqio.get_mixture_or_task(f"demo_redpajama_{s}")
      .source.get_dataset(split=split, shuffle=False)
      .as_numpy_iterator()
    ]
    for s in (task_families.WIKIPEDIA, task_families.BIBLE)
  }


def held_out_documents() -> list[task_families.Document]:
  """The validation documents with every unit that occurs in its source's train split
  dropped (the Bible repeats formulas such as "And the LORD spake unto Moses, saying,")."""
  train = {source: "\n".join(texts) for source, texts in split_texts("train").items()}
  docs = []
  for source, texts in split_texts("validation").items():
    docs += task_families.documents({source: texts}, keep=lambda unit: unit not in train[source])
  return docs


def token_length(vocab_file: str) -> Callable[[str], int]:
  """Pieces of `text` in a SentencePiece vocabulary (no EOS), cached."""
  sp = spm.SentencePieceProcessor(model_file=vocab_file)
  return functools.lru_cache(maxsize=None)(lambda text: len(sp.encode(text)))


def _rng(name: str, seed: int) -> np.random.RandomState:
  return np.random.RandomState([seed, zlib.crc32(name.encode())])


def build_corpus_tasks(
  docs: list[task_families.Document],
  length: Callable[[str], int],
  shortcuts: Sequence[Sequence[task_baselines.Scorer]],
  seed: int = 0,
) -> dict[str, list[dict]]:
  """Every task from the held-out demo documents, by file name. Continuation and the
  `next` family draw their distractors adversarially against the groups of `shortcuts`
  (among `ADVERSARIAL_CANDIDATES` other documents' units and their own document's), with
  the answer's position exactly balanced; cloze and the other families keep their plain
  draws (docs/study_tasks.md: why cloze is not filtered), their floors in the manifest
  beside chance."""

  def adversarial(build: Callable[..., list[dict]], name: str, per_source: int) -> list[dict]:
    rng = _rng(name, seed)
    items = build(
      docs,
      rng,
      per_source,
      length,
      candidates_per_item=ADVERSARIAL_CANDIDATES,
      choose=task_baselines.adversarial_distractors(shortcuts, max_misses=2),
    )
    return task_families.balance_labels(items, rng)

  tasks = {
    "demo_continuation_mc": adversarial(
      task_families.continuation, "continuation", CONTINUATION_PER_SOURCE
    )
  }
  cloze = task_families.cloze(docs, _rng("cloze", seed), PER_SOURCE, length)
  tasks["demo_cloze_greedy"] = [
    {"inputs": x["inputs"], "continuation": x["targets"][0]} for x in cloze
  ]
  tasks["demo_cloze_mc"] = [{k: x[k] for k in ("inputs", "options", "label")} for x in cloze]
  for family, build in task_families.FAMILY_BUILDERS.items():
    items = (
      adversarial(build, family, PER_SOURCE)
      if family == "next"
      else build(docs, _rng(family, seed), PER_SOURCE, length)
    )
    tasks[f"demo_family_{family}_{'mc' if 'label' in items[0] else 'gen'}"] = items
  return tasks


def _family(name: str) -> str:
  for prefix, family in (
    ("demo_qa", "chatterbot_qa"),
    ("demo_continuation", "continuation"),
    ("demo_cloze", "cloze"),
  ):
    if name.startswith(prefix):
      return family
  return name[len("demo_family_") :].rsplit("_", 1)[0]


def _answers(task: harness.Task, ex: dict) -> list[str]:
  """An item's answers: its options, its references or its continuation."""
  return (
    ex["options"]
    if task.kind == harness.MC
    else ex["targets"]
    if task.kind == harness.GEN
    else [ex["continuation"]]
  )


def majority_baseline(task: harness.Task) -> float:
  """The exact match of the best constant answer (the most frequent reference)."""
  references = [{harness.normalize_answer(t) for t in _answers(task, ex)} for ex in task.examples]
  answers = set().union(*references)
  return max(sum(a in refs for refs in references) for a in answers) / len(task.examples)


def manifest_entry(
  task: harness.Task,
  lengths: dict[str, Callable[[str], int]],
  shortcuts: Mapping[str, task_baselines.Scorer],
) -> dict:
  """Kind, chance (`harness.chance_score`), family, split, items, the longest prompt
  plus answer in tokens of each demo vocabulary and, for multiple choice, what each
  shortcut scores (`task_baselines.baselines`) and the best of them (`floor`)."""
  family = _family(task.name)
  entry = {
    "kind": task.kind,
    "chance": harness.chance_score(task),
    "family": family,
    "in_tuning_mixture": family in task_families.TUNED_FAMILIES,
    "held_out_family": task_families.FAMILIES.get(family, False),
    "split": "validation",
    "items": len(task.examples),
  }
  if task.kind != harness.MC:
    entry["majority_baseline"] = majority_baseline(task)
  else:
    (row,) = task_baselines.baselines([task], shortcuts).values()
    entry["shortcuts"] = {k: round(v, 4) for k, v in row.items()}
    entry["floor"] = round(task_baselines.floor(row), 4)
  for pieces, length in lengths.items():
    answers = [_answers(task, ex) for ex in task.examples]
    totals = [length(ex["inputs"]) + max(map(length, a)) for ex, a in zip(task.examples, answers)]
    entry[f"tokens_{pieces}"] = {"max": max(totals), "mean": round(float(np.mean(totals)), 1)}
  return entry


def build_demo_tasks(out_dir: str, seed: int = 0) -> dict[str, int]:
  """Writes every demo task file, its YAML and manifest.json; returns the item counts."""
  root = paths.demo_dir()
  demo_corpus.build(root)
  lengths = {
    pieces: token_length(vocabulary.demo_vocab_file(root, pieces))
    for pieces in vocabulary.DEMO_VOCAB_SIZES
  }
  train = [t for texts in split_texts("train").values() for t in texts]
  shortcuts = task_baselines.shortcut_scorers(
    task_baselines.bigrams(
      train,
      {f"bigram_{p}": vocabulary.demo_vocab_file(root, p) for p in vocabulary.DEMO_VOCAB_SIZES},
    )
  )
  tasks = build_qa_tasks(seed=seed)
  tasks.update(
    build_corpus_tasks(
      held_out_documents(),
      lengths[vocabulary.DEMO_VOCAB_SIZE],
      task_baselines.shortcut_groups(shortcuts),
      seed,
    )
  )
  manifest = {}
  for name, examples in sorted(tasks.items()):
    kind = (
      harness.MC
      if "label" in examples[0]
      else harness.GREEDY
      if "continuation" in examples[0]
      else harness.GEN
    )
    # The YAMLs read the data relative to the working directory: run lm-eval from the repo.
    harness.write_task_files(
      out_dir, name, kind, examples, data_file=os.path.join(out_dir, f"{name}.jsonl")
    )
    manifest[name] = manifest_entry(
      harness.load_task(os.path.join(out_dir, f"{name}.jsonl")), lengths, shortcuts
    )
  manifest["demo_qa_gen"]["note"] = manifest["demo_qa_mc"]["note"] = (
    "chatterbot Q/A: tuned by demo_flan, not part of demo_flan_families"
  )
  for name in ("demo_cloze_greedy", "demo_family_blank_gen"):
    manifest[name]["note"] = (
      "chance 0 (a guess among all words); majority_baseline is "
      "the best constant answer's exact match"
    )
  with open(os.path.join(out_dir, MANIFEST), "w") as f:
    json.dump(manifest, f, indent=1, sort_keys=True)
    f.write("\n")
  return {name: len(examples) for name, examples in sorted(tasks.items())}


def shortcut_table(manifest: Mapping[str, Mapping]) -> str:
  """Markdown: per multiple-choice task, chance, what each shortcut scores (best option /
  worst option) and the floor, in %."""
  rows = {n: e for n, e in sorted(manifest.items()) if "shortcuts" in e}
  names = sorted(
    {
      k
      for e in rows.values()
      for k in e["shortcuts"]
      if k not in ("chance", "majority_label") and not k.endswith("_reversed")
    }
  )
  lines = [
    "| task | items | chance | majority position | " + " | ".join(names) + " | floor |",
    "|---|---:|---:|---:|" + "---:|" * (len(names) + 1),
  ]
  for name, e in rows.items():
    cut = e["shortcuts"]
    cells = [f"{100 * cut[k]:.1f} / {100 * cut[k + '_reversed']:.1f}" for k in names]
    lines.append(
      f"| `{name}` | {e['items']} | {100 * e['chance']:.1f} | "
      f"{100 * cut['majority_label']:.1f} | " + " | ".join(cells) + f" | {100 * e['floor']:.1f} |"
    )
  return "\n".join(lines)


def main() -> None:
  print(json.dumps(build_demo_tasks(_OUT_DIR.value)))
  with open(os.path.join(_OUT_DIR.value, MANIFEST)) as f:
    print(shortcut_table(json.load(f)))


if __name__ == "__main__":
  gin_utils.run_flags(main)
