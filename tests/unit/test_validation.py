"""The validation table: each rule refuses a bad bound value in one line, keeps good ones.

The subprocess side (exit code 2, no traceback) is in
tests/integration/test_config_commands.py; this checks every rule of the table.
"""

import os

import pytest

from redllm_jax import errors, gin_utils, validation
import redllm_jax.evaluation.export  # noqa: F401  pylint: disable=unused-import  # its configurables
import redllm_jax.evaluation.infer  # noqa: F401  pylint: disable=unused-import
import redllm_jax.train  # noqa: F401  pylint: disable=unused-import

TRAIN_GIN = "experiments/demo_pretrain_redllm.gin"

BAD = {
  "optimizers.learning_rate_schedule.peak=-0.01": "expected a number >= 0",
  "optimizers.learning_rate_schedule.warmup_steps=-5": "expected an integer >= 0",
  "optimizers.learning_rate_schedule.warmup_steps=2.5": "expected an integer >= 0",
  "optimizers.learning_rate_schedule.kind='linear'": "expected one of cosine, wsd, constant",
  "optimizers.learning_rate_schedule.final_fraction=1.5": "expected a number in [0, 1]",
  "optimizers.make_optimizer.global_clip_norm=-1.0": "expected None or a number > 0",
  "optimizers.make_optimizer.decay_rate=0.0": "expected a number in (0, 1]",
  "config.TransformerConfig.dropout_rate=1.5": "expected a number in [0, 1)",
  "config.TransformerConfig.dropout_rate=1.0": "expected a number in [0, 1)",
  "config.TransformerConfig.num_heads=0": "expected an integer >= 1",
  "config.TransformerConfig.head_dim=33": "expected an even integer >= 2",
  "config.TransformerConfig.d_model=True": "expected an integer >= 1",
  "config.TransformerConfig.remat_policy='bogus'": "expected one of none, full, dots, dots_no_batch",
  "config.TransformerConfig.attention_impl='fast'": "expected one of einsum, xla",
  "config.TransformerConfig.dtype='float8'": "expected one of float32, bfloat16, float16",
  "train.train.seed='abc'": "train.train.seed='abc': expected an integer",
  "train.train.on_unreadable='ignore'": "expected one of fail, restart",
  "train.train.ignore_memory_check='yes'": "expected True or False",
  "infer.InferSettings.seed=1.5": "expected an integer",
  "infer.InferSettings.too_long='cut'": "expected one of truncate, reject",
  "export.export_checkpoint.overwrite=1": "expected True or False",
}

GOOD = (
  "optimizers.learning_rate_schedule.peak=0.001",
  "optimizers.learning_rate_schedule.peak=0.0",
  "optimizers.learning_rate_schedule.warmup_steps=0",
  "optimizers.make_optimizer.global_clip_norm=None",
  "config.TransformerConfig.dropout_rate=0.1",
  "config.TransformerConfig.remat_policy='full'",
  "train.train.seed=7",
  "export.export_checkpoint.overwrite=True",
)


def _check(tmp_path, *bindings: str) -> None:
  gin_utils.parse_gin([TRAIN_GIN], [f"MODEL_DIR = '{tmp_path / 'run'}'", *bindings], finalize=False)
  validation.check_bindings()


@pytest.mark.parametrize("binding", BAD)
def test_a_bad_value_is_one_line_naming_it(tmp_path, binding):
  with pytest.raises(errors.ConfigError) as e:
    _check(tmp_path, binding)
  message = e.value.message
  assert "\n" not in message and BAD[binding] in message, message
  assert message.startswith(binding.split("=")[0] + "="), message


def test_good_values_and_the_gins_own_pass(tmp_path):
  _check(tmp_path, *GOOD)


def test_a_value_bound_through_a_macro_is_followed(tmp_path):
  with pytest.raises(errors.ConfigError, match=r"dropout_rate=2\.0"):
    _check(tmp_path, "DROPOUT = 2.0", "config.TransformerConfig.dropout_rate = %DROPOUT")


def test_a_model_dir_that_is_a_file_or_under_one(tmp_path):
  (tmp_path / "file").write_text("x")
  for model_dir, reason in (
    (tmp_path / "file", "it is a file, not a folder"),
    (tmp_path / "file" / "run", f"{tmp_path / 'file'} is a file"),
  ):
    gin_utils.parse_gin([TRAIN_GIN], [f"MODEL_DIR = '{model_dir}'"], finalize=False)
    with pytest.raises(errors.ConfigError, match=f"MODEL_DIR {model_dir}: {reason}"):
      validation.check_bindings()
  assert os.listdir(tmp_path) == ["file"]  # The probe left nothing behind.


def test_unwritable_reason_tries_for_real(tmp_path):
  assert validation.unwritable_reason(str(tmp_path / "new" / "run")) is None
  assert not (tmp_path / "new").exists()  # Checked, not created.
  if os.geteuid() != 0:  # root writes through permission bits
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert "is not writable (Permission denied)" in validation.unwritable_reason(
      str(locked / "run")
    )
