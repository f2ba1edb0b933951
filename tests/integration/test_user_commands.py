"""train, eval and infer run as a new user runs them (subprocesses, their flags), on one
tiny DecLLM trained here: start-up summary, quiet TensorFlow, the checkpoint's own
vocabulary, the restored step, a small eval split read once, DecLLM's second half."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2
from tensorboard.backend.event_processing import plugin_event_accumulator
from tensorboard.util import tensor_util

from redllm_jax import checkpoints
from redllm_jax.data import paths

ROOT = pathlib.Path(__file__).resolve().parents[2]
TASK = "demo_redpajama_wikipedia"  # 4 validation documents: 27,770 tokens (docs/data.md)
VALIDATION_TOKENS = 27_770
BATCH, EVAL_STEPS = 8, 32  # room for 256 rows: more than one pass over the split
LENGTHS = "--gin.TASK_FEATURE_LENGTHS={'targets': 256}"
TENSORFLOW_CHATTER = ("cuInit", "cudart_stub", "absl::InitializeLog")


def _run(module: str, *args: str, env=None) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-m", module, *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
    env=env,
  )


def _ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
  assert result.returncode == 0, result.stderr[-3000:]
  assert not [w for w in TENSORFLOW_CHATTER if w in result.stderr], result.stderr[-3000:]
  return result


def _one_line_error(result: subprocess.CompletedProcess) -> str:
  assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
  return lines[0]


@pytest.fixture(scope="module")
def trained(demo_root, tmp_path_factory):
  """3 steps (checkpoints at 2 and 3), then the end-of-training eval of a small split."""
  model_dir = tmp_path_factory.mktemp("user") / "dec"
  run = _ok(
    _run(
      "redllm_jax.train",
      "--gin_file=experiments/demo_pretrain_decllm.gin",
      f"--gin.MODEL_DIR='{model_dir}'",
      "--gin.TRAIN_STEPS=3",
      f"--gin.BATCH_SIZE={BATCH}",
      LENGTHS,
      f"--gin.EVAL_TASKS=['{TASK}']",
      f"--gin.train.train.eval_steps={EVAL_STEPS}",
      "--gin.train.train.checkpoint_every=2",
    )
  )
  summary, results = run.stdout.split("\n{", 1)
  return model_dir, summary, json.loads("{" + results)


@pytest.fixture(scope="module")
def other_vocabulary(demo_root, tmp_path_factory) -> pathlib.Path:
  """A valid SentencePiece model with T5 ids whose bytes differ from the demo's."""
  model = sentencepiece_model_pb2.ModelProto.FromString(
    (pathlib.Path(demo_root) / "vocab" / "spm_4096_bpe.model").read_bytes()
  )
  model.pieces[10].score += 1.0
  path = tmp_path_factory.mktemp("vocab") / "retrained.model"
  path.write_bytes(model.SerializeToString())
  return path


def test_training_prints_a_startup_summary(trained):
  model_dir, summary, _ = trained
  _, params = checkpoints.load_model_and_params(str(model_dir))
  count = sum(x.size for x in jax.tree.leaves(params))  # the restored arrays themselves
  assert f"train: decllm, {count:,} parameters" in summary
  assert f"tokens per step: {BATCH * 256:,} = {BATCH} rows x 256 decoder_target_tokens" in summary
  assert f"steps 0 -> 3: 3 to run, {3 * BATCH * 256:,} tokens" in summary
  assert "train split of demo_redpajama: 1,159 documents" in summary  # docs/data.md: 101 + 1,058
  assert "mesh {'data': 1, 'fsdp': 1, 'tensor': 1} over 1 cpu device(s)" in summary
  assert summary.index("compiling the train step...") < summary.index("compiled in")


def test_in_training_eval_reads_a_small_split_once(trained):
  """One pass, never repeated: every validation token once, not EVAL_STEPS full batches."""
  _, _, results = trained
  assert results[f"{TASK}/num_tokens"] == VALIDATION_TOKENS
  assert results[f"{TASK}/num_examples"] < BATCH * EVAL_STEPS
  assert np.isfinite(results[f"{TASK}/second_half_perplexity"])


def test_eval_uses_the_restored_step_and_reports_the_second_half(trained, tmp_path):
  """No model gin: the model is the checkpoint's."""
  model_dir, _, in_training = trained
  out = tmp_path / "eval"
  run = _ok(
    _run(
      "redllm_jax.evaluation.perplexity",
      "--gin_file=data/demo_pretrain_dec.gin",
      "--gin_file=runs/eval.gin",
      f"--gin.CHECKPOINT_PATH='{model_dir}'",
      f"--gin.OUTPUT_DIR='{out}'",
      f"--gin.EVAL_TASKS=['{TASK}']",
      LENGTHS,
    )
  )
  assert "ppl 2nd half" in run.stdout
  written = json.loads((out / "eval_results.json").read_text())
  assert written["step"] == 3  # the newest checkpoint's; the path names no step
  metrics = written["results"][TASK]
  # The same parameters and split as training's last eval. The model built from the
  # checkpoint has no z-loss (a training-only term, not part of its meta): its loss is
  # the cross-entropy, and every other figure equals training's.
  for name, value in metrics.items():
    if not name.endswith(("loss", "z_loss")):
      assert value == pytest.approx(in_training[f"{TASK}/{name}"], rel=1e-5), name
  assert metrics["z_loss"] == 0.0 and metrics["loss"] == metrics["cross_entropy"]
  assert in_training[f"{TASK}/z_loss"] > 0.0
  events = plugin_event_accumulator.EventAccumulator(str(out), size_guidance={"tensors": 0})
  events.Reload()
  [scalar] = events.Tensors(f"{TASK}/second_half_perplexity")
  assert scalar.step == 3
  assert float(tensor_util.make_ndarray(scalar.tensor_proto)) == pytest.approx(
    metrics["second_half_perplexity"], rel=1e-6
  )


def _eval_error(model_dir, *extra: str, env=None) -> str:
  return _one_line_error(
    _run(
      "redllm_jax.evaluation.perplexity",
      "--gin_file=data/demo_pretrain_dec.gin",
      "--gin_file=runs/eval.gin",
      f"--gin.CHECKPOINT_PATH='{model_dir}'",
      "--gin.OUTPUT_DIR=None",
      LENGTHS,
      *extra,
      env=env,
    )
  )


def test_eval_from_the_checkpoint_path_alone_reads_what_the_run_evaluated(trained, tmp_path):
  """No model or data gin: the tasks, lengths and converter are the run's, from its meta."""
  model_dir, _, in_training = trained
  out = tmp_path / "eval"
  _ok(
    _run(
      "redllm_jax.evaluation.perplexity",
      "--gin_file=runs/eval_as_trained.gin",
      f"--gin.CHECKPOINT_PATH='{model_dir}'",
      f"--gin.OUTPUT_DIR='{out}'",
    )
  )
  written = json.loads((out / "eval_results.json").read_text())
  assert list(written["results"]) == [TASK]
  for name, value in written["results"][TASK].items():
    if not name.endswith(("loss", "z_loss")):
      assert value == pytest.approx(in_training[f"{TASK}/{name}"], rel=1e-5), name


def test_eval_checks_a_model_gin_override_against_the_checkpoint(trained):
  model_dir, _, _ = trained
  line = _eval_error(
    model_dir,
    "--gin_file=models/redllm.gin",
    "--gin_file=models/sizes/tiny.gin",
    "--gin.perplexity.evaluate_checkpoint.model=%MODEL",
  )
  assert "holds a decllm model, but the gin builds a redllm model" in line, line


def test_eval_refuses_a_task_of_another_vocabulary(trained, other_vocabulary):
  model_dir, _, _ = trained
  line = _eval_error(model_dir, f"--gin.demo_vocab_path.path='{other_vocabulary}'")
  assert "the eval task demo_redpajama uses the vocabulary" in line
  assert str(other_vocabulary) in line and "spm_4096_bpe.model" in line


@pytest.mark.slow
def test_eval_without_a_data_root_for_its_vocabulary_is_one_line(trained):
  """The real-data vocabulary's path cannot even be formed: one line, not gin's three."""
  model_dir, _, _ = trained
  env = {k: v for k, v in os.environ.items() if k != paths.DATA_DIR_ENV}
  line = _eval_error(model_dir, "--gin_file=data/pretrain_dec.gin", env=env)
  assert line == (
    "error: redpajama_v1: No data root: set $REDLLM_DATA_DIR or bind gin "
    "`data_dir.path` (local or gs://)."
  )


def _infer(model_dir, prompts, *extra: str) -> subprocess.CompletedProcess:
  """No model or data gin: the model and the vocabulary are the checkpoint's."""
  return _run(
    "redllm_jax.evaluation.infer",
    "--gin_file=runs/infer.gin",
    f"--gin.CHECKPOINT_PATH='{model_dir}'",
    f"--gin.INFER_INPUT='{prompts}'",
    f"--gin.INFER_OUTPUT='{prompts.parent / 'out.jsonl'}'",
    "--gin.DecodingConfig.max_new_tokens=2",
    *extra,
  )


def _prompts(tmp_path, texts) -> pathlib.Path:
  prompts = tmp_path / "prompts.jsonl"
  prompts.write_text("".join(json.dumps({"inputs": t}) + "\n" for t in texts))
  return prompts


def test_infer_reads_its_flags_and_the_checkpoints_vocabulary(trained, demo_root, tmp_path):
  model_dir, _, _ = trained
  texts = ["In the beginning God created", "The city of Paris is the capital of France"]
  prompts = _prompts(tmp_path, texts)
  _ok(_infer(model_dir, prompts, "--gin.infer.InferSettings.add_eos=False"))
  lines = [json.loads(l) for l in (tmp_path / "out.jsonl").read_text().splitlines()]
  sp = spm.SentencePieceProcessor(
    model_file=str(pathlib.Path(demo_root) / "vocab" / "spm_4096_bpe.model")
  )
  assert [l["prompt_tokens"] for l in lines] == [len(sp.encode(t)) for t in texts]  # no EOS
  shortest = min(len(sp.encode(t)) for t in texts)
  line = _one_line_error(
    _infer(
      model_dir,
      prompts,
      "--gin.infer.InferSettings.too_long='reject'",
      f"--gin.infer.InferSettings.max_prompt_length={shortest}",
    )
  )
  assert f"> max_prompt_length={shortest}" in line
  empty = _prompts(tmp_path, ["Hello", ""])
  assert (
    _one_line_error(_infer(model_dir, empty)) == f"error: {empty}:2: empty prompt (an "
    "'inputs' of no text)"
  )


@pytest.mark.slow
def test_infer_checks_a_bound_vocabulary_against_the_checkpoint(
  trained, other_vocabulary, tmp_path
):
  model_dir, _, _ = trained
  line = _one_line_error(
    _infer(
      model_dir,
      _prompts(tmp_path, ["Hello"]),
      "--gin_file=data/demo_pretrain_dec.gin",
      f"--gin.demo_vocab_path.path='{other_vocabulary}'",
      "--gin.infer.infer.vocabulary=@vocabulary.get_vocabulary()",
    )
  )
  assert line.startswith("error: infer.infer.vocabulary uses the vocabulary")
  assert str(other_vocabulary) in line and "spm_4096_bpe.model" in line


def test_finetuning_from_a_checkpoint_of_another_vocabulary_is_one_line(
  trained, other_vocabulary, tmp_path
):
  model_dir, _, _ = trained
  line = _one_line_error(
    _run(
      "redllm_jax.train",
      "--gin_file=experiments/demo_pretrain_decllm.gin",
      f"--gin.MODEL_DIR='{tmp_path / 'tuned'}'",
      "--gin.TRAIN_STEPS=1",
      LENGTHS,
      f"--gin.train.train.initial_checkpoint_path='{model_dir}'",
      f"--gin.demo_vocab_path.path='{other_vocabulary}'",
    )
  )
  assert line.startswith("error: the training task demo_redpajama uses the vocabulary")
  assert str(other_vocabulary) in line and "spm_4096_bpe.model" in line
  assert not (tmp_path / "tuned").exists()  # refused before any work


def test_eval_tasks_of_another_vocabulary_than_training_are_one_line(other_vocabulary, tmp_path):
  line = _one_line_error(
    _run(
      "redllm_jax.train",
      "--gin_file=experiments/own_text/decllm.gin",
      f"--gin.OWN_TEXT='{ROOT}/docs/*.md'",
      f"--gin.OWN_TEXT_VOCABULARY='{other_vocabulary}'",
      f"--gin.files_task.cache_dir='{tmp_path / 'cache'}'",
      f"--gin.MODEL_DIR='{tmp_path / 'run'}'",
      "--gin.EVAL_TASKS=['own_text', 'demo_redpajama']",
      "--gin.files_task.validation_fraction=0.3",  # docs/ has 10 files
    )
  )
  assert line.startswith("error: own_text and demo_redpajama use different vocabularies"), line
  assert not (tmp_path / "run" / "checkpoints").exists()  # refused before any work
