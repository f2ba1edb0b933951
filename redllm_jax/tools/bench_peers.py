"""The peer a user would compare against: Hugging Face transformers on PyTorch (CPU).

`bench --sections=peers` times greedy decoding of the same shapes, batch, dtype
and lengths on both stacks, in alternation, and this machine's memory bandwidth,
which bounds a decode step: every weight it uses is read once per generated token.
It also measures how fast XLA's matrix-vector products read weights (a chain of
kernels in the CPU decoding layout), the bound that XLA's dots put on that step.

- DecLLM's peer is `LlamaForCausalLM` at DecLLM's widths (pre-norm, RoPE, SwiGLU,
  tied embeddings; no QKV norms).
- RedLLM's peer is `T5GemmaForConditionalGeneration` at RedLLM's widths and depths
  (every layer full attention, one embedding table as ours; Gemma's GeLU FFN and
  soft-capping as T5Gemma has them).

The HF models are randomly initialised: the timing does not depend on the
weights, since generation is forced to run all `length` steps (no EOS).
torch and transformers come from the `hf` extra (`pip install -e ".[hf]"`);
without them the section is skipped with the reason.
"""
import statistics
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from redllm_jax.config import TransformerConfig


def missing() -> Optional[str]:
  """Why the peers cannot run here, or None."""
  try:
    import torch  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    import transformers  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    return f"{e.name} is not installed (pip install -e '.[hf]')"
  return None


def memory_bandwidth(megabytes: int = 512, repeats: int = 5) -> float:
  """Best read bandwidth (bytes/s): a jitted sum over a large f32 array, which reads
  each byte once, as a decode step reads each weight once."""
  x = jnp.ones((megabytes * 2**20 // 4,), jnp.float32)
  total = jax.jit(jnp.sum)
  jax.block_until_ready(total(x))
  best = float("inf")
  for _ in range(repeats):
    tic = time.perf_counter()
    jax.block_until_ready(total(x))
    best = min(best, time.perf_counter() - tic)
  return x.nbytes / best


def matvec_bandwidth(batch: int, megabytes: int = 512, repeats: int = 5) -> float:
  """Best bytes/s of XLA's matrix-vector products as a decode step runs them: a chain
  of [batch, 1024] activations times f32 [4096, 1024] / [1024, 4096] kernels stored
  [out, in] (the CPU decoding layout), `megabytes` of kernels, far beyond the caches.
  A decode step cannot read its weights faster than this through XLA's dots."""
  count = max(2, megabytes * 2**20 // (4 * 4096 * 1024) // 2 * 2)
  kernels = [jnp.full((4096, 1024) if i % 2 == 0 else (1024, 4096), 1e-3, jnp.float32)
             for i in range(count)]

  def chain(x, kernels):
    for kernel in kernels:
      x = jnp.einsum("bi,oi->bo", x, kernel)
    return x

  run = jax.jit(chain)
  x = jnp.ones((batch, 1024), jnp.float32)
  jax.block_until_ready(run(x, kernels))
  best = float("inf")
  for _ in range(repeats):
    tic = time.perf_counter()
    jax.block_until_ready(run(x, kernels))
    best = min(best, time.perf_counter() - tic)
  return sum(k.nbytes for k in kernels) / best


def decode_step_weight_bytes(abstract_params: Any) -> int:
  """Bytes of the weights one decode step reads: all but the encoder's and the
  cross-attention K/V projections', which RedLLM runs once per prompt."""
  total = 0
  for path, leaf in jax.tree_util.tree_leaves_with_path(abstract_params):
    keys = [str(getattr(k, "key", k)) for k in path]
    cross_kv = "cross_attention" in keys and any(k.startswith(("key", "value")) for k in keys)
    if not (keys[0].startswith("encoder") or cross_kv):
      total += int(np.prod(leaf.shape)) * np.dtype(leaf.dtype).itemsize
  return total


def hf_model(arch: str, cfg: TransformerConfig):
  """A random-init HF PyTorch model at our config's widths, in float32, eval mode."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  common = dict(vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.d_ff,
                num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.kv_heads,
                head_dim=cfg.head_dim, rms_norm_eps=cfg.norm_epsilon, tie_word_embeddings=True,
                pad_token_id=0, eos_token_id=1, bos_token_id=0)
  torch.manual_seed(0)
  if arch == "decllm":
    config = transformers.LlamaConfig(num_hidden_layers=cfg.num_layers, **common)
    model = transformers.LlamaForCausalLM(config)
  else:
    module = lambda layers: transformers.T5GemmaModuleConfig(
        num_hidden_layers=layers, layer_types=["full_attention"] * layers, **common)
    config = transformers.T5GemmaConfig(encoder=module(cfg.num_encoder_layers),
                                        decoder=module(cfg.num_decoder_layers),
                                        vocab_size=cfg.vocab_size)
    model = transformers.T5GemmaForConditionalGeneration(config)
    # T5Gemma gives the encoder its own table; ours is one table for both sides.
    model.model.encoder.embed_tokens = model.model.decoder.embed_tokens
  return model.float().eval()


def hf_decode_fn(model, prompts: np.ndarray, length: int, threads: int) -> Callable[[], Any]:
  """Greedy `generate` of exactly `length` tokens with the KV cache, on `threads` threads."""
  import torch  # pylint: disable=g-import-not-at-top
  ids = torch.as_tensor(prompts, dtype=torch.long)
  attention = torch.ones_like(ids)

  def run():
    torch.set_num_threads(threads)
    with torch.inference_mode():
      return model.generate(input_ids=ids, attention_mask=attention, max_new_tokens=length,
                            min_new_tokens=length, do_sample=False, use_cache=True)
  return run


def hf_train_fn(model, arch: str, batch: int, tokens: int, threads: int) -> Callable[[], Any]:
  """One training step (forward, backward, transformers' Adafactor update) on the
  batch shape bench's train section feeds ours: DecLLM rows of `tokens`, RedLLM rows
  split in half between encoder and decoder."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(0)
  ids = lambda n: torch.as_tensor(rng.randint(2, model.config.vocab_size, (batch, n)))
  if arch == "decllm":
    inputs = {"input_ids": ids(tokens)}
    inputs["labels"] = inputs["input_ids"]
  else:
    inputs = {"input_ids": ids(tokens // 2), "labels": ids(tokens - tokens // 2)}
  optimizer = transformers.optimization.Adafactor(
      model.parameters(), lr=1e-3, relative_step=False, scale_parameter=False)
  model.train()

  def run():
    torch.set_num_threads(threads)
    optimizer.zero_grad()
    loss = model(**inputs).loss
    loss.backward()
    optimizer.step()
    return float(loss.detach())
  return run


def timed(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
  """Seconds per call of each fn, run in alternation (a, b, c, a, b, c, ...) after a warmup."""
  for fn in fns.values():
    fn()
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      tic = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - tic)
  return times


def summary(seconds: list[float], tokens: int) -> dict[str, float]:
  median = statistics.median(seconds)
  return {"best_s": min(seconds), "median_s": median, "tokens_per_s": tokens / median,
          "range_tokens_per_s": [tokens / max(seconds), tokens / min(seconds)]}
