"""Commands run as a user runs them, with good and bad configurations: a bad one is
one line on stderr and exit code 2, never a traceback."""

import subprocess
import sys

import pytest


def run_module(module: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout
  )


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
  assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
  lines = [l for l in result.stderr.strip().splitlines() if l.startswith("error")]
  assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr[-2000:]
  for word in words:
    assert word in lines[0], (word, lines[0])


def test_model_info_command_and_its_one_line_errors():
  ok = run_module(
    "redllm_jax.tools.model_info", "--gin_file=models/decllm.gin", "--gin_file=models/sizes/8b.gin"
  )
  assert ok.returncode == 0, ok.stderr
  assert "total_params: 8,724,430,848" in ok.stdout
  biattn = run_module(
    "redllm_jax.tools.model_info",
    "--gin_file=models/decllm.gin",
    "--gin_file=models/sizes/8b.gin",
    "--gin.BIDIRECTIONAL_INPUTS=True",
  )
  assert biattn.returncode == 0 and "decllm_biattn" in biattn.stdout, biattn.stderr
  assert_one_line_error(
    run_module(
      "redllm_jax.tools.model_info",
      "--gin_file=models/decllm.gin",
      "--gin_file=models/sizes/8b.gin",
      "--gin.config.TransformerConfig.d_modle=3",
    ),
    "d_modle",
  )
  assert_one_line_error(
    run_module("redllm_jax.tools.model_info", "--gin_file=models/nope.gin"), "nope.gin"
  )
  assert_one_line_error(
    run_module("redllm_jax.tools.model_info", "--gin_file=models/redllm.gin"),
    "d_model",
    "models/sizes",
  )


def _train(model_dir, *extra: str, steps: int = 2) -> subprocess.CompletedProcess:
  return run_module(
    "redllm_jax.train",
    "--gin_file=experiments/demo_pretrain_redllm.gin",
    f"--gin.MODEL_DIR='{model_dir}'",
    f"--gin.TRAIN_STEPS={steps}",
    "--gin.train.train.eval_steps=1",
    *extra,
  )


BAD_TRAINING_SETTINGS = {
  "task typo": ("--gin.MIXTURE_OR_TASK_NAME='demo_redpajam'", "did you mean demo_redpajama"),
  "unknown eval task": ("--gin.EVAL_TASKS=['nope']", "unknown seqio task or mixture 'nope'"),
  "batch 0": ("--gin.BATCH_SIZE=0", "BATCH_SIZE must be a positive integer, got 0"),
  "checkpoint_every 0": (
    "--gin.train.train.checkpoint_every=0",
    "train.train.checkpoint_every must be a positive integer",
  ),
  "negative steps": ("--gin.TRAIN_STEPS=-5", "TRAIN_STEPS must be a non-negative integer, got -5"),
  "steps not a number": ("--gin.TRAIN_STEPS='abc'", "got 'abc'"),
  "lengths without targets": (
    "--gin.TASK_FEATURE_LENGTHS={'inputs': 64}",
    "has no length for 'targets'",
  ),
  "gin syntax": ("--gin.train.train.eval_every=(", "gin:"),
  "unread macro": ("--gin.BATCH_SIZ=4", "did you mean BATCH_SIZE"),
  "missing vocabulary": (
    "--gin.demo_vocab_path.path='/nonexistent/spm.model'",
    "Vocabulary file not found: /nonexistent/spm.model",
  ),
  "vocabulary larger than the model": (
    "--gin.VOCAB_SIZE=1000",
    "4096 ids, more than the model's VOCAB_SIZE 1000",
  ),
  # The validation table (each of its rules: tests/unit/test_validation.py).
  "negative learning rate": (
    "--gin.optimizers.learning_rate_schedule.peak=-0.01",
    "peak=-0.01: expected a number >= 0",
  ),
  "dropout above 1": (
    "--gin.config.TransformerConfig.dropout_rate=1.5",
    "dropout_rate=1.5: expected a number in [0, 1)",
  ),
  "unknown schedule": (
    "--gin.optimizers.learning_rate_schedule.kind='linear'",
    "kind='linear': expected one of cosine, wsd, constant",
  ),
  "unknown remat policy": (
    "--gin.config.TransformerConfig.remat_policy='bogus'",
    "expected one of none, full, dots, dots_no_batch",
  ),
  "no heads": (
    "--gin.config.TransformerConfig.num_heads=0",
    "num_heads=0: expected an integer >= 1",
  ),
  "seed not an integer": (
    "--gin.train.train.seed='abc'",
    "train.train.seed='abc': expected an integer",
  ),
}


@pytest.mark.parametrize("setting", BAD_TRAINING_SETTINGS)
def test_bad_training_settings_are_one_line_errors_before_any_work(tmp_path, demo_root, setting):
  flag, message = BAD_TRAINING_SETTINGS[setting]
  result = _train(tmp_path / "run", flag)
  assert_one_line_error(result, message)
  assert not (tmp_path / "run" / "checkpoints").exists()  # Refused before it started.


def test_a_model_dir_that_is_a_file_is_one_line(tmp_path):
  (tmp_path / "run").write_text("not a folder")
  assert_one_line_error(
    _train(tmp_path / "run"), f"MODEL_DIR {tmp_path / 'run'}: it is a file, not a folder"
  )


def test_an_oversized_model_stops_before_compiling_with_its_estimate(tmp_path, demo_root):
  result = _train(tmp_path / "run", "--gin.config.TransformerConfig.d_model=262144")
  assert_one_line_error(
    result, "the train step needs about", "GiB per device", "ignore_memory_check"
  )
  assert "compiling" not in result.stderr and not (tmp_path / "run").exists()


def test_export_refuses_a_non_empty_folder(tmp_path):
  (tmp_path / "export").mkdir()
  (tmp_path / "export" / "config.json").write_text("{}")
  assert_one_line_error(
    run_module(
      "redllm_jax.evaluation.export",
      "--gin_file=runs/export.gin",
      f"--gin.CHECKPOINT_PATH='{tmp_path / 'nope'}'",
      f"--gin.EXPORT_DIR='{tmp_path / 'export'}'",
    ),
    "is not empty",
    "export.export_checkpoint.overwrite=True",
  )
  assert (tmp_path / "export" / "config.json").read_text() == "{}"


def test_a_vocabulary_that_is_not_sentencepiece_is_named(tmp_path, demo_root):
  fake = tmp_path / "spm.model"
  fake.write_text("not a model\n")
  assert_one_line_error(
    _train(tmp_path / "run", f"--gin.demo_vocab_path.path='{fake}'"),
    f"Not a SentencePiece model: {fake}",
  )


def test_a_memory_plan_report_without_a_plan_is_one_line(tmp_path):
  assert_one_line_error(
    run_module("redllm_jax.tools.memory_plan", "--report_only", f"--out_dir={tmp_path / 'none'}"),
    "no plan in",
  )
