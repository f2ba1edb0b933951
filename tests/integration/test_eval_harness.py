"""Downstream harness through lm-eval: task files, metrics, the command on a checkpoint
with its own (non-demo) vocabulary, per-option log-likelihoods, demo tasks."""

import collections
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pydoc_data.topics
import pytest
import sentencepiece as spm

from conftest import init, make_model
from redllm_jax import checkpoints, errors
from redllm_jax.data import vocabulary
from redllm_jax.evaluation import harness
from redllm_jax.functional import EOS_ID

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _write(tmp_path, name, lines):
  path = tmp_path / name
  path.write_text("\n".join(lines) + "\n")
  return str(path)


def test_malformed_lines_are_skipped_and_counted(tmp_path):
  good = json.dumps({"inputs": "q", "options": ["a", "b"], "label": 1})
  lines = [
    good,
    "{not json",
    json.dumps({"inputs": "q", "options": ["a", "b"], "label": 2}),
    json.dumps({"options": ["a", "b"], "label": 0}),
    json.dumps({"inputs": "q", "options": "ab", "label": 0}),
    json.dumps({"inputs": "q", "targets": "a"}),
    "",
    good,
  ]
  task = harness.load_task(_write(tmp_path, "bad.jsonl", lines))
  assert len(task.examples) == 2 and task.kind == harness.MC
  assert dict(task.skipped) == {
    "bad_json": 1,
    "bad_label": 1,
    "missing_inputs": 1,
    "bad_options": 1,
    "mixed_kind": 1,
  }
  invalid = tmp_path / "invalid_utf8.jsonl"
  invalid.write_bytes(
    good.encode() + b'\n{"inputs": "q \xff", "options": ["a", "b"], "label": 0}\n'
  )
  task = harness.load_task(str(invalid))
  assert len(task.examples) == 1 and dict(task.skipped) == {"bad_utf8": 1}
  with pytest.raises(harness.TaskFileError, match="no valid example"):
    harness.load_task(_write(tmp_path, "empty.jsonl", ["{oops", "[]"]))
  with pytest.raises(harness.TaskFileError, match="not found"):
    harness.load_task(str(tmp_path / "missing.jsonl"))


def test_the_demo_qa_tasks():
  """The committed chatterbot QA files (test_demo_tasks.py runs the command that
  rebuilds every demo task file and checks it gives these bytes)."""
  harness_dir = os.path.join(REPO, "tasks", "harness")
  mc = harness.load_task(os.path.join(harness_dir, "demo_qa_mc.jsonl"))
  gen = harness.load_task(os.path.join(harness_dir, "demo_qa_gen.jsonl"))
  assert len(mc.examples) > 50 and len(gen.examples) > 50
  assert not mc.skipped and not gen.skipped
  references = {ex["inputs"]: ex["targets"] for ex in gen.examples}
  for ex in mc.examples:
    assert len(ex["options"]) == 4 and len(set(ex["options"])) == 4
    right = ex["options"][ex["label"]]
    assert right in references[ex["inputs"]]
    assert not set(ex["options"]) - {right} & set(references[ex["inputs"]])
  for kind in ("mc", "gen"):  # and their lm-eval tasks, reading the files beside them from the repo
    with open(os.path.join(harness_dir, f"demo_qa_{kind}.yaml")) as f:
      assert f'test: "tasks/harness/demo_qa_{kind}.jsonl"' in f.read()
  assert os.path.exists(os.path.join(harness_dir, f"{harness.METRICS_MODULE}.py"))


def test_squad_scores_take_the_best_reference():
  doc = {"targets": ["Yes!", "no"]}
  assert harness.squad_scores(doc, ["yes"]) == {"exact_match": 1.0, "f1": 1.0}
  scores = harness.squad_scores({"targets": ["yes sir"]}, ["yes"])
  assert scores == {"exact_match": 0.0, "f1": pytest.approx(2 / 3)}
  assert harness.token_f1("The answer, is 42.", "answer is 42") == 1.0


def test_predictions_follow_the_reported_metric():
  """Each metric's prediction is lm-eval's pick for it (acc_norm: log-likelihood per
  character; acc_mutual_info: minus the option's log-likelihood after an empty prompt,
  whose requests lm-eval appends after the options'), so harness.json's predictions
  agree with its score."""
  options, lls = ["a", "bbbbbbbb", "cc"], [-2.0, -3.0, -2.5]  # per character: -2, -0.375, -1.25
  unconditional = [-1.0, -2.0, -4.0]  # mutual information: -1, -1, +1.5
  assert harness.mc_prediction(lls, options, "acc") == 0
  assert harness.mc_prediction(lls, options, "acc_norm") == 1
  assert harness.mc_prediction(lls, options, "acc_mutual_info", unconditional) == 2
  task = harness.Task(
    "t", harness.MC, [{"inputs": "q", "options": options, "label": 1}], collections.Counter()
  )
  metrics = {"acc,none": 0.0, "acc_norm,none": 1.0, "acc_mutual_info,none": 0.0}
  for metric, prediction, score in (
    ("acc", 0, 0.0),
    ("acc_norm", 1, 1.0),
    ("acc_mutual_info", 2, 0.0),
  ):
    resps = lls + (unconditional if metric == "acc_mutual_info" else [])
    samples = [
      {"doc_id": 0, "doc": task.examples[0], "filtered_resps": [(l, False) for l in resps]}
    ]
    result = harness._task_result(task, 0, metrics, samples, metric)  # pylint: disable=protected-access
    assert result["predictions"] == [prediction] and result["score"] == score
    assert result["item_scores"] == [float(prediction == 1)]
    assert result["option_loglikelihoods"] == [lls]
  assert result["unconditional_loglikelihoods"] == [unconditional]
  with pytest.raises(errors.ConfigError, match="mc_metric='pmi'"):
    harness.mc_metrics("pmi")


def test_side_by_side_table():
  mc = {"kind": harness.MC, "accuracy": 1.0, "accuracy_length_normalized": 0.5, "score": 1.0}
  gen = {"kind": harness.GEN, "exact_match": 0.0, "f1": 0.25, "score": 0.0}
  results = {
    n: {"mc@1shot": mc, "gen@0shot": gen, "average": 0.5, "vocabulary": "v"} for n in ("red", "dec")
  }
  table = harness.format_table(results)
  assert "| mc@1shot | accuracy | 100.00 | 100.00 |" in table
  assert "| gen@0shot | f1 | 25.00 | 25.00 |" in table
  assert table.endswith("| **average** | score | 50.00 | 50.00 |")


def test_the_command_scores_with_the_checkpoints_own_vocabulary(tmp_path):
  """As a user runs it, on a checkpoint trained with a vocabulary that is not the demo
  one (the harness used to fall back to the demo vocabulary): every option's
  log-likelihood in the JSON equals the project's scoring of that vocabulary's tokens."""
  vocab = vocabulary.train_sentencepiece(
    pydoc_data.topics.topics.values(), str(tmp_path / "own.model"), vocab_size=400
  )
  model = make_model("redllm", vocab_size=512)
  rng = np.random.RandomState(3)
  params = jax.tree.map(
    lambda p: jnp.asarray(np.asarray(p) + 0.1 * rng.standard_normal(p.shape).astype(np.float32)),
    init(model),
  )
  run_dir = str(tmp_path / "run")
  checkpointer = checkpoints.Checkpointer(run_dir, 1, async_save=False)
  checkpointer.save(
    1,
    params,
    {"unused": jnp.zeros(2)},
    dict(model.describe(), vocabulary=vocabulary.record_vocabulary(run_dir, vocab)),
    force=True,
  )
  checkpointer.wait()
  os.remove(vocab)  # the checkpoint's own copy in MODEL_DIR/vocabulary/ is what counts
  mc = [
    {"inputs": "What is pass?", "options": ["A null operation", "A loop"], "label": 0},
    {
      "inputs": "What does assert do?",
      "options": ["Debugging checks", "Nothing", "Loops"],
      "label": 0,
    },
  ]
  tasks = tmp_path / "tasks"
  tasks.mkdir()
  _write(tasks, "mc.jsonl", [json.dumps(ex) for ex in mc] + ["{not json"])
  _write(
    tasks,
    "gen.jsonl",
    [json.dumps({"inputs": q, "targets": ["yes"]}) for q in ("Say yes", "Say it")],
  )
  out = tmp_path / "harness.json"
  run = subprocess.run(
    [
      sys.executable,
      "-m",
      "redllm_jax.evaluation.harness",
      "--gin_file=runs/harness.gin",
      f"--gin.CHECKPOINTS={{'red': '{run_dir}'}}",
      f"--gin.HARNESS_TASKS='{tasks}/*.jsonl'",
      "--gin.SHOTS=[0,1]",
      f"--gin.OUTPUT='{out}'",
      "--gin.harness.Settings.max_new_tokens=4",
    ],
    capture_output=True,
    text=True,
    timeout=600,
    cwd=REPO,
    env={
      **os.environ,
      "HF_HUB_OFFLINE": "1",
      "HF_DATASETS_OFFLINE": "1",
      "HF_HOME": str(tmp_path / "hf"),
    },
  )
  assert run.returncode == 0, run.stderr[-3000:]
  assert "mc: skipped 1 malformed lines {'bad_json': 1}" in run.stdout
  results = json.loads(out.read_text())["red"]
  assert results["vocabulary"] == os.path.join(run_dir, "vocabulary", "own.model")
  sp = spm.SentencePieceProcessor(model_file=results["vocabulary"])
  ids = lambda text: list(sp.encode(text)) + [EOS_ID]  # the FLAN format: EOS-ended
  zero = results["mc@0shot"]
  assert zero["examples"] == 2 and zero["skipped_lines"] == {"bad_json": 1}
  for ex, got in zip(mc, zero["option_loglikelihoods"]):
    batch = model.prefix_lm_batch(
      [ids(ex["inputs"])] * len(ex["options"]), [ids("\n" + o) for o in ex["options"]]
    )
    np.testing.assert_allclose(got, np.asarray(model.score_batch(params, batch)), rtol=1e-5)
    assert zero["predictions"][mc.index(ex)] == int(np.argmax(got))
  assert results["mc@1shot"]["option_loglikelihoods"] != zero["option_loglikelihoods"]
  assert 0.0 <= results["gen@1shot"]["f1"] <= 1.0 and len(results["gen@0shot"]["predictions"]) == 2
  for key in ("mc@0shot", "mc@1shot", "gen@0shot", "gen@1shot"):  # per item, lm-eval's score
    assert np.mean(results[key]["item_scores"]) == pytest.approx(results[key]["score"])


def test_greedy_tasks_score_whether_greedy_decoding_gives_the_continuation(tmp_path):
  """LAMBADA style: lines with a `continuation` are a loglikelihood task after a space;
  exact match is lm-eval's `acc` (is_greedy), per item with its log-likelihood."""
  path = tmp_path / "cloze.jsonl"
  path.write_text(
    '{"inputs": "the cat saw the", "continuation": "cat"}\n'
    '{"inputs": "x", "continuation": "  "}\n{"inputs": "y", "targets": ["z"]}\n'
  )
  task = harness.load_task(str(path))
  assert task.kind == harness.GREEDY and len(task.examples) == 1
  assert dict(task.skipped) == {"bad_continuation": 1, "mixed_kind": 1}
  assert harness.chance_score(task) == 0.0
  text = harness.task_yaml("cloze", harness.GREEDY, str(path))
  assert "output_type: loglikelihood" in text and 'target_delimiter: " "' in text
  samples = [{"doc_id": 0, "doc": task.examples[0], "filtered_resps": [(-1.5, True)]}]
  result = harness._task_result(task, 0, {"acc,none": 1.0}, samples, "acc")  # pylint: disable=protected-access
  assert (
    result["exact_match"],
    result["score"],
    result["predictions"],
    result["continuation_loglikelihoods"],
  ) == (1.0, 1.0, [True], [-1.5])
  assert result["item_scores"] == [1.0]
