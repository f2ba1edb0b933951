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

import os
import statistics
import time
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from redllm_jax.config import TransformerConfig
from redllm_jax.tools.bench_common import ARCHS, build_model
from redllm_jax.tools.bench_decode import decode_setup
from redllm_jax.tools.bench_train import TRAIN_SHAPES, train_setup


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
  kernels = [
    jnp.full((4096, 1024) if i % 2 == 0 else (1024, 4096), 1e-3, jnp.float32) for i in range(count)
  ]

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


def hf_model(arch: str, cfg: TransformerConfig):
  """A random-init HF PyTorch model at our config's widths, in float32, eval mode."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  common = dict(
    vocab_size=cfg.vocab_size,
    hidden_size=cfg.d_model,
    intermediate_size=cfg.d_ff,
    num_attention_heads=cfg.num_heads,
    num_key_value_heads=cfg.kv_heads,
    head_dim=cfg.head_dim,
    rms_norm_eps=cfg.norm_epsilon,
    tie_word_embeddings=True,
    pad_token_id=0,
    eos_token_id=1,
    bos_token_id=0,
  )
  torch.manual_seed(0)
  if arch == "decllm":
    config = transformers.LlamaConfig(num_hidden_layers=cfg.num_layers, **common)
    model = transformers.LlamaForCausalLM(config)
  else:
    module = lambda layers: transformers.T5GemmaModuleConfig(
      num_hidden_layers=layers, layer_types=["full_attention"] * layers, **common
    )
    config = transformers.T5GemmaConfig(
      encoder=module(cfg.num_encoder_layers),
      decoder=module(cfg.num_decoder_layers),
      vocab_size=cfg.vocab_size,
    )
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
      return model.generate(
        input_ids=ids,
        attention_mask=attention,
        max_new_tokens=length,
        min_new_tokens=length,
        do_sample=False,
        use_cache=True,
      )

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
    model.parameters(), lr=1e-3, relative_step=False, scale_parameter=False
  )
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
  return {
    "best_s": min(seconds),
    "median_s": median,
    "tokens_per_s": tokens / median,
    "range_tokens_per_s": [tokens / max(seconds), tokens / min(seconds)],
  }


PEER_THREADS = (1, 2)  # torch threads; on a loaded 2-core host 1 thread can be faster.


def peers_train_compare(size: str, batch: int, tokens: int, repeats: int) -> dict[str, Any]:
  """Our train step (as the train section runs it) vs HF PyTorch's on the same batch
  shape, alternating; torch on all cores."""
  runs, infos = {}, {}
  for arch in ARCHS:
    infos[arch], runs[f"{arch}/ours"] = train_setup(arch, size, batch, tokens)
    hf = hf_model(arch, build_model(arch, size).config)
    runs[f"{arch}/hf"] = hf_train_fn(hf, arch, batch, tokens, os.cpu_count())
  times = timed(runs, repeats)
  out = {}
  for arch in ARCHS:
    ours, hf = (summary(times[f"{arch}/{who}"], batch * tokens) for who in ("ours", "hf"))
    out[arch] = {
      "batch": batch,
      "tokens_per_row": tokens,
      "ours": ours,
      "hf": hf,
      "ours_over_hf": ours["tokens_per_s"] / hf["tokens_per_s"],
      "kernels_out_first": infos[arch]["kernels_out_first"],
    }
  return out


def peers_compare(size: str, batch: int, length: int, repeats: int) -> dict[str, Any]:
  """Ours vs HF PyTorch greedy decoding, all runs alternating; the faster torch thread
  count is the peer. Also our decode step (the run less its prefill, per token) against
  the bandwidth bound and the bound of XLA's matrix-vector products."""
  bandwidth = memory_bandwidth()
  matvec = matvec_bandwidth(batch)
  runs, infos = {}, {}
  for arch in ARCHS:
    cfg = build_model(arch, size).config
    hf = hf_model(arch, cfg)
    # The prompts decode_setup feeds ours.
    prompts = np.random.RandomState(0).randint(2, cfg.vocab_size, (batch, length))
    info, run_ours, run_prefill, _ = decode_setup(arch, size, batch, length, uncached=False)
    infos[arch] = dict(info, hf_params=sum(p.numel() for p in hf.parameters()))
    runs[f"{arch}/ours"], runs[f"{arch}/ours_prefill"] = run_ours, run_prefill
    for threads in PEER_THREADS:
      runs[f"{arch}/hf_{threads}t"] = hf_decode_fn(hf, prompts, length, threads)
  times = timed(runs, repeats)
  out = {"read_bytes_per_s": bandwidth, "matvec_bytes_per_s": matvec}
  for arch in ARCHS:
    ours = summary(times[f"{arch}/ours"], batch * length)
    peers = {t: summary(times[f"{arch}/hf_{t}t"], batch * length) for t in PEER_THREADS}
    threads = max(peers, key=lambda t: peers[t]["tokens_per_s"])
    prefill_s = statistics.median(times[f"{arch}/ours_prefill"])
    step_s = (ours["median_s"] - prefill_s) / (length - 1)
    weight_bytes = infos[arch]["step_weight_bytes"]
    out[arch] = {
      **infos[arch],
      "ours": ours,
      "hf": peers[threads],
      "hf_threads": threads,
      "hf_all": {f"{t}t": peers[t] for t in PEER_THREADS},
      "ours_over_hf": ours["tokens_per_s"] / peers[threads]["tokens_per_s"],
      "prefill_s": prefill_s,
      "step_s": step_s,
      "bandwidth_bound_s": weight_bytes / bandwidth,
      "step_over_bound": step_s * bandwidth / weight_bytes,
      "matvec_bound_s": weight_bytes / matvec,
      "step_over_matvec_bound": step_s * matvec / weight_bytes,
    }
  return out


def peers_section(
  sizes: Sequence[str],
  decode_batch: int,
  decode_length: int,
  train_batch: int,
  train_length: int,
  repeats: int,
  log: Callable[[str], None],
) -> dict[str, Any]:
  """The peers section's figures per size (decoding, bounds, `train`), or why it was skipped."""
  reason = missing()
  if reason:
    log(f"peers: skipped, {reason}")
    return {"skipped": reason}
  out = {size: peers_compare(size, decode_batch, decode_length, repeats) for size in sizes}
  for size in sizes:
    batch, tokens = TRAIN_SHAPES.get(size, (train_batch, train_length))
    out[size]["train"] = peers_train_compare(size, batch, tokens, repeats)
  for size, rows in out.items():
    log(
      f"memory bandwidth (read): {rows['read_bytes_per_s'] / 1e9:.1f} GB/s; XLA "
      f"matrix-vector products (batch {decode_batch}): "
      f"{rows['matvec_bytes_per_s'] / 1e9:.1f} GB/s"
    )
    for arch in ARCHS:
      r = rows[arch]
      log(
        f"peers {arch:7s} {size:5s} {decode_batch}x({decode_length}+{decode_length}): "
        f"ours {r['ours']['tokens_per_s']:7.1f} tok/s, HF PyTorch "
        f"({r['hf_threads']} thread) {r['hf']['tokens_per_s']:7.1f} tok/s: "
        f"{r['ours_over_hf']:.2f}x; our step {r['step_s'] * 1e3:.1f} ms vs bandwidth "
        f"bound {r['bandwidth_bound_s'] * 1e3:.1f} ms ({r['step_over_bound']:.2f}x), "
        f"matvec bound {r['matvec_bound_s'] * 1e3:.1f} ms "
        f"({r['step_over_matvec_bound']:.2f}x)"
      )
      t = rows["train"][arch]
      log(
        f"peers {arch:7s} {size:5s} train {t['batch']}x{t['tokens_per_row']}: ours "
        f"{t['ours']['tokens_per_s']:7.1f} tok/s, HF PyTorch (Adafactor) "
        f"{t['hf']['tokens_per_s']:7.1f} tok/s: {t['ours_over_hf']:.2f}x"
      )
  return out
