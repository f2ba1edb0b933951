"""Downstream harness: task files, prompt/feature conventions, known-answer scoring, demo tasks."""
import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import init, make_model, random_tokens
from redllm_jax.evaluation import harness


def encode(text):  # A char-level toy tokenizer: printable ASCII -> ids 2..96.
  return [ord(c) - 30 for c in text if 32 <= ord(c) < 127]


def decode(ids):
  return "".join(chr(i + 30) for i in ids)


def _write(tmp_path, name, lines):
  path = tmp_path / name
  path.write_text("\n".join(lines) + "\n")
  return str(path)


MAGIC = encode("#")[0]


def _magic_runner(architecture):
  """Log-likelihood = (# target tokens equal to MAGIC) - 0.01 * (# target tokens)."""
  def score(batch):
    w = batch["decoder_loss_weights"]
    t = batch["decoder_target_tokens"]
    return np.sum(w * ((t == MAGIC) - 0.01), axis=-1)
  def generate(tokens, lengths, n):
    out = np.zeros((tokens.shape[0], n), np.int32)
    out[:, :3] = encode("yes")
    out[:, 3] = 1
    return out
  return harness.Runner(make_model(architecture).prefix_lm_batch, score, generate)


def test_multiple_choice_picks_the_known_answer(tmp_path):
  lines = [json.dumps({"inputs": f"q{i}", "options": ["aaa", "b#b", "cc"] if i % 2 else
                       ["#", "dddd", "ee"], "label": 1 if i % 2 else 0}) for i in range(6)]
  task = harness.load_task(_write(tmp_path, "mc.jsonl", lines))
  for arch in ("redllm", "decllm"):
    for shots in (0, 2):
      r = harness.evaluate_task(_magic_runner(arch), task, encode, decode,
                                harness.Settings(shots=shots, batch_size=4))
      assert r["accuracy"] == 1.0 and r["examples"] == 6
      assert r["predictions"] == [0, 1, 0, 1, 0, 1]


def test_length_normalisation_changes_the_choice():
  scores, lengths = np.array([-3.0, -4.0]), np.array([3, 8])
  assert harness.choose(scores, lengths, False) == 0
  assert harness.choose(scores, lengths, True) == 1


def test_generative_exact_match_and_f1(tmp_path):
  lines = [json.dumps({"inputs": "q1", "targets": ["Yes!", "no"]}),
           json.dumps({"inputs": "q2", "targets": "yes sir"}),
           json.dumps({"inputs": "q3", "targets": "no"})]
  task = harness.load_task(_write(tmp_path, "gen.jsonl", lines))
  r = harness.evaluate_task(_magic_runner("redllm"), task, encode, decode, harness.Settings())
  assert r["predictions"] == ["yes"] * 3
  assert r["exact_match"] == pytest.approx(1 / 3)
  assert r["f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
  assert harness.token_f1("The answer, is 42.", "answer is 42") == 1.0


def test_malformed_lines_are_skipped_and_counted(tmp_path):
  good = json.dumps({"inputs": "q", "options": ["a", "b"], "label": 1})
  lines = [good, "{not json", json.dumps({"inputs": "q", "options": ["a", "b"], "label": 2}),
           json.dumps({"options": ["a", "b"], "label": 0}),
           json.dumps({"inputs": "q", "options": "ab", "label": 0}),
           json.dumps({"inputs": "q", "targets": "a"}), "", good]
  task = harness.load_task(_write(tmp_path, "bad.jsonl", lines))
  assert len(task.examples) == 2 and task.kind == harness.MC
  assert dict(task.skipped) == {"bad_json": 1, "bad_label": 1, "missing_inputs": 1,
                                "bad_options": 1, "mixed_kind": 1}
  invalid = tmp_path / "invalid_utf8.jsonl"
  invalid.write_bytes(good.encode() + b'\n{"inputs": "q \xff", "options": ["a", "b"], "label": 0}\n')
  task = harness.load_task(str(invalid))
  assert len(task.examples) == 1 and dict(task.skipped) == {"bad_utf8": 1}
  with pytest.raises(harness.TaskFileError, match="no valid example"):
    harness.load_task(_write(tmp_path, "empty.jsonl", ["{oops", "[]"]))
  with pytest.raises(harness.TaskFileError, match="not found"):
    harness.load_task(str(tmp_path / "missing.jsonl"))


@pytest.mark.parametrize("arch", ["decllm_biattn", "redllm"])  # plain DecLLM: same features
def test_harness_scores_equal_direct_model_scores(arch):
  """The harness's features follow the training conventions (tests/conftest.py lm_batch)."""
  model = make_model(arch)
  params = init(model)
  runner = harness.make_runner(model, params)
  prompts = [random_tokens(1, (5,)).tolist(), random_tokens(2, (3,)).tolist()]
  answers = [random_tokens(3, (4,)).tolist(), random_tokens(4, (2,)).tolist()]
  got = harness.score_pairs(runner, prompts, answers, batch_size=4)
  for p, a, g in zip(prompts, answers, got):
    if arch == "redllm":
      batch = {"encoder_input_tokens": np.array([p]), "decoder_target_tokens": np.array([a]),
               "decoder_input_tokens": np.array([[0] + a[:-1]])}
    else:
      seq = p + a
      batch = {"decoder_input_tokens": np.array([[0] + seq[:-1]]),
               "decoder_target_tokens": np.array([seq]),
               "decoder_loss_weights": np.array([[0.0] * len(p) + [1.0] * len(a)]),
               "decoder_causal_attention": np.array([[1] * (len(p) + 1) + [0] * (len(a) - 1)])}
    direct = float(jax.jit(model.score_batch)(params, batch)[0])
    assert g == pytest.approx(direct, abs=1e-4)


def test_side_by_side_table(tmp_path):
  mc = harness.load_task(_write(tmp_path, "mc.jsonl", [json.dumps(
      {"inputs": "q", "options": ["#", "x"], "label": 0})] * 3))
  gen = harness.load_task(_write(tmp_path, "gen.jsonl", [json.dumps(
      {"inputs": "q", "targets": "yes"})] * 2))
  results = harness.run_harness({"red": _magic_runner("redllm"), "dec": _magic_runner("decllm")},
                                [mc, gen], encode, decode, shots=[0, 1])
  assert results["red"]["average"] == 1.0
  table = harness.format_table(results)
  assert "| mc@1shot | accuracy | 100.00 | 100.00 |" in table
  assert "gen@0shot | exact_match" in table


def test_build_demo_tasks(demo_root, tmp_path):
  """As a user runs it: `python -m redllm_jax.evaluation.demo_tasks --out_dir=...`."""
  run = subprocess.run([sys.executable, "-m", "redllm_jax.evaluation.demo_tasks",
                        f"--out_dir={tmp_path}"], capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-2000:]
  counts = json.loads(run.stdout.strip().splitlines()[-1])
  assert counts["generative"] > 50 and counts["multiple_choice"] > 50
  mc = harness.load_task(str(tmp_path / "demo_qa_mc.jsonl"))
  gen = harness.load_task(str(tmp_path / "demo_qa_gen.jsonl"))
  assert not mc.skipped and not gen.skipped
  references = {ex["inputs"]: ex["targets"] for ex in gen.examples}
  for ex in mc.examples:
    assert len(ex["options"]) == 4 and len(set(ex["options"])) == 4
    right = ex["options"][ex["label"]]
    assert right in references[ex["inputs"]]
    assert not set(ex["options"]) - {right} & set(references[ex["inputs"]])
