r"""Evaluation entry point: perplexity and token accuracy of a checkpoint on seqio tasks.

  python -m redllm_jax.eval --gin_file=models/redllm_tiny.gin --gin_file=data/demo_pretrain_red.gin \
      --gin_file=runs/eval.gin --gin.CHECKPOINT_PATH=\"runs/demo/redllm\" \
      --gin.OUTPUT_DIR=\"runs/demo/redllm/eval\" \
      --gin.EVAL_TASKS="['demo_redpajama', 'demo_paloma_pydoc']"

Writes OUTPUT_DIR/eval_results.json and TensorBoard scalars `{task}/{metric}` at the
checkpoint's step (see `redllm_jax.evaluate`). A missing checkpoint, a checkpoint of
the other architecture, or a converter that does not fit the model: one line, exit 2.
"""
import gin  # pylint: disable=unused-import

from redllm_jax import entry_utils, evaluate, gin_utils


def _step(checkpoint_path: str) -> int:
  name = checkpoint_path.rstrip("/").rsplit("/", 1)[-1]
  return int(name) if name.isdigit() else 0


def main() -> None:
  model, params = entry_utils.model_and_params()
  tasks = list(gin_utils.macro_value("EVAL_TASKS", []) or [])
  tasks = tasks or [gin_utils.macro_value("MIXTURE_OR_TASK_NAME")]
  converter = gin_utils.macro_value("FEATURE_CONVERTER")
  lengths = gin_utils.macro_value("TASK_FEATURE_LENGTHS")
  output_dir = str(gin_utils.macro_value("OUTPUT_DIR"))
  try:
    settings = evaluate.EvalSettings()
    results = evaluate.evaluate(model, params, tasks, lengths, converter, settings, output_dir,
                                _step(str(gin_utils.macro_value("CHECKPOINT_PATH"))))
  except (ValueError, KeyError) as e:  # unknown task, bad split, ...
    raise gin_utils.ConfigError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
  print(f"{entry_utils.model_name(model)} on {settings.split}:")
  print(evaluate.format_results(results))
  print(f"wrote {output_dir}/eval_results.json")


if __name__ == "__main__":
  import redllm_jax_tasks  # noqa: F401  pylint: disable=unused-import  # registers tasks
  gin_utils.run(main)
