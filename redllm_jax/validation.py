"""The table of every checked gin setting: what each bound value must be.

`check_bindings()` runs after the gin files and flags are parsed and before any
command does work (`gin_utils.run`): a value outside its rule is one line,
`error: <configurable.parameter>=<value>: expected <what>`, and exit code 2.
Values bound through macros are followed to the macro's value; a reference to a
configurable (`@foo()`) is not called here, and unbound parameters keep their
(valid) defaults. Step counts and sizes that arrive as macros of the run gins
(TRAIN_STEPS, BATCH_SIZE, ...) keep their own messages in `check_counts`;
`check_run` checks the settings of a run that only work together (converter and
model, lengths, batch and mesh), once the run has built them.
"""

import dataclasses
import math
import os
import tempfile
from typing import Any, Callable, Mapping, Optional

import gin
from gin import config as gin_config
import jax
import seqio

from redllm_jax.checkpoints import ON_UNREADABLE
from redllm_jax.config import ATTENTION_IMPLEMENTATIONS, REMAT_POLICIES
from redllm_jax.errors import ConfigError
from redllm_jax.models import BaseModel
from redllm_jax.optimizers import SCHEDULE_KINDS
from redllm_jax.partitioning import Partitioner

DTYPES = ("float32", "bfloat16", "float16")
_ENCODER_DECODER_CONVERTERS = (seqio.EncDecFeatureConverter,)
_DECODER_CONVERTERS = (seqio.DecoderFeatureConverter, seqio.PrefixLMFeatureConverter)


@dataclasses.dataclass(frozen=True)
class Rule:
  parameter: str  # as the gin files bind it: "module.configurable.parameter"
  expects: str  # the end of the error line: "expected <expects>"
  holds: Callable[[Any], bool]


def _number(x: Any) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _integer(x: Any) -> bool:
  return isinstance(x, int) and not isinstance(x, bool)


def in_range(
  low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False
) -> Callable[[Any], bool]:
  def holds(x: Any) -> bool:
    return (
      _number(x) and (x > low if low_open else x >= low) and (x < high if high_open else x <= high)
    )

  return holds


def at_least(low: int) -> Callable[[Any], bool]:
  return lambda x: _integer(x) and x >= low


def one_of(names: tuple[str, ...]) -> Callable[[Any], bool]:
  return lambda x: x in names


def _optional(holds: Callable[[Any], bool]) -> Callable[[Any], bool]:
  return lambda x: x is None or holds(x)


def _even_positive(x: Any) -> bool:
  return _integer(x) and x > 0 and x % 2 == 0


RULES: tuple[Rule, ...] = (
  # 0 is allowed: a run that leaves the parameters as loaded (the adaptation test's check).
  Rule("optimizers.learning_rate_schedule.peak", "a number >= 0", in_range(0)),
  Rule("optimizers.learning_rate_schedule.warmup_steps", "an integer >= 0", at_least(0)),
  Rule(
    "optimizers.learning_rate_schedule.kind",
    f"one of {', '.join(SCHEDULE_KINDS)}",
    one_of(SCHEDULE_KINDS),
  ),
  Rule("optimizers.learning_rate_schedule.final_fraction", "a number in [0, 1]", in_range(0, 1)),
  Rule("optimizers.learning_rate_schedule.cooldown_fraction", "a number in [0, 1]", in_range(0, 1)),
  Rule(
    "optimizers.make_optimizer.global_clip_norm",
    "None or a number > 0",
    _optional(in_range(0, low_open=True)),
  ),
  Rule(
    "optimizers.make_optimizer.update_clipping",
    "None or a number > 0",
    _optional(in_range(0, low_open=True)),
  ),
  Rule("optimizers.make_optimizer.decay_rate", "a number in (0, 1]", in_range(0, 1, low_open=True)),
  Rule(
    "config.TransformerConfig.dropout_rate", "a number in [0, 1)", in_range(0, 1, high_open=True)
  ),
  Rule("config.TransformerConfig.num_heads", "an integer >= 1", at_least(1)),
  Rule(
    "config.TransformerConfig.head_dim", "an even integer >= 2 (RoPE rotates pairs)", _even_positive
  ),
  *(
    Rule(f"config.TransformerConfig.{name}", "an integer >= 1", at_least(1))
    for name in (
      "vocab_size",
      "d_model",
      "d_ff",
      "num_layers",
      "num_encoder_layers",
      "num_decoder_layers",
    )
  ),
  Rule("config.TransformerConfig.norm_epsilon", "a number > 0", in_range(0, low_open=True)),
  Rule(
    "config.TransformerConfig.remat_policy",
    f"one of {', '.join(REMAT_POLICIES)}",
    one_of(REMAT_POLICIES),
  ),
  Rule(
    "config.TransformerConfig.attention_impl",
    f"one of {', '.join(ATTENTION_IMPLEMENTATIONS)}",
    one_of(ATTENTION_IMPLEMENTATIONS),
  ),
  Rule("config.TransformerConfig.dtype", f"one of {', '.join(DTYPES)}", one_of(DTYPES)),
  Rule("config.TransformerConfig.param_dtype", f"one of {', '.join(DTYPES)}", one_of(DTYPES)),
  Rule("train.train.seed", "an integer", _integer),
  Rule("train.train.on_unreadable", f"one of {', '.join(ON_UNREADABLE)}", one_of(ON_UNREADABLE)),
  Rule("train.train.ignore_memory_check", "True or False", lambda x: isinstance(x, bool)),
  Rule("infer.InferSettings.seed", "an integer", _integer),
  Rule("infer.InferSettings.too_long", "one of truncate, reject", one_of(("truncate", "reject"))),
  Rule("export.export_checkpoint.overwrite", "True or False", lambda x: isinstance(x, bool)),
)


def _bound_value(parameter: str) -> tuple[bool, Any]:
  """(whether `parameter` is bound to a plain value, the value) with macros followed."""
  try:
    value = gin.query_parameter(parameter)
  except ValueError:  # Not bound, or its configurable is not imported by this command.
    return False, None
  while isinstance(value, gin_config.ConfigurableReference) and value.selector == "gin.macro":
    value = gin.query_parameter(f"%{value.scoped_selector.split('/')[0]}")
  if isinstance(value, gin_config.ConfigurableReference):
    return False, None  # @configurable(): evaluated by the command itself.
  return True, value


def unwritable_reason(directory: str) -> Optional[str]:
  """Why `directory` cannot be created or written (None if it can), tried for real: a
  temporary folder is made and removed in it, or in its nearest existing parent."""
  if "://" in directory:  # Remote storage: the first write tells.
    return None
  path = os.path.abspath(directory)
  if os.path.exists(path) and not os.path.isdir(path):
    return "it is a file, not a folder"
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    return f"{existing} is a file, not a folder"
  try:
    os.rmdir(tempfile.mkdtemp(prefix=".write_probe_", dir=existing))
  except OSError as e:
    return f"{existing} is not writable ({os.strerror(e.errno) if e.errno else e})"
  return None


def check_bindings() -> None:
  """Every rule of RULES against the parsed gin config, then MODEL_DIR (train)."""
  for rule in RULES:
    bound, value = _bound_value(rule.parameter)
    if bound and not rule.holds(value):
      raise ConfigError(f"{rule.parameter}={value!r}: expected {rule.expects}")
  bound, model_dir = _bound_value("train.train.model_dir")
  if bound:
    if not isinstance(model_dir, str) or not model_dir:
      raise ConfigError(f"MODEL_DIR={model_dir!r}: expected a folder path")
    reason = unwritable_reason(model_dir)
    if reason:
      raise ConfigError(f"MODEL_DIR {model_dir}: {reason}")


def check_run(
  model: BaseModel,
  converter: seqio.FeatureConverter,
  task_feature_lengths: Mapping[str, int],
  batch_size: int,
  partitioner: Partitioner,
  num_microbatches: int,
  num_input_shards: int,
) -> None:
  """One-line errors for a run's settings that cannot work together (train, eval)."""
  wants = _ENCODER_DECODER_CONVERTERS if model.architecture == "redllm" else _DECODER_CONVERTERS
  if not isinstance(converter, wants):
    raise ConfigError(
      f"the {type(converter).__name__} feature converter does not fit a {model.architecture} model"
    )
  try:
    converter.get_model_feature_lengths(task_feature_lengths)
  except KeyError as e:
    raise ConfigError(
      f"TASK_FEATURE_LENGTHS {dict(task_feature_lengths)} has no length for "
      f"{e} (the {type(converter).__name__} needs one)"
    ) from None
  except ValueError as e:
    raise ConfigError(f"TASK_FEATURE_LENGTHS {dict(task_feature_lengths)}: {e}") from None
  dp = partitioner.data_parallel_size
  if batch_size % num_microbatches or (batch_size // num_microbatches) % dp:
    raise ConfigError(
      f"BATCH_SIZE {batch_size} must split into {num_microbatches} "
      f"microbatches of a multiple of the data-parallel size {dp}"
    )
  if num_input_shards % jax.process_count() or batch_size % num_input_shards:
    raise ConfigError(
      f"num_input_shards {num_input_shards} must be a multiple of the "
      f"{jax.process_count()} processes and divide BATCH_SIZE {batch_size}"
    )


def check_counts(configurable: str = "train.train", **counts: Any) -> None:
  """Step counts and sizes are positive integers; train_steps may be 0 (evaluate the
  initial or restored model) and eval_every 0 (only at the end).

  Errors name `configurable.argument`, or for train.train the macro that sets it.
  """
  macros = {"train_steps": "TRAIN_STEPS", "batch_size": "BATCH_SIZE"}
  for name, value in counts.items():
    lowest = 0 if name in ("train_steps", "eval_every") else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
      kind = "a non-negative" if lowest == 0 else "a positive"
      where = (
        macros.get(name) if configurable == "train.train" else None
      ) or f"{configurable}.{name}"
      raise ConfigError(f"{where} must be {kind} integer, got {value!r}")
