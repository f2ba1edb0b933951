r"""The README's main job until training lands: both tiny networks, side by side.

  python -m redllm_jax.demo

Builds the tiny DecLLM and RedLLM from their gins, randomly initialised, and
decodes the same batch of prompts with each through the cached decoders, at the
paper's 1:1 prompt:generation ratio (scaled down). It prints parameters, FLOPs
per sequence and measured decode throughput. The weights are random, so the
tokens are noise: this shows the machinery and its cost, not quality.
"""
import time

from absl import flags
import gin
import jax
import jax.numpy as jnp
import numpy as np

from redllm_jax import flops, gin_utils
from redllm_jax.decoding import DecodingConfig

_LENGTH = flags.DEFINE_integer("length", 64, "Prompt length and generated length.")
_BATCH = flags.DEFINE_integer("batch", 8, "Prompts per batch.")


def _measure(model, prompts: jax.Array, lengths: jax.Array, cfg: DecodingConfig) -> float:
  """Seconds per decode of the batch, after one compile-and-run."""
  params = model.init_params(jax.random.key(0))
  predict = jax.jit(model.predict_batch, static_argnames=("cfg", "return_logits"))
  jax.block_until_ready(predict(params, prompts, lengths, jax.random.key(1), cfg))
  start = time.perf_counter()
  jax.block_until_ready(predict(params, prompts, lengths, jax.random.key(2), cfg))
  return time.perf_counter() - start


def main() -> None:
  length, batch = _LENGTH.value, _BATCH.value
  prompts = jnp.asarray(np.random.RandomState(0).randint(2, 4096, (batch, length)), jnp.int32)
  lengths = jnp.full((batch,), length, jnp.int32)
  cfg = DecodingConfig(max_new_tokens=length, eos_id=-1)  # Fixed length, no early stop.
  rows = []
  for name in ("decllm_tiny", "redllm_tiny"):
    gin.clear_config()
    gin_utils.parse_gin([f"models/{name}.gin"], [])
    model = gin_utils.build_model()
    seconds = _measure(model, prompts, lengths, cfg)
    params = flops.count_params(model.abstract_variables()).total
    infer = flops.inference_flops(model.config, model.architecture, length, length)
    rows.append((model.architecture, params, infer, batch * length / seconds))
  print(f"random-init tiny models, prompt {length} + generate {length}, batch {batch}")
  print(f"{'model':<8} {'params':>10} {'infer GFLOP/seq':>16} {'decode tok/s':>13}")
  for arch, params, infer, speed in rows:
    print(f"{arch:<8} {params:>10,} {infer / 1e9:>16.3f} {speed:>13.0f}")
  print(f"RedLLM/DecLLM decode speed: {rows[1][3] / rows[0][3]:.2f}x")


if __name__ == "__main__":
  gin_utils.run(main)
