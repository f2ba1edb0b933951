r"""Zero/few-shot downstream harness over JSON-lines task files, several checkpoints side by side.

  python -m redllm_jax.evaluation.harness --gin_file=runs/harness.gin \
      --gin.CHECKPOINTS="{'red': '/tmp/red', 'dec': '/tmp/dec'}" \
      [--gin.HARNESS_TASKS=\"tasks/harness/*.jsonl\" --gin.SHOTS=[0,2]] \
      [--gin.OUTPUT=\"results.json\" --gin.harness.compare.length_normalization=True]

Each checkpoint says which model it holds (its `meta`): no model gin is needed. The
vocabulary is `get_vocabulary()` (the demo one in runs/harness.gin; bind
`get_vocabulary.demo = False` and `vocab_path.path` for another).
`python -m redllm_jax.evaluation.demo_tasks` rebuilds the demo task files.

Task files (one JSON object per line; the kind is decided per line by its keys):
  multiple choice  {"inputs": str, "options": [str, ...], "label": int}
  generative       {"inputs": str, "targets": str | [str, ...]}
Lines that are not valid JSON, lack a field, have the wrong types, an out-of-range
label, or a different kind from the file's first valid line are skipped and
counted per reason (reported with the results). A file with no valid line is an error.

Prompts: k exemplars (other examples of the same file, drawn with a fixed seed)
then the question, `"{inputs}\n{answer}\n\n" * k + "{inputs}"`. Inputs and answers
end with EOS as in FLAN finetuning (`Settings.add_eos = False` for plain-text LMs).
- RedLLM: the prompt goes to the encoder; the answer is scored (or decoded) on the decoder.
- DecLLM (with or without BiAttn): one stream [BOS, prompt, answer]; the loss sits on
  the answer and `decoder_causal_attention` marks [BOS, prompt] (used by BiAttn).
Multiple choice picks the option with the highest log-likelihood (`model.score_batch`),
or the highest mean per-token log-likelihood with length normalisation; both
accuracies are reported. Generative tasks decode greedily (`model.predict_batch`) and
report exact match and token F1 (SQuAD-style normalisation), best over references.
"""
import collections
import dataclasses
import glob
import json
import os
import re
import string
from typing import Any, Callable, Mapping, Optional, Sequence

from absl import logging
import gin
import jax
import numpy as np
import seqio
import sentencepiece as spm

from redllm_jax import checkpoints as checkpoint_lib
from redllm_jax import gin_utils
from redllm_jax.data import vocabulary as vocabulary_lib
from redllm_jax.decoding import DecodingConfig
from redllm_jax.evaluation import windows
from redllm_jax.functional import EOS_ID
from redllm_jax.models import pad_rows

Encode = Callable[[str], list[int]]
Decode = Callable[[Sequence[int]], str]
SEPARATOR = "\n\n"
MC, GEN = "multiple_choice", "generative"


class TaskFileError(ValueError):
  """A task file that cannot be used at all (one line)."""


@dataclasses.dataclass
class Task:
  name: str
  kind: str  # MC or GEN
  examples: list[dict]
  skipped: collections.Counter


def _parse_line(line: str) -> tuple[Optional[dict], str]:
  """(example, kind) or (None, reason)."""
  try:
    ex = json.loads(line)
  except json.JSONDecodeError:
    return None, "bad_json"
  if not isinstance(ex, dict) or not isinstance(ex.get("inputs"), str):
    return None, "missing_inputs"
  if "options" in ex or "label" in ex:
    options, label = ex.get("options"), ex.get("label")
    if (not isinstance(options, list) or len(options) < 2
        or not all(isinstance(o, str) and o for o in options)):
      return None, "bad_options"
    if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(options):
      return None, "bad_label"
    return {"inputs": ex["inputs"], "options": options, "label": label}, MC
  targets = ex.get("targets")
  if isinstance(targets, str):
    targets = [targets]
  if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
    return None, "missing_targets"
  return {"inputs": ex["inputs"], "targets": targets}, GEN


def load_task(path: str) -> Task:
  """Reads a task file; malformed lines are skipped and counted in `Task.skipped`."""
  if not os.path.exists(path):
    raise TaskFileError(f"task file not found: {path}")
  examples, skipped, kind = [], collections.Counter(), None
  with open(path, "rb") as f:
    for raw in f:
      if not raw.strip():
        continue
      try:  # A replacement character would silently change what is scored.
        line = raw.decode("utf-8")
      except UnicodeDecodeError:
        skipped["bad_utf8"] += 1
        continue
      ex, what = _parse_line(line)
      if ex is None:
        skipped[what] += 1
      elif kind not in (None, what):
        skipped["mixed_kind"] += 1
      else:
        kind = what
        examples.append(ex)
  if not examples:
    raise TaskFileError(f"no valid example in {path} (skipped: {dict(skipped) or 'empty file'})")
  if skipped:
    logging.warning("%s: skipped %d malformed lines %s", path, sum(skipped.values()), dict(skipped))
  name = os.path.basename(path).split(".")[0]
  return Task(name, kind, examples, skipped)


# ----------------------------------------------------------------------------- prompts

def chance_score(task: Task) -> float:
  """The expected score of guessing: 1/options for multiple choice, 0 for exact match."""
  if task.kind != MC:
    return 0.0
  return float(np.mean([1.0 / len(ex["options"]) for ex in task.examples]))


def answer_of(ex: dict) -> str:
  return ex["options"][ex["label"]] if "options" in ex else ex["targets"][0]


def build_prompt(task: Task, index: int, shots: int, seed: int = 0) -> str:
  """k exemplars from the rest of the task (fixed per example and seed), then the question."""
  others = [i for i in range(len(task.examples)) if i != index]
  rng = np.random.RandomState(seed * 1_000_003 + index)
  chosen = rng.choice(others, size=min(shots, len(others)), replace=False) if shots else []
  parts = [f"{task.examples[i]['inputs']}\n{answer_of(task.examples[i])}" for i in chosen]
  return SEPARATOR.join(parts + [task.examples[index]["inputs"]])


@gin.configurable
@dataclasses.dataclass(frozen=True)
class Settings:
  shots: int = 0
  add_eos: bool = True
  max_input_length: int = 512  # Prompts are cut from the left (earliest exemplars first).
  max_target_length: int = 64
  max_new_tokens: int = 32
  batch_size: int = 16
  seed: int = 0


def _ids(encode: Encode, text: str, add_eos: bool) -> list[int]:
  return list(encode(text)) + ([EOS_ID] if add_eos else [])


def _prompt_ids(encode: Encode, text: str, s: Settings) -> list[int]:
  ids = _ids(encode, text, s.add_eos)
  return ids[-s.max_input_length:]


@dataclasses.dataclass
class Runner:
  """How the harness reaches a model: its prefix-LM batches, scoring and greedy decoding.

  RedLLM puts the prompt in the encoder and the answer in the decoder; DecLLM reads
  [BOS, prompt, answer] with the loss on the answer (`model.prefix_lm_batch`).
  """

  batch: Callable[..., dict]  # (prompts, answers, rows, pad_width) -> model features
  score: Callable[[dict], np.ndarray]  # batch -> [rows] log-likelihoods
  generate: Callable[[np.ndarray, np.ndarray, int], np.ndarray]  # tokens, lengths, n -> [b, n]


def make_runner(model, params) -> Runner:
  """A Runner over `model.score_batch` and greedy `model.predict_batch` (jitted)."""
  score = jax.jit(model.score_batch)
  predict = jax.jit(model.predict_batch, static_argnames=("cfg", "return_logits"))
  # Converted once: every DecodingConfig below has the default weight layout.
  decoding_params = model.decoding_params(params, DecodingConfig())

  def generate(tokens, lengths, max_new_tokens):
    out = predict(decoding_params, tokens, lengths, jax.random.key(0),
                  DecodingConfig(max_new_tokens=max_new_tokens))
    return np.asarray(out.tokens)

  return Runner(model.prefix_lm_batch, lambda b: np.asarray(score(params, b)), generate)


def score_pairs(runner: Runner, prompts: Sequence[list[int]], answers: Sequence[list[int]],
                batch_size: int) -> np.ndarray:
  """Log-likelihood of each answer after its prompt."""
  out = []
  for start in range(0, len(prompts), batch_size):
    p, a = prompts[start:start + batch_size], answers[start:start + batch_size]
    scores = runner.score(runner.batch(p, a, batch_size, windows.bucket_size))
    out.append(np.asarray(scores)[:len(p)])
  return np.concatenate(out) if out else np.zeros(0)


# ----------------------------------------------------------------------------- metrics

def normalize_answer(text: str) -> str:
  """SQuAD normalisation: lower case, no punctuation, articles or extra spaces."""
  text = "".join(c for c in text.lower() if c not in set(string.punctuation))
  text = re.sub(r"\b(a|an|the)\b", " ", text)
  return " ".join(text.split())


def token_f1(prediction: str, reference: str) -> float:
  pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
  if not pred or not ref:
    return float(pred == ref)
  common = sum((collections.Counter(pred) & collections.Counter(ref)).values())
  if not common:
    return 0.0
  precision, recall = common / len(pred), common / len(ref)
  return 2 * precision * recall / (precision + recall)


def choose(scores: np.ndarray, lengths: np.ndarray, length_normalization: bool) -> int:
  """Index of the best option: total log-likelihood, or mean per token."""
  values = scores / np.maximum(lengths, 1) if length_normalization else scores
  return int(np.argmax(values))


def evaluate_task(runner: Runner, task: Task, encode: Encode, decode: Decode,
                  settings: Settings, length_normalization: bool = False) -> dict[str, Any]:
  """Scores of one task: accuracy (and length-normalised accuracy) or exact match / F1."""
  s = settings
  prompts = [_prompt_ids(encode, build_prompt(task, i, s.shots, s.seed), s)
             for i in range(len(task.examples))]
  result: dict[str, Any] = {"kind": task.kind, "examples": len(task.examples), "shots": s.shots,
                            "skipped_lines": dict(task.skipped)}
  if task.kind == MC:
    pair_prompts, pair_answers, owner = [], [], []
    for i, ex in enumerate(task.examples):
      for option in ex["options"]:
        pair_prompts.append(prompts[i])
        pair_answers.append(_ids(encode, option, s.add_eos)[:s.max_target_length])
        owner.append(i)
    scores = score_pairs(runner, pair_prompts, pair_answers, s.batch_size)
    lengths = np.array([len(a) for a in pair_answers])
    owner = np.array(owner)
    correct = {False: 0, True: 0}
    predictions = []
    for i, ex in enumerate(task.examples):
      rows = owner == i
      for norm in (False, True):
        correct[norm] += choose(scores[rows], lengths[rows], norm) == ex["label"]
      predictions.append(choose(scores[rows], lengths[rows], length_normalization))
    n = len(task.examples)
    result.update(accuracy=correct[False] / n, accuracy_length_normalized=correct[True] / n,
                  score=(correct[length_normalization] / n), predictions=predictions)
    return result
  exact, f1, outputs = [], [], []
  for start in range(0, len(prompts), s.batch_size):
    chunk = prompts[start:start + s.batch_size]
    rows = s.batch_size
    tokens, lengths = pad_rows(chunk + [[EOS_ID]] * (rows - len(chunk)),
                               windows.bucket_size(max(len(p) for p in chunk)))
    generated = runner.generate(tokens, lengths, s.max_new_tokens)
    for row in np.asarray(generated)[:len(chunk)]:
      ids = [int(t) for t in row]
      ids = ids[:ids.index(EOS_ID)] if EOS_ID in ids else ids
      outputs.append(decode([t for t in ids if t > 0]))
  for ex, text in zip(task.examples, outputs):
    exact.append(max(float(normalize_answer(text) == normalize_answer(t)) for t in ex["targets"]))
    f1.append(max(token_f1(text, t) for t in ex["targets"]))
  result.update(exact_match=float(np.mean(exact)), f1=float(np.mean(f1)),
                score=float(np.mean(exact)), predictions=outputs)
  return result


def run_harness(runners: dict[str, Runner], tasks: Sequence[Task], encode: Encode,
                decode: Decode, shots: Sequence[int], settings: Settings = Settings(),
                length_normalization: bool = False) -> dict[str, dict[str, Any]]:
  """{checkpoint: {"task@kshot": result, ..., "average": mean score}}."""
  results = {}
  for name, runner in runners.items():
    per = {}
    for k in shots:
      s = dataclasses.replace(settings, shots=k)
      for task in tasks:
        per[f"{task.name}@{k}shot"] = evaluate_task(runner, task, encode, decode, s,
                                                    length_normalization)
    per["average"] = float(np.mean([r["score"] for r in per.values()]))
    results[name] = per
  return results


def format_table(results: dict[str, dict[str, Any]]) -> str:
  """Markdown table: one row per task@shots (score: accuracy or exact match), one column per checkpoint."""
  names = list(results)
  keys = [k for k in next(iter(results.values())) if k != "average"]
  lines = ["| task | metric | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
  for key in keys:
    first = results[names[0]][key]
    metrics = (["accuracy", "accuracy_length_normalized"] if first["kind"] == MC
               else ["exact_match", "f1"])
    for metric in metrics:
      cells = [f"{100 * results[n][key][metric]:.2f}" for n in names]
      lines.append(f"| {key} | {metric} | " + " | ".join(cells) + " |")
  lines.append("| **average** | score | " + " | ".join(
      f"{100 * results[n]['average']:.2f}" for n in names) + " |")
  return "\n".join(lines)


# ----------------------------------------------------------------------------- command

def vocabulary_functions(path: Optional[str] = None):
  """(encode, decode) of a SentencePiece model; the demo vocabulary by default."""
  path = path or vocabulary_lib.demo_vocab_path()
  vocabulary_lib.check_sentencepiece_model(path)
  sp = spm.SentencePieceProcessor(model_file=path)
  return sp.encode, lambda ids: sp.decode(list(ids))


@gin.configurable
def compare(checkpoints: Mapping[str, str] = gin.REQUIRED, tasks: str = gin.REQUIRED,
            vocabulary: seqio.Vocabulary = gin.REQUIRED, shots: Sequence[int] = (0,),
            output: Optional[str] = None, length_normalization: bool = False,
            settings: Settings = Settings()) -> dict[str, dict[str, Any]]:
  """Every checkpoint (name -> path) on every task file matching `tasks`, at each shot count."""
  files = sorted(glob.glob(tasks))
  if not files:
    raise TaskFileError(f"no task file matches {tasks}")
  loaded = [load_task(f) for f in files]
  runners = {name: make_runner(*checkpoint_lib.load_model_and_params(path))
             for name, path in checkpoints.items()}
  results = run_harness(runners, loaded, vocabulary.encode, vocabulary.decode, shots, settings,
                        length_normalization)
  table = format_table(results)
  print(table)
  for task in loaded:
    if task.skipped:
      print(f"{task.name}: skipped {sum(task.skipped.values())} malformed lines "
            f"{dict(task.skipped)}")
  if output:
    with open(output, "w") as f:
      json.dump(results, f, indent=1)
    with open(os.path.splitext(output)[0] + ".md", "w") as f:
      f.write(table + "\n")
  return results


def main() -> None:
  try:
    compare()
  except (TaskFileError, FileNotFoundError) as e:
    raise gin_utils.ConfigError(gin_utils.first_line(e)) from None


if __name__ == "__main__":
  gin_utils.run(__spec__.name)
