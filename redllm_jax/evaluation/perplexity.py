r"""Perplexity and token accuracy of a checkpoint on seqio tasks/mixtures.

  python -m redllm_jax.evaluation.perplexity --gin_file=models/redllm_tiny.gin \
      --gin_file=data/demo_pretrain_red.gin --gin_file=runs/eval.gin \
      --gin.CHECKPOINT_PATH=\"runs/demo/redllm\" --gin.OUTPUT_DIR=\"runs/demo/redllm/eval\" \
      --gin.EVAL_TASKS="['demo_redpajama', 'demo_paloma_pydoc']"

Writes OUTPUT_DIR/eval_results.json and TensorBoard scalars `{task}/{metric}` at the
checkpoint's step. A missing checkpoint, a checkpoint of the other architecture,
or a converter that does not fit the model: one line, exit 2.


Every example of the split is read once, in order (`shuffle=False, num_epochs=1`),
through the run's feature converter; the last partial batch is padded with empty
rows (zero loss weight), so no example is dropped. Per batch the jitted
`model.loss_fn` returns metric sums, which add up over batches (and processes)
before `models.summarize_metrics` turns them into per-token averages:
loss, cross_entropy, perplexity = exp(cross_entropy), z_loss, accuracy, num_tokens,
num_examples.
"""
import dataclasses
import json
import os
from typing import Any, Iterator, Mapping, Optional, Sequence

import gin
import jax
import numpy as np
import seqio

from redllm_jax.data import input_pipeline
from redllm_jax import gin_utils
from redllm_jax.evaluation import checkpoint_loading
from redllm_jax.gin_utils import ConfigError
from redllm_jax.models import summarize_metrics

Batch = dict[str, np.ndarray]


@gin.configurable
@dataclasses.dataclass(frozen=True)
class EvalSettings:
  split: str = "validation"
  batch_size: int = 8
  max_batches: Optional[int] = None  # None: the whole split.


def check_converter(model, converter: seqio.FeatureConverter) -> None:
  """One-line error when the feature converter feeds the other architecture."""
  encdec = isinstance(converter, seqio.EncDecFeatureConverter)
  if encdec != (model.architecture == "redllm"):
    raise ConfigError(f"feature converter {type(converter).__name__} does not fit a "
                      f"{model.architecture} model (use the data gin of its architecture)")


def eval_batches(task: str, feature_lengths: Mapping[str, int],
                 converter: seqio.FeatureConverter, batch_size: int, split: str = "validation",
                 max_batches: Optional[int] = None) -> Iterator[Batch]:
  """Batches of exactly `batch_size` rows; the last is padded with all-zero rows."""
  examples = input_pipeline.make_input_iterator(
      task, feature_lengths, converter, batch_size=1, seed=0, split=split, shuffle=False,
      num_epochs=1)
  rows: list[Batch] = []
  produced = 0
  for example in examples:
    rows.append(example)
    if len(rows) == batch_size:
      yield {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
      rows, produced = [], produced + 1
      if max_batches is not None and produced >= max_batches:
        return
  if rows:
    pad = batch_size - len(rows)
    yield {k: np.concatenate([r[k] for r in rows] + [np.zeros((pad,) + rows[0][k].shape[1:],
                                                               rows[0][k].dtype)])
           for k in rows[0]}


def _sum_over_processes(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  if jax.process_count() == 1:
    return sums
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  gathered = multihost_utils.process_allgather(sums)
  return {k: np.sum(v, axis=0) for k, v in gathered.items()}


def evaluate_task(model, params: Any, task: str, feature_lengths: Mapping[str, int],
                  converter: seqio.FeatureConverter, settings: EvalSettings = EvalSettings(),
                  loss_fn=None) -> dict[str, float]:
  """Per-token metrics of `model` on one task or mixture split."""
  check_converter(model, converter)
  loss_fn = loss_fn or jax.jit(model.loss_fn)
  total: Optional[dict[str, np.ndarray]] = None
  for batch in eval_batches(task, feature_lengths, converter, settings.batch_size,
                            settings.split, settings.max_batches):
    _, sums = loss_fn(params, batch)
    sums = {k: np.asarray(v, np.float64) for k, v in sums.items()}
    total = sums if total is None else {k: total[k] + sums[k] for k in total}
  if total is None:
    raise ConfigError(f"{task}/{settings.split} yielded no example")
  metrics = summarize_metrics(_sum_over_processes(total))
  return {k: float(v) for k, v in metrics.items()}


def evaluate(model, params: Any, tasks: Sequence[str], feature_lengths: Mapping[str, int],
             converter: seqio.FeatureConverter, settings: EvalSettings = EvalSettings(),
             output_dir: Optional[str] = None, step: int = 0) -> dict[str, dict[str, float]]:
  """{task: metrics}; with `output_dir`, also eval_results.json and TensorBoard scalars."""
  loss_fn = jax.jit(model.loss_fn)
  results = {t: evaluate_task(model, params, t, feature_lengths, converter, settings, loss_fn)
             for t in tasks}
  if output_dir and jax.process_index() == 0:
    write_results(results, output_dir, step)
  return results


def write_results(results: Mapping[str, Mapping[str, float]], output_dir: str, step: int) -> str:
  """eval_results.json plus TensorBoard scalars `{task}/{metric}` at `step`."""
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  tf.io.gfile.makedirs(output_dir)
  path = os.path.join(output_dir, "eval_results.json")
  with tf.io.gfile.GFile(path, "w") as f:
    json.dump({"step": step, "results": results}, f, indent=1)
  writer = metric_writers.create_default_writer(output_dir, asynchronous=False)
  writer.write_scalars(step, {f"{task}/{name}": value for task, metrics in results.items()
                              for name, value in metrics.items()})
  writer.flush()
  writer.close()
  return path


def format_results(results: Mapping[str, Mapping[str, float]]) -> str:
  lines = [f"{'task':<28} {'ppl':>10} {'accuracy':>9} {'tokens':>10} {'examples':>9}"]
  for task, m in results.items():
    lines.append(f"{task:<28} {m['perplexity']:>10.3f} {m['accuracy']:>9.4f} "
                 f"{int(m['num_tokens']):>10} {int(m['num_examples']):>9}")
  return "\n".join(lines)

def _step(checkpoint_path: str) -> int:
  name = checkpoint_path.rstrip("/").rsplit("/", 1)[-1]
  return int(name) if name.isdigit() else 0


def main() -> None:
  model, params = checkpoint_loading.model_and_params()
  tasks = list(gin_utils.macro_value("EVAL_TASKS", []) or [])
  tasks = tasks or [gin_utils.macro_value("MIXTURE_OR_TASK_NAME")]
  converter = gin_utils.macro_value("FEATURE_CONVERTER")
  lengths = gin_utils.macro_value("TASK_FEATURE_LENGTHS")
  output_dir = str(gin_utils.macro_value("OUTPUT_DIR"))
  try:
    settings = EvalSettings()
    results = evaluate(model, params, tasks, lengths, converter, settings, output_dir,
                                _step(str(gin_utils.macro_value("CHECKPOINT_PATH"))))
  except (ValueError, KeyError) as e:  # unknown task, bad split, ...
    raise gin_utils.ConfigError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
  print(f"{checkpoint_loading.model_name(model)} on {settings.split}:")
  print(format_results(results))
  print(f"wrote {output_dir}/eval_results.json")


if __name__ == "__main__":
  import redllm_jax_tasks  # noqa: F401  pylint: disable=unused-import  # registers tasks
  gin_utils.run(main)
