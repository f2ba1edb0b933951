r"""Perplexity and token accuracy of a checkpoint on seqio tasks or mixtures (the eval command).

  python -m redllm_jax.evaluation.perplexity --gin_file=models/redllm.gin \
      --gin_file=models/sizes/tiny.gin --gin_file=data/demo_pretrain_red.gin \
      --gin_file=runs/eval.gin --gin.CHECKPOINT_PATH=\"runs/demo/redllm\" \
      --gin.OUTPUT_DIR=\"runs/demo/redllm/eval\" \
      --gin.EVAL_TASKS="['demo_redpajama', 'demo_paloma_pydoc']"

It runs training's sharded eval step (`trainer.compile_eval_step`, the model's own
`eval_metric_sums`, DecLLM's `second_half_*` included) over the same sharded
input, reading every example of the split once, in order; the last partial batch
is padded with empty rows, so no example is dropped. Metric sums add up over
batches and processes before `models.summarize_metrics` turns them into
per-token averages: loss, cross_entropy, perplexity = exp(cross_entropy), z_loss,
accuracy, num_tokens, num_examples.

DecLLM's metrics also come as `second_half_*` (perplexity included): over the second
half of each row, the tokens that RedLLM's decoder predicts from the first half, so
the two architectures compare like with like; the table prints it as `ppl 2nd half`.

Writes OUTPUT_DIR/eval_results.json (every metric) and TensorBoard scalars
`{task}/{metric}` at the step of the checkpoint restored. Each task's vocabulary must
be the one the checkpoint recorded at training (`vocabulary.check_vocabulary`). A
missing checkpoint, a checkpoint of the other architecture, a task of another
vocabulary, a missing vocabulary file, or a converter that does not fit the model:
one line, exit 2.
"""

import functools
import json
import os
from typing import Any, Mapping, Optional, Sequence

from clu import metric_writers
import gin
import jax
import seqio
import tensorflow as tf

from redllm_jax import checkpoints, errors, gin_utils, multihost, trainer, validation
from redllm_jax.data import feature_converters, input_pipeline, vocabulary
from redllm_jax.errors import ConfigError
from redllm_jax.models import BaseModel
from redllm_jax.partitioning import Partitioner


@gin.configurable
def evaluate_checkpoint(
  model: Optional[BaseModel] = None,
  checkpoint_path: str = gin.REQUIRED,
  output_dir: Optional[str] = gin.REQUIRED,
  tasks: Optional[Sequence[str]] = None,
  task_feature_lengths: Optional[Mapping[str, int]] = None,
  feature_converter: Optional[seqio.FeatureConverter] = None,
  split: str = "validation",
  batch_size: int = 8,
  max_batches: Optional[int] = None,
) -> dict[str, dict[str, float]]:
  """{task: metrics} of the checkpoint; also eval_results.json and TensorBoard scalars.

  The model is the one the checkpoint describes; a `model` given (a model gin's) must
  match it (else one line). `tasks`, `task_feature_lengths` and `feature_converter` not
  given (no data gin) are the run's own: its eval tasks, at its lengths, through its
  converter, as its checkpoint recorded them.
  """
  model = checkpoints.load_model(checkpoint_path, model)
  if tasks is None or task_feature_lengths is None or feature_converter is None:
    recorded = _recorded_data(checkpoint_path)
    if tasks is None:
      tasks = recorded["eval_tasks"]
    if task_feature_lengths is None:
      task_feature_lengths = recorded["task_feature_lengths"]
    if feature_converter is None:
      feature_converter = feature_converters.converter_from_description(
        recorded["feature_converter"]
      )
  validation.check_counts("perplexity.evaluate_checkpoint", batch_size=batch_size)
  input_pipeline.check_tasks(tasks, model.config.vocab_size)
  for task in tasks:  # Text read with another vocabulary would score as noise.
    vocab_file = input_pipeline.vocabulary_file(task)
    if vocab_file:
      vocabulary.check_vocabulary(checkpoint_path, vocab_file, f"the eval task {task}")
  partitioner = Partitioner()
  validation.check_run(
    model,
    feature_converter,
    task_feature_lengths,
    batch_size,
    partitioner,
    num_microbatches=1,
    num_input_shards=jax.process_count(),
  )
  param_shardings = partitioner.shardings(model.param_axes())
  params, step = checkpoints.load_params_and_step(checkpoint_path, model, param_shardings)
  eval_step = trainer.compile_eval_step(model, partitioner, param_shardings)
  results = {}
  for task in tasks:
    batches = functools.partial(
      input_pipeline.make_sharded_input,
      task,
      task_feature_lengths,
      feature_converter,
      batch_size,
      seed=0,
      num_shards=jax.process_count(),
      split=split,
      shuffle=False,
      num_epochs=1,
    )
    try:
      flat = trainer.evaluate(
        eval_step, partitioner, params, {task: lambda: batches().first(max_batches)}
      )
    except (ValueError, KeyError, tf.errors.OpError) as e:  # a bad split, unreadable files, ...
      raise ConfigError(f"{task}/{split}: {errors.first_line(e)}") from None
    if not flat:
      raise ConfigError(f"{task}/{split} yielded no example")
    results[task] = {k.split("/", 1)[1]: v for k, v in flat.items()}
  if output_dir and jax.process_index() == 0:
    write_results(results, output_dir, step)
  return results


def _recorded_data(checkpoint_path: str) -> dict[str, Any]:
  """The run's data settings from the checkpoint's meta (one line if it has none)."""
  recorded = checkpoints.read_meta(checkpoint_path).get("data")
  if not recorded or not recorded.get("feature_converter"):
    raise ConfigError(
      f"{checkpoint_path} records no data settings (saved before checkpoints "
      "recorded them, or with a converter of your own): include a data gin "
      "and runs/eval.gin"
    )
  return recorded


def write_results(results: Mapping[str, Mapping[str, float]], output_dir: str, step: int) -> str:
  """eval_results.json plus TensorBoard scalars `{task}/{metric}` at `step`."""
  tf.io.gfile.makedirs(output_dir)
  path = os.path.join(output_dir, "eval_results.json")
  with tf.io.gfile.GFile(path, "w") as f:
    json.dump({"step": step, "results": results}, f, indent=1)
  writer = metric_writers.create_default_writer(output_dir, asynchronous=False)
  writer.write_scalars(
    step,
    {
      f"{task}/{name}": value
      for task, metrics in results.items()
      for name, value in metrics.items()
    },
  )
  writer.flush()
  writer.close()
  return path


def format_results(results: Mapping[str, Mapping[str, Any]]) -> str:
  """One row per task; DecLLM's second-half perplexity beside its whole-row one."""
  lines = [
    f"{'task':<28} {'ppl':>10} {'ppl 2nd half':>13} {'accuracy':>9} {'tokens':>10} {'examples':>9}"
  ]
  for task, m in results.items():
    half = f"{m['second_half_perplexity']:>13.3f}" if "second_half_perplexity" in m else " " * 13
    lines.append(
      f"{task:<28} {m['perplexity']:>10.3f} {half} {m['accuracy']:>9.4f} "
      f"{int(m['num_tokens']):>10} {int(m['num_examples']):>9}"
    )
  return "\n".join(lines)


def main() -> None:
  multihost.initialize()
  results = evaluate_checkpoint()
  if jax.process_index() == 0:
    print(format_results(results))


if __name__ == "__main__":
  gin_utils.run(__spec__.name)
