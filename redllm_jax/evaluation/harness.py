r"""Zero/few-shot downstream harness over JSON-lines task files, several checkpoints side by side.

  python -m redllm_jax.evaluation.harness \
      --checkpoint=red=models/redllm_tiny.gin@/tmp/red/checkpoints/2000 \
      --checkpoint=dec=models/decllm_tiny.gin@/tmp/dec/checkpoints/2000 \
      --tasks='tasks/harness/*.jsonl' --shots=0,2 [--length_normalization] \
      [--vocab=PATH.model] [--output=results.json]
  python -m redllm_jax.evaluation.harness --build_demo_tasks [--out_dir=tasks/harness]

Task files (one JSON object per line; the kind is decided per line by its keys):
  multiple choice  {"inputs": str, "options": [str, ...], "label": int}
  generative       {"inputs": str, "targets": str | [str, ...]}
Lines that are not valid JSON, lack a field, have the wrong types, an out-of-range
label, or a different kind from the file's first valid line are skipped and
counted per reason (reported with the results). A file with no valid line is an error.

Prompts: k exemplars (other examples of the same file, drawn with a fixed seed)
then the question, `"{inputs}\n{answer}\n\n" * k + "{inputs}"`. Inputs and answers
end with EOS as in FLAN finetuning (`--noadd_eos` for plain-text LMs).
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
import sys
from typing import Any, Callable, Optional, Sequence

from absl import app, flags, logging
import numpy as np

from redllm_jax.evaluation import checkpoint_loading

Encode = Callable[[str], list[int]]
Decode = Callable[[Sequence[int]], str]
EOS_ID = 1
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


# ----------------------------------------------------------------------------- batches

def scoring_batch(architecture: str, prompts: Sequence[Sequence[int]],
                  answers: Sequence[Sequence[int]], rows: int) -> dict[str, np.ndarray]:
  """Model features scoring `answers` after `prompts`, padded to `rows` rows and pow2 widths.

  RedLLM: encoder = prompt, decoder = answer. DecLLM: [BOS, prompt, answer] with the
  loss on the answer and `decoder_causal_attention` = 1 on [BOS, prompt].
  """
  n = len(prompts)
  if architecture == "redllm":
    enc_w = checkpoint_loading.bucket_size(max(len(p) for p in prompts))
    dec_w = checkpoint_loading.bucket_size(max(len(a) for a in answers))
    enc = np.zeros((rows, enc_w), np.int32)
    targets = np.zeros((rows, dec_w), np.int32)
    for i in range(n):
      enc[i, :len(prompts[i])] = prompts[i]
      targets[i, :len(answers[i])] = answers[i]
    inputs = np.pad(targets[:, :-1], ((0, 0), (1, 0)))
    return {"encoder_input_tokens": enc, "decoder_input_tokens": inputs,
            "decoder_target_tokens": targets,
            "decoder_loss_weights": (targets > 0).astype(np.float32)}
  width = checkpoint_loading.bucket_size(max(len(p) + len(a) for p, a in zip(prompts, answers)))
  targets = np.zeros((rows, width), np.int32)
  weights = np.zeros((rows, width), np.float32)
  prefix = np.zeros((rows, width), np.int32)
  for i in range(n):
    p, a = len(prompts[i]), len(answers[i])
    targets[i, :p + a] = list(prompts[i]) + list(answers[i])
    weights[i, p:p + a] = 1.0
    prefix[i, :p + 1] = 1
  inputs = np.pad(targets[:, :-1], ((0, 0), (1, 0)))
  return {"decoder_input_tokens": inputs, "decoder_target_tokens": targets,
          "decoder_loss_weights": weights, "decoder_causal_attention": prefix}


@dataclasses.dataclass
class Runner:
  """How the harness reaches a model: a scoring and a greedy-generation function."""

  architecture: str
  score: Callable[[dict], np.ndarray]  # batch -> [rows] log-likelihoods
  generate: Callable[[np.ndarray, np.ndarray, int], np.ndarray]  # tokens, lengths, n -> [b, n]


def make_runner(model, params) -> Runner:
  """A Runner over `model.score_batch` and greedy `model.predict_batch` (jitted)."""
  import jax  # pylint: disable=g-import-not-at-top
  from redllm_jax.decoding import DecodingConfig  # pylint: disable=g-import-not-at-top

  score = jax.jit(model.score_batch)
  predict = jax.jit(model.predict_batch, static_argnames=("cfg", "return_logits"))

  def generate(tokens, lengths, max_new_tokens):
    out = predict(params, tokens, lengths, jax.random.key(0),
                  DecodingConfig(max_new_tokens=max_new_tokens))
    return np.asarray(out.tokens)

  return Runner(model.architecture, lambda b: np.asarray(score(params, b)), generate)


def score_pairs(runner: Runner, prompts: Sequence[list[int]], answers: Sequence[list[int]],
                batch_size: int) -> np.ndarray:
  """Log-likelihood of each answer after its prompt."""
  out = []
  for start in range(0, len(prompts), batch_size):
    p, a = prompts[start:start + batch_size], answers[start:start + batch_size]
    scores = runner.score(scoring_batch(runner.architecture, p, a, batch_size))
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
    tokens, lengths = checkpoint_loading.pad_rows(
        chunk + [[EOS_ID]] * (rows - len(chunk)),
        checkpoint_loading.bucket_size(max(len(p) for p in chunk)))
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


# ----------------------------------------------------------------------------- demo tasks

def build_demo_tasks(out_dir: str, num_options: int = 4, seed: int = 0) -> dict[str, int]:
  """Writes demo_qa_gen.jsonl and demo_qa_mc.jsonl from demo_flan's validation split.

  Questions asked several times become one example with all their answers as
  references (generative) or with the first answer as the label (multiple choice);
  distractors are answers to other questions, never one of this question's answers.
  """
  from redllm_jax.data import demo_corpus  # pylint: disable=g-import-not-at-top
  from redllm_jax.data import paths  # pylint: disable=g-import-not-at-top
  import seqio  # pylint: disable=g-import-not-at-top
  import redllm_jax_tasks  # pylint: disable=g-import-not-at-top,unused-import

  demo_corpus.build(paths.demo_dir())
  ds = seqio.get_mixture_or_task("demo_flan").source.get_dataset(split="validation", shuffle=False)
  answers: dict[str, list[str]] = {}
  for ex in ds.as_numpy_iterator():
    q, a = ex["inputs"].decode("utf-8").strip(), ex["targets"].decode("utf-8").strip()
    if q and a and a not in answers.setdefault(q, []):
      answers[q].append(a)
  questions = sorted(answers)
  pool = sorted({a for q in questions for a in answers[q]})
  rng = np.random.RandomState(seed)
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "demo_qa_gen.jsonl"), "w") as f:
    for q in questions:
      f.write(json.dumps({"inputs": q, "targets": answers[q]}) + "\n")
  written = 0
  with open(os.path.join(out_dir, "demo_qa_mc.jsonl"), "w") as f:
    for q in questions:
      candidates = [a for a in pool if a not in answers[q]]
      if len(candidates) < num_options - 1:
        continue
      picks = rng.choice(len(candidates), num_options - 1, replace=False)
      options = [answers[q][0]] + [candidates[i] for i in picks]
      order = rng.permutation(num_options)
      options = [options[i] for i in order]
      f.write(json.dumps({"inputs": q, "options": options,
                          "label": int(np.where(order == 0)[0][0])}) + "\n")
      written += 1
  return {"generative": len(questions), "multiple_choice": written}


# ----------------------------------------------------------------------------- command

def define_flags() -> None:
  """Command-line flags (defined only when run as a command, so imports never collide)."""
  flags.DEFINE_multi_string(
      "checkpoint", [], "NAME=GIN_FILE[,GIN_FILE...]@CHECKPOINT_PATH; repeat for side-by-side.")
  flags.DEFINE_string("tasks", "tasks/harness/*.jsonl", "Glob of task files.")
  flags.DEFINE_list("shots", ["0"], "Numbers of exemplars, e.g. 0,5.")
  flags.DEFINE_string("vocab", None, "SentencePiece model (default: the demo vocabulary).")
  flags.DEFINE_bool("length_normalization", False, "Multiple choice by mean token log-likelihood.")
  flags.DEFINE_bool("add_eos", True, "End inputs and answers with EOS (FLAN format).")
  flags.DEFINE_integer("batch_size", 16, "Rows per scoring/decoding batch.")
  flags.DEFINE_integer("max_new_tokens", 32, "Generative tasks: tokens to decode.")
  flags.DEFINE_integer("max_input_length", 512, "Prompt tokens kept (from the right).")
  flags.DEFINE_string("output", None, "Write results JSON here (and .md table next to it).")
  flags.DEFINE_bool("build_demo_tasks", False, "Write the demo task files and exit.")
  flags.DEFINE_string("out_dir", "tasks/harness", "Where --build_demo_tasks writes.")


def _load_runner(spec: str) -> tuple[str, Runner]:
  name, model, params = checkpoint_loading.load_checkpoint_spec(spec)
  return name, make_runner(model, params)


def vocabulary_functions(path: Optional[str] = None):
  """(encode, decode) of a SentencePiece model; the demo vocabulary by default."""
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  from redllm_jax.data import vocabulary  # pylint: disable=g-import-not-at-top

  path = path or vocabulary.demo_vocab_path()
  vocabulary.check_sentencepiece_model(path)
  sp = spm.SentencePieceProcessor(model_file=path)
  return sp.encode, lambda ids: sp.decode(list(ids))


def main(argv: Sequence[str]) -> None:
  del argv
  from redllm_jax import gin_utils  # pylint: disable=g-import-not-at-top
  F = flags.FLAGS  # pylint: disable=invalid-name
  logging.set_verbosity(logging.WARNING)
  try:
    if F.build_demo_tasks:
      print(json.dumps(build_demo_tasks(F.out_dir)))
      return
    if not F.checkpoint:
      raise gin_utils.ConfigError("give at least one --checkpoint=NAME=GIN_FILE@PATH")
    files = sorted(glob.glob(F.tasks))
    if not files:
      raise TaskFileError(f"no task file matches {F.tasks}")
    tasks = [load_task(f) for f in files]
    encode, decode = vocabulary_functions(F.vocab)
    runners = dict(_load_runner(spec) for spec in F.checkpoint)
    settings = Settings(add_eos=F.add_eos, batch_size=F.batch_size,
                        max_new_tokens=F.max_new_tokens, max_input_length=F.max_input_length)
    results = run_harness(runners, tasks, encode, decode, [int(k) for k in F.shots],
                          settings, F.length_normalization)
  except (gin_utils.ConfigError, TaskFileError, ValueError, FileNotFoundError) as e:
    print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
    sys.exit(2)
  table = format_table(results)
  print(table)
  for task in tasks:
    if task.skipped:
      print(f"{task.name}: skipped {sum(task.skipped.values())} malformed lines {dict(task.skipped)}")
  if F.output:
    with open(F.output, "w") as f:
      json.dump(results, f, indent=1)
    with open(os.path.splitext(F.output)[0] + ".md", "w") as f:
      f.write(table + "\n")


if __name__ == "__main__":
  define_flags()
  app.run(main)
