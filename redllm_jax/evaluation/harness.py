r"""Zero/few-shot downstream harness over JSON-lines task files, through lm-eval, several
checkpoints side by side.

  python -m redllm_jax.evaluation.harness --gin_file=runs/harness.gin \
      --gin.CHECKPOINTS="{'red': '/tmp/red', 'dec': '/tmp/dec'}" \
      [--gin.HARNESS_TASKS=\"tasks/harness/*.jsonl\" --gin.SHOTS=[0,2]] \
      [--gin.OUTPUT=\"results.json\" --gin.harness.compare.mc_metric=\"acc_norm\"]

Each checkpoint says which model it holds (its `meta`) and which vocabulary it was
trained with (`vocabulary.vocabulary_path`): no model gin and no vocabulary flag
are needed (`harness.compare.vocab` overrides the vocabulary, checked against the
checkpoint's record). `python -m redllm_jax.demo.harness_tasks` rebuilds the demo
task files and their lm-eval YAMLs.

Task files (one JSON object per line; the kind is decided per line by its keys):
  multiple choice  {"inputs": str, "options": [str, ...], "label": int}
  generative       {"inputs": str, "targets": str | [str, ...]}
  greedy           {"inputs": str, "continuation": str}   (LAMBADA style)
Lines that are not valid JSON, lack a field, have the wrong types, an out-of-range
label, or a different kind from the file's first valid line are skipped and
counted per reason (reported with the results). A file with no valid line is an error.

Scoring is lm-eval's (`lm_eval.simple_evaluate`, the `redllm_jax` model of
`lm_eval_model.py`): the valid lines of each file become an lm-eval task (`task_yaml`:
`dataset_path: json` over a clean copy of the file). Prompts are lm-eval's: k
exemplars drawn from the other items of the file (`fewshot_random_seed`), then the
question, `"{inputs}\n{answer}\n\n" * k + "{inputs}"`; with `Settings.add_eos` the
prompt and the answer end with EOS, as FLAN features do.
- Multiple choice: each option's log-likelihood after the prompt; `accuracy` is
  lm-eval's `acc` (highest total log-likelihood), `accuracy_length_normalized` its
  `acc_norm` (highest log-likelihood per character of the option) and, when
  `mc_metric="acc_mutual_info"` asks for it, `accuracy_mutual_info` its
  `acc_mutual_info` (highest log P(option | prompt) - log P(option), the option's
  log-likelihood after an empty prompt subtracted: Holtzman et al. 2021's PMI, which
  takes out how likely an option is on its own; it doubles the requests). A task's
  `score` is the `mc_metric` one.
- Generative: greedy cached decoding until EOS, a blank line or `max_new_tokens`;
  exact match and token F1 after SQuAD normalisation, best over the references
  (`squad_scores`, lm-eval's `process_results`).
- Greedy: the continuation (e.g. a passage's final word) follows the prompt after a
  space; `exact_match` is lm-eval's loglikelihood `acc`, whether greedy decoding
  gives exactly the continuation's tokens, as lm-eval scores LAMBADA (generation
  would run on past the word).
"""

import collections
import dataclasses
import glob
import json
import os
import re
import string
import tempfile
from typing import Any, Mapping, Optional, Sequence

from absl import logging
import gin
import lm_eval  # the `lmeval` extra
from lm_eval.tasks import TaskManager
import numpy as np

from redllm_jax import errors, gin_utils
from redllm_jax.evaluation import lm_eval_model

MC, GEN, GREEDY = "multiple_choice", "generative", "greedy"
METRICS_MODULE = "harness_metrics"  # beside each task YAML, for its `!function`


class TaskFileError(errors.ConfigError):
  """A task file that cannot be used at all (one line, exit code 2)."""


@dataclasses.dataclass
class Task:
  name: str
  kind: str  # MC, GEN or GREEDY
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
    if (
      not isinstance(options, list)
      or len(options) < 2
      or not all(isinstance(o, str) and o for o in options)
    ):
      return None, "bad_options"
    if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(options):
      return None, "bad_label"
    return {"inputs": ex["inputs"], "options": options, "label": label}, MC
  if "continuation" in ex:
    if not isinstance(ex["continuation"], str) or not ex["continuation"].strip():
      return None, "bad_continuation"
    return {"inputs": ex["inputs"], "continuation": ex["continuation"]}, GREEDY
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


def chance_score(task: Task) -> float:
  """The expected score of guessing: 1/options for multiple choice, 0 for exact match."""
  if task.kind != MC:
    return 0.0
  return float(np.mean([1.0 / len(ex["options"]) for ex in task.examples]))


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


def squad_scores(doc: Mapping[str, Any], results: Sequence[str]) -> dict[str, float]:
  """lm-eval `process_results` of a generative task: exact match and token F1 of the
  generation, best over the item's references."""
  text = results[0]
  return {
    "exact_match": max(
      float(normalize_answer(text) == normalize_answer(t)) for t in doc["targets"]
    ),
    "f1": max(token_f1(text, t) for t in doc["targets"]),
  }


# ----------------------------------------------------------------------------- lm-eval tasks

_COMMON_YAML = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data_file}
test_split: test
fewshot_split: test
doc_to_text: "{{{{inputs}}}}"
target_delimiter: {delimiter}
fewshot_delimiter: "\\n\\n"
metadata:
  version: 1
"""
MC_METRICS = {
  "acc": "accuracy",
  "acc_norm": "accuracy_length_normalized",
  "acc_mutual_info": "accuracy_mutual_info",
}  # lm-eval's name -> ours
_MC_YAML = """output_type: multiple_choice
doc_to_choice: "{{options}}"
doc_to_target: label
metric_list:
"""
_METRIC_YAML = """  - metric: {name}
    aggregation: mean
    higher_is_better: true
"""
_KIND_YAML = {
  GREEDY: """output_type: loglikelihood
doc_to_target: "{{continuation}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
""",
  GEN: f"""output_type: generate_until
doc_to_target: "{{{{targets[0]}}}}"
generation_kwargs:
  until: ["\\n\\n"]
process_results: !function {METRICS_MODULE}.squad_scores
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
  - metric: f1
    aggregation: mean
    higher_is_better: true
""",
}


def mc_metrics(reported: str) -> tuple[str, ...]:
  """lm-eval's multiple-choice metrics a task computes: acc and acc_norm always, and the
  `reported` one (mutual information costs a second, unconditional pass)."""
  if reported not in MC_METRICS:
    raise errors.ConfigError(f"mc_metric={reported!r}: expected one of {', '.join(MC_METRICS)}")
  return tuple(dict.fromkeys(("acc", "acc_norm", reported)))


def task_yaml(name: str, kind: str, data_file: str, mc_metric: str = "acc") -> str:
  """The lm-eval task config of a harness task file (relative paths: from the working
  directory). Generative tasks read `squad_scores` through `METRICS_MODULE`.py beside it;
  a greedy task's continuation follows its prompt after a space, answers after a newline."""
  head = _COMMON_YAML.format(
    name=name,
    data_file=json.dumps(data_file),
    delimiter=json.dumps(" " if kind == GREEDY else "\n"),
  )
  if kind in _KIND_YAML:
    return head + _KIND_YAML[kind]
  return head + _MC_YAML + "".join(_METRIC_YAML.format(name=m) for m in mc_metrics(mc_metric))


def write_task_files(
  out_dir: str,
  name: str,
  kind: str,
  examples: Sequence[dict],
  data_file: Optional[str] = None,
  mc_metric: str = "acc",
) -> None:
  """`name`.jsonl (`examples`), `name`.yaml (reading `data_file`, by default that copy's
  absolute path; multiple choice also computing `mc_metric`) and the metrics module,
  into `out_dir`."""
  os.makedirs(out_dir, exist_ok=True)
  data = os.path.join(out_dir, f"{name}.jsonl")
  with open(data, "w") as f:
    f.writelines(json.dumps(ex) + "\n" for ex in examples)
  with open(os.path.join(out_dir, f"{name}.yaml"), "w") as f:
    f.write(task_yaml(name, kind, data_file or os.path.abspath(data), mc_metric))
  with open(os.path.join(out_dir, f"{METRICS_MODULE}.py"), "w") as f:
    f.write(
      f'"""The harness metrics of the generative tasks here."""\n'
      f"from {__name__} import squad_scores  # noqa: F401\n"
    )


# ----------------------------------------------------------------------------- runs


@gin.configurable
@dataclasses.dataclass(frozen=True)
class Settings:
  add_eos: bool = True  # FLAN format; False for pretrained-only models read as plain text
  max_length: int = 576  # prompt + answer tokens; prompts are cut from the left
  max_new_tokens: int = 32
  batch_size: int = 16
  seed: int = 0  # lm-eval's fewshot_random_seed: which exemplars each item gets


def mc_prediction(
  loglikelihoods: Sequence[float],
  options: Sequence[str],
  metric: str,
  unconditional: Optional[Sequence[float]] = None,
) -> int:
  """The option `metric` picks, as lm-eval's `ConfigurableTask.process_results` does:
  `acc` argmax log-likelihood; `acc_norm` argmax log-likelihood / len(option) in
  characters; `acc_mutual_info` argmax log-likelihood - `unconditional` log-likelihood."""
  lls = np.asarray(loglikelihoods, dtype=np.float64)
  if metric == "acc_norm":
    lls = lls / np.array([float(len(o)) for o in options])
  elif metric == "acc_mutual_info":
    lls = lls - np.asarray(unconditional, dtype=np.float64)
  return int(np.argmax(lls))


def tie_split_accuracy(scores: Sequence[Sequence[float]], labels: Sequence[int]) -> float:
  """Mean over items of 1/ties when the label is among the best-scored options."""
  hits = []
  for row, label in zip(scores, labels):
    best = np.flatnonzero(np.asarray(row) == np.max(row))
    hits.append(float(label in best) / len(best))
  return float(np.mean(hits))


def _task_result(
  task: Task,
  shots: int,
  metrics: Mapping[str, Any],
  samples: Sequence[Mapping[str, Any]],
  mc_metric: str,
) -> dict:
  """One task@shots entry: lm-eval's metrics and, per item, its prediction and (multiple
  choice) every option's log-likelihood (and, for mutual information, its unconditional
  one: lm-eval appends those requests after the options')."""
  samples = sorted(samples, key=lambda s: s["doc_id"])
  result: dict[str, Any] = {
    "kind": task.kind,
    "examples": len(samples),
    "shots": shots,
    "skipped_lines": dict(task.skipped),
  }
  if task.kind == MC:
    result.update(
      {
        ours: float(metrics[f"{name},none"])
        for name, ours in MC_METRICS.items()
        if f"{name},none" in metrics
      }
    )
    responses = [[float(r[0]) for r in s["filtered_resps"]] for s in samples]
    counts = [len(s["doc"]["options"]) for s in samples]
    conditional = [r[:n] for r, n in zip(responses, counts)]
    unconditional = (
      [r[n:] for r, n in zip(responses, counts)]
      if mc_metric == "acc_mutual_info"
      else [None] * len(samples)
    )
    predictions = [
      mc_prediction(ll, s["doc"]["options"], mc_metric, u)
      for ll, s, u in zip(conditional, samples, unconditional)
    ]
    hits = float(np.mean([p == s["doc"]["label"] for p, s in zip(predictions, samples)]))
    if abs(hits - result[MC_METRICS[mc_metric]]) > 1e-9:  # e.g. lm-eval reordered requests
      raise RuntimeError(
        f"{task.name}: the predictions score {hits}, lm-eval's "
        f"{mc_metric} {result[MC_METRICS[mc_metric]]}"
      )
    result.update(
      score=result[MC_METRICS[mc_metric]],
      predictions=predictions,
      item_scores=[float(p == s["doc"]["label"]) for p, s in zip(predictions, samples)],
      option_loglikelihoods=conditional,
    )
    if mc_metric == "acc_mutual_info":
      result["unconditional_loglikelihoods"] = unconditional
      labels = [s["doc"]["label"] for s in samples]
      # The context-free shortcut, both ways (mutual information favours the options
      # least likely on their own): part of the task's floor for this model.
      result["unconditional_shortcut"] = {
        "most_likely": tie_split_accuracy(unconditional, labels),
        "least_likely": tie_split_accuracy([-np.asarray(u) for u in unconditional], labels),
      }
  elif task.kind == GREEDY:  # filtered_resps: [(log-likelihood, is_greedy)]
    exact = float(metrics["acc,none"])
    result.update(
      exact_match=exact,
      score=exact,
      predictions=[bool(s["filtered_resps"][0][1]) for s in samples],
      item_scores=[float(s["filtered_resps"][0][1]) for s in samples],
      continuation_loglikelihoods=[float(s["filtered_resps"][0][0]) for s in samples],
    )
  else:
    exact = float(metrics["exact_match,none"])
    result.update(
      exact_match=exact,
      f1=float(metrics["f1,none"]),
      score=exact,
      predictions=[s["filtered_resps"][0] for s in samples],
      item_scores=[float(s["exact_match"]) for s in samples],
    )
  return result


def make_lm(
  checkpoint: str, settings: Settings = Settings(), vocab: Optional[str] = None
) -> lm_eval_model.RedLLMJax:
  """The lm-eval model of a checkpoint, read with its own vocabulary unless `vocab`."""
  return lm_eval_model.RedLLMJax(
    checkpoint=checkpoint,
    vocab=vocab,
    add_eos=settings.add_eos,
    max_length=settings.max_length,
    max_gen_toks=settings.max_new_tokens,
    batch_size=settings.batch_size,
  )


def evaluate(
  lm: lm_eval_model.RedLLMJax,
  tasks: Sequence[Task],
  shots: Sequence[int],
  settings: Settings = Settings(),
  mc_metric: str = "acc",
) -> dict[str, Any]:
  """{"task@kshot": result, ..., "average": mean score, "vocabulary": path} of one model;
  a multiple-choice task's score is its `mc_metric` (`MC_METRICS`)."""
  per: dict[str, Any] = {}
  with tempfile.TemporaryDirectory() as include_dir:
    for task in tasks:
      write_task_files(include_dir, task.name, task.kind, task.examples, mc_metric=mc_metric)
    manager = TaskManager(include_path=include_dir, include_defaults=False)
    for k in shots:
      for task in tasks:  # lm-eval draws k + 1 items and drops the evaluated one
        if len(task.examples) <= k:
          raise TaskFileError(
            f"{task.name} has {len(task.examples)} items: {k}-shot prompts need at least {k + 1}"
          )
      out = lm_eval.simple_evaluate(
        model=lm,
        tasks=[t.name for t in tasks],
        num_fewshot=k,
        task_manager=manager,
        log_samples=True,
        fewshot_random_seed=settings.seed,
        bootstrap_iters=0,
      )
      for task in tasks:
        per[f"{task.name}@{k}shot"] = _task_result(
          task, k, out["results"][task.name], out["samples"][task.name], mc_metric
        )
  per["average"] = float(np.mean([r["score"] for r in per.values()]))
  per["vocabulary"] = lm.vocab_path
  return per


def format_table(results: dict[str, dict[str, Any]]) -> str:
  """Markdown table: one row per task@shots (score: accuracy or exact match), one column per checkpoint."""
  names = list(results)
  keys = [k for k, v in next(iter(results.values())).items() if isinstance(v, dict)]
  lines = ["| task | metric | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
  for key in keys:
    first = results[names[0]][key]
    metrics = (
      [m for m in MC_METRICS.values() if m in first]
      if first["kind"] == MC
      else ["exact_match", "f1"]
      if first["kind"] == GEN
      else ["exact_match"]
    )
    for metric in metrics:
      cells = [f"{100 * results[n][key][metric]:.2f}" for n in names]
      lines.append(f"| {key} | {metric} | " + " | ".join(cells) + " |")
  lines.append(
    "| **average** | score | "
    + " | ".join(f"{100 * results[n]['average']:.2f}" for n in names)
    + " |"
  )
  return "\n".join(lines)


def load_tasks(pattern: str, max_examples: Optional[int] = None) -> list[Task]:
  """Every task file matching `pattern`, each cut to its first `max_examples` items."""
  files = sorted(glob.glob(pattern))
  if not files:
    raise TaskFileError(f"no task file matches {pattern}")
  tasks = [load_task(f) for f in files]
  if max_examples:
    tasks = [dataclasses.replace(t, examples=t.examples[:max_examples]) for t in tasks]
  return tasks


@gin.configurable
def compare(
  checkpoints: Mapping[str, str] = gin.REQUIRED,
  tasks: str = gin.REQUIRED,
  shots: Sequence[int] = (0,),
  output: Optional[str] = None,
  mc_metric: str = "acc",
  settings: Settings = Settings(),
  vocab: Optional[str] = None,
) -> dict[str, dict[str, Any]]:
  """Every checkpoint (name -> path) on every task file matching `tasks`, at each shot count."""
  mc_metrics(mc_metric)  # a misspelt metric is one line before any model loads
  loaded = load_tasks(tasks)
  results = {
    name: evaluate(make_lm(path, settings, vocab), loaded, shots, settings, mc_metric)
    for name, path in checkpoints.items()
  }
  table = format_table(results)
  print(table)
  for task in loaded:
    if task.skipped:
      print(
        f"{task.name}: skipped {sum(task.skipped.values())} malformed lines {dict(task.skipped)}"
      )
  if output:
    with open(output, "w") as f:
      json.dump(results, f, indent=1)
    with open(os.path.splitext(output)[0] + ".md", "w") as f:
      f.write(table + "\n")
  return results


def main() -> None:
  compare()


if __name__ == "__main__":
  gin_utils.run(__spec__.name)
