r"""Prints parameters and FLOPs per sequence for a gin model config, allocating nothing.

  python -m redllm_jax.tools.model_info --gin_file=models/redllm.gin --gin_file=models/sizes/8b.gin \
      --input_length=1024 --target_length=1024 --prompt_length=1000 --output_length=1000

Parameters come from `jax.eval_shape` of the real initialisation, so even the 8B
configs are described on a laptop. Lengths default to the paper's pretraining
setup: DecLLM reads input + target as one 2048-token sequence.
"""

from absl import flags

from redllm_jax import flops, gin_utils, models

_INPUT = flags.DEFINE_integer("input_length", 1024, "Training input (prefix) length.")
_TARGET = flags.DEFINE_integer("target_length", 1024, "Training target length.")
_PROMPT = flags.DEFINE_integer("prompt_length", 1000, "Inference prompt length I.")
_OUTPUT = flags.DEFINE_integer("output_length", 1000, "Inference output length O.")


def describe(
  model, input_length: int, target_length: int, prompt_length: int, output_length: int
) -> dict[str, float]:
  """Parameter counts and FLOPs per sequence of `model`."""
  params = flops.count_params(model.abstract_variables())
  arch, cfg = model.architecture, model.config
  return {
    "embedding_params": params.embedding,
    "non_embedding_params": params.non_embedding,
    "total_params": params.total,
    "training_flops_per_sequence": flops.training_flops(cfg, arch, input_length, target_length),
    "inference_flops_per_sequence": flops.inference_flops(cfg, arch, prompt_length, output_length),
  }


def main() -> None:
  gin_utils.parse_gin(flags.FLAGS.gin_file, flags.FLAGS.gin_bindings)
  model = models.from_gin()
  info = describe(model, _INPUT.value, _TARGET.value, _PROMPT.value, _OUTPUT.value)
  print(f"model: {model.name}")
  for name, value in info.items():
    print(f"{name:>30}: {value:.4g}" if "flops" in name else f"{name:>30}: {value:,}")


if __name__ == "__main__":
  gin_utils.run_flags(main)
