r"""Pretraining and finetuning entry point, wired by gin (T5X's shape).

  python -m redllm_jax.train \
    --gin_file=experiments/demo_pretrain_redllm.gin --gin.MODEL_DIR=\"runs/red\"

Run gins (`gin/runs/pretrain.gin`, `finetune.gin`) bind `train` to the required
macros MODEL_DIR, MIXTURE_OR_TASK_NAME, TASK_FEATURE_LENGTHS, TRAIN_STEPS and
BATCH_SIZE (finetuning also INITIAL_CHECKPOINT_PATH). A run resumes from the
newest checkpoint in MODEL_DIR. Configuration mistakes (`validation.RULES`, a
step that would not fit in memory: `memory_check`) and storage faults (a
checkpoint that cannot be saved, a full disk) exit with one line and code 2; a run
that cannot go on (a non-finite loss) with one line and code 1.
"""

import errno
import json
import os
import sys
from typing import Any, Callable, Mapping, Optional, Sequence

import gin
import jax
import seqio

from redllm_jax import (
  checkpoints,
  gin_utils,
  memory_check,
  metric_writers,
  multihost,
  optimizers,
  validation,
)
from redllm_jax.data import feature_converters, input_pipeline, vocabulary
from redllm_jax.errors import TrainingError
from redllm_jax.models import BaseModel
from redllm_jax.partitioning import Partitioner
from redllm_jax.trainer import (
  CompiledSteps,
  LoopConfig,
  Phases,
  TrainState,
  compile_steps,
  token_features,
  train_loop,
)


@gin.configurable
def train(
  model: BaseModel = gin.REQUIRED,
  model_dir: str = gin.REQUIRED,
  mixture_or_task_name: str = gin.REQUIRED,
  task_feature_lengths: Mapping[str, int] = gin.REQUIRED,
  feature_converter: seqio.FeatureConverter = gin.REQUIRED,
  train_steps: int = gin.REQUIRED,
  batch_size: int = gin.REQUIRED,
  eval_tasks: Sequence[str] = (),
  eval_split: str = "validation",
  eval_steps: int = 20,
  eval_every: int = 0,
  num_microbatches: int = 1,
  checkpoint_every: int = 1000,
  keep_checkpoints: Optional[int] = 3,
  async_checkpoints: bool = True,
  initial_checkpoint_path: Optional[str] = None,
  num_input_shards: Optional[int] = None,
  log_every: int = 10,
  seed: int = 0,
  on_unreadable: str = "fail",
  keep_steps: Sequence[int] = (),
  ignore_memory_check: bool = False,
  load_initial_params: Callable[..., Any] = checkpoints.load_params,
) -> dict[str, float]:
  """Trains to `train_steps` (resuming if MODEL_DIR has checkpoints); returns final eval metrics.

  `load_initial_params(initial_checkpoint_path, model, shardings)` reads the
  starting parameters: the checkpoint's own (finetuning), or a RedLLM adapted
  from a DecLLM's (`adaptation.load_adapted_params`, runs/adapt.gin). Checkpoints at
  `keep_steps` are saved and never deleted (the study branches shorter budgets there).
  Before anything compiles, the step's memory is estimated against the device's
  (`memory_check`), unless `ignore_memory_check`. The run ends with a line of where
  its time went (`Phases`).
  """
  phases = Phases()
  validation.check_counts(
    train_steps=train_steps,
    batch_size=batch_size,
    eval_steps=eval_steps,
    eval_every=eval_every,
    num_microbatches=num_microbatches,
    checkpoint_every=checkpoint_every,
    log_every=log_every,
    **({} if keep_checkpoints is None else {"keep_checkpoints": keep_checkpoints}),
  )
  input_pipeline.check_tasks([mixture_or_task_name, *eval_tasks], model.config.vocab_size)
  input_pipeline.check_one_vocabulary([mixture_or_task_name, *eval_tasks])
  vocab_file = input_pipeline.vocabulary_file(mixture_or_task_name)
  if initial_checkpoint_path and vocab_file:
    vocabulary.check_vocabulary(
      initial_checkpoint_path, vocab_file, f"the training task {mixture_or_task_name}"
    )
  partitioner = Partitioner()
  num_input_shards = num_input_shards or jax.process_count()
  validation.check_run(
    model,
    feature_converter,
    task_feature_lengths,
    batch_size,
    partitioner,
    num_microbatches,
    num_input_shards,
  )
  schedule = optimizers.learning_rate_schedule(decay_steps=train_steps)
  steps = _steps_of(model, partitioner, num_microbatches)
  if not ignore_memory_check:
    check_memory(
      model,
      steps,
      feature_converter,
      task_feature_lengths,
      batch_size // num_microbatches // partitioner.data_parallel_size,
      num_microbatches,
    )
  meta = dict(
    model.describe(),
    data=_data_record(mixture_or_task_name, eval_tasks, task_feature_lengths, feature_converter),
  )
  if vocab_file:  # Eval, infer and export read text as this run tokenized it.
    meta["vocabulary"] = vocabulary.record_vocabulary(model_dir, vocab_file)

  def data(name, split, shuffle, num_epochs=None):
    return input_pipeline.make_sharded_input(
      name,
      task_feature_lengths,
      feature_converter,
      batch_size,
      seed,
      num_input_shards,
      split=split,
      shuffle=shuffle,
      num_epochs=num_epochs,
    )

  train_batches = data(mixture_or_task_name, "train", True)
  # One pass over each eval split, at most eval_steps batches: a small split is read
  # once (its last batch padded), never repeated, so num_examples is the true count.
  eval_batches = {
    task: (lambda task=task: data(task, eval_split, False, num_epochs=1).first(eval_steps))
    for task in eval_tasks
  }
  checkpointer = checkpoints.Checkpointer(
    model_dir, checkpoint_every, keep_checkpoints, async_checkpoints, on_unreadable, keep_steps
  )
  phases.lap("setup")
  state = _initial_state(
    steps,
    checkpointer,
    meta,
    train_batches,
    model,
    initial_checkpoint_path,
    seed,
    load_initial_params,
  )
  phases.lap("restore" if int(state.step) else "init")
  if jax.process_index() == 0:
    print(
      startup_summary(
        model,
        steps,
        mixture_or_task_name,
        task_feature_lengths,
        feature_converter,
        batch_size,
        int(state.step),
        train_steps,
        num_microbatches,
      ),
      flush=True,
    )
  writer = metric_writers.make_writer(model_dir, resumed_step=int(state.step))
  phases.lap("setup")
  saved_through = None
  try:
    _, results = train_loop(
      model,
      steps,
      state,
      train_batches,
      checkpointer,
      meta,
      writer,
      eval_batches,
      LoopConfig(train_steps, log_every, eval_every, seed),
      schedule,
      phases,
    )
  except checkpoints.CheckpointSaveError:
    saved_through = checkpointer.last_saved_step() or 0
    raise
  finally:
    checkpointer.close()
    writer.close()
    train_batches.close()
    if saved_through is not None and jax.process_index() == 0:
      metric_writers.hold_back_metrics(model_dir, saved_through)
  phases.lap("close")
  if jax.process_index() == 0:
    print(phases.summary(), flush=True)
  return results


# This process's jitted steps by what they are traced from: a study worker's later runs
# of a shape (other seeds and budgets: the schedule is an argument) neither trace nor
# compile them again.
_STEPS: dict[str, CompiledSteps] = {}


def _steps_of(model: BaseModel, partitioner: Partitioner, num_microbatches: int) -> CompiledSteps:
  """`compile_steps` of the gin-bound optimizer, reused for an identical model, optimizer,
  microbatching and mesh (the key holds every value the steps close over)."""
  key = repr(
    (
      type(model),
      {k: v for k, v in vars(model).items() if k != "network"},
      gin.get_bindings(optimizers.make_optimizer),
      num_microbatches,
      partitioner.mesh,
      partitioner.mesh.device_ids.tolist(),
      partitioner.rules,
    )
  )
  if key not in _STEPS:
    _STEPS[key] = compile_steps(model, optimizers.make_optimizer, partitioner, num_microbatches)
  return _STEPS[key]


def check_memory(
  model: BaseModel,
  steps,
  converter: seqio.FeatureConverter,
  task_feature_lengths: Mapping[str, int],
  rows_per_device: int,
  num_microbatches: int,
) -> None:
  """`memory_check` of this run's train step on its first local device."""
  lengths = converter.get_model_feature_lengths(task_feature_lengths)
  figures = memory_check.estimate(
    model, steps.abstract_state, rows_per_device, lengths, num_microbatches
  )
  memory_check.check(figures, *memory_check.device_memory(jax.local_devices()[0]))


def _data_record(
  task: str,
  eval_tasks: Sequence[str],
  task_feature_lengths: Mapping[str, int],
  converter: seqio.FeatureConverter,
) -> dict[str, Any]:
  """What the run read and how (meta's `data`): an eval of the checkpoint with no data gin
  reads its eval tasks at its lengths through its converter (`runs/eval_as_trained.gin`)."""
  return {
    "task": task,
    "eval_tasks": list(eval_tasks) or [task],
    "task_feature_lengths": dict(task_feature_lengths),
    "feature_converter": feature_converters.describe_converter(converter),
  }


def _tokens_per_row(
  converter: seqio.FeatureConverter, task_feature_lengths: Mapping[str, int]
) -> dict[str, int]:
  """The counted token features a row feeds the model, and their lengths."""
  lengths = converter.get_model_feature_lengths(task_feature_lengths)
  return {k: int(v) for k, v in token_features(lengths).items()}


def startup_summary(
  model: BaseModel,
  steps,
  task: str,
  task_feature_lengths: Mapping[str, int],
  converter: seqio.FeatureConverter,
  batch_size: int,
  start_step: int,
  train_steps: int,
  num_microbatches: int,
) -> str:
  """What the run is about to do: model, tokens per step and in all, split size, mesh."""
  params = sum(x.size for x in jax.tree.leaves(steps.abstract_state.params))
  row = _tokens_per_row(converter, task_feature_lengths)
  per_step = batch_size * sum(row.values())
  remaining = train_steps - start_step
  documents = input_pipeline.recorded_documents(task, "train")
  split = (
    f"{documents:,} documents (the dataset's split info; tokens per epoch are not recorded)"
    if documents is not None
    else "size not recorded"
  )
  mesh = steps.partitioner.mesh
  microbatches = f", {num_microbatches} microbatches" if num_microbatches > 1 else ""
  return "\n".join(
    [
      f"train: {model.name}, {params:,} parameters",
      f"  tokens per step: {per_step:,} = {batch_size} rows x "
      + " + ".join(f"{n} {k}" for k, n in row.items())
      + microbatches,
      f"  steps {start_step} -> {train_steps}: {remaining:,} to run, "
      f"{remaining * per_step:,} tokens",
      f"  train split of {task}: {split}",
      f"  mesh {dict(mesh.shape)} over {mesh.devices.size} {mesh.devices.flat[0].platform} "
      f"device(s), {jax.process_count()} process(es)",
    ]
  )


def _initial_state(
  steps,
  checkpointer,
  meta,
  train_batches,
  model,
  initial_checkpoint_path,
  seed,
  load_initial_params=checkpoints.load_params,
) -> TrainState:
  """Resume from MODEL_DIR; else finetune from INITIAL_CHECKPOINT_PATH; else initialise.

  A resume restores straight into the sharded abstract state: one copy in memory.
  """
  restored = checkpointer.restore_latest(
    steps.abstract_state.params, steps.abstract_state.opt_state, meta, train_batches
  )
  if checkpointer.restarted and jax.process_index() == 0:
    kept = metric_writers.set_aside_metrics(os.fspath(checkpointer.model_dir))
    if kept:
      print(
        f"restarting from step 0 over unreadable checkpoints; the old metrics are in {kept}",
        file=sys.stderr,
        flush=True,
      )
    checkpointer.clear_tombstone()
  if restored is not None:
    params, opt_state, step = restored
    # On the state's own sharding, like an initialised step: the compiled step is reused.
    step = jax.device_put(jax.numpy.int32(step), steps.state_shardings.step)
    return TrainState(step=step, params=params, opt_state=opt_state)
  if initial_checkpoint_path:
    # Parameters only: a fresh optimizer and step (finetuning).
    return steps.start_from(
      load_initial_params(initial_checkpoint_path, model, steps.state_shardings.params)
    )
  return steps.init(jax.random.key(seed))


def _out_of_space(error: BaseException) -> bool:
  """ENOSPC, whether Python, TensorFlow (input positions) or TensorStore raised it."""
  return getattr(error, "errno", None) == errno.ENOSPC or "No space left on device" in str(error)


def _without_gin_context(error: BaseException) -> str:
  """The error's own first line: gin appends "In call to configurable ..." lines."""
  return str(error).strip().splitlines()[0]


def main() -> None:
  multihost.initialize()
  try:
    results = train()
  except TrainingError as e:
    print(f"error: {_without_gin_context(e)}", file=sys.stderr)
    sys.exit(1)
  except checkpoints.CheckpointSaveError as e:
    print(
      f"error: {_without_gin_context(e)}; the run resumes from the last saved step once "
      "that is fixed",
      file=sys.stderr,
    )
    sys.exit(2)
  except Exception as e:  # pylint: disable=broad-except  # re-raised unless the disk is full
    if not _out_of_space(e):
      raise
    print(
      "error: no space left on device for MODEL_DIR; free some and rerun: training "
      "resumes from the last complete checkpoint",
      file=sys.stderr,
    )
    sys.exit(2)
  if jax.process_index() == 0 and results:
    print(json.dumps(results, indent=1, sort_keys=True))


if __name__ == "__main__":
  gin_utils.run(__spec__.name)
