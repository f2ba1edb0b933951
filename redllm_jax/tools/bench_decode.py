"""The decode section: cached greedy decoding's tokens/s for both architectures, and
uncached decoding (the forward recomputed for every new token) to show the caches' effect."""

import dataclasses
import statistics
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from redllm_jax import flops
from redllm_jax.decoding import DecodingConfig
from redllm_jax.models import BaseModel
from redllm_jax.tools.bench_common import ARCHS, build_model


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


def uncached_decode_fn(model: BaseModel, prompt_len: int, new_tokens: int) -> Callable:
  """Greedy decoding that recomputes the whole forward pass for every generated token."""

  def decode(params, prompts):
    batch = prompts.shape[0]
    generated = jnp.zeros((batch, new_tokens), jnp.int32)

    def body(t, generated):
      if model.architecture == "redllm":
        dec_in = jnp.pad(generated[:, :-1], ((0, 0), (1, 0)))  # start token 0
        features = {
          "encoder_input_tokens": prompts,
          "decoder_input_tokens": dec_in,
          "decoder_target_tokens": jnp.where(jnp.arange(new_tokens) <= t, 2, 0)
          * jnp.ones_like(generated),
        }
        pos = t
      else:
        seq = jnp.concatenate([jnp.zeros((batch, 1), jnp.int32), prompts, generated], 1)[:, :-1]
        # Positions after the current one are padding (segment 0), like unfilled slots.
        real = (jnp.arange(seq.shape[1]) <= prompt_len + t).astype(jnp.int32)
        features = {
          "decoder_input_tokens": seq,
          "decoder_target_tokens": jnp.broadcast_to(real * 2, seq.shape),
        }
        pos = prompt_len + t
      logits = model.logits(params, features)
      token = jnp.argmax(logits[:, pos], axis=-1).astype(jnp.int32)
      return generated.at[:, t].set(token)

    return jax.lax.fori_loop(0, new_tokens, body, generated)

  return jax.jit(decode)


def decode_setup(arch: str, size: str, batch: int, length: int, uncached: bool):
  """(figures so far, cached run, its prefill alone, uncached run or None) for greedy
  decoding of `length` new tokens after `length`-token prompts. Runs block and return
  the tokens; the prefill run is the same call generating one token."""
  model = build_model(arch, size)
  params = model.init_params(jax.random.key(0))
  rng = np.random.RandomState(0)
  prompts = jnp.asarray(rng.randint(2, model.config.vocab_size, (batch, length)), jnp.int32)
  lengths = jnp.full((batch,), length, jnp.int32)
  # eos_id = -1: never stops early, so every run generates exactly `length` tokens.
  cfg = DecodingConfig(max_new_tokens=length, eos_id=-1)
  predict = lambda cfg: jax.jit(
    lambda p, x, n: model.predict_batch(p, x, n, jax.random.key(0), cfg).tokens
  )
  cached, first = predict(cfg), predict(dataclasses.replace(cfg, max_new_tokens=1))
  tic = time.perf_counter()
  decoding_params = model.decoding_params(params, cfg)
  cached_tokens = np.asarray(cached(decoding_params, prompts, lengths))
  info = {
    "arch": arch,
    "size": size,
    "batch": batch,
    "prompt": length,
    "generate": length,
    "params": flops.count_params(model.abstract_params()).total,
    "step_weight_bytes": decode_step_weight_bytes(model.abstract_params()),
    "cached_compile_s": time.perf_counter() - tic,
    "inference_flops_per_seq": flops.inference_flops(model.config, arch, length, length),
  }
  run_cached = lambda: jax.block_until_ready(cached(decoding_params, prompts, lengths))
  run_prefill = lambda: jax.block_until_ready(first(decoding_params, prompts, lengths))
  run_uncached = None
  if uncached:
    fn = uncached_decode_fn(model, length, length)
    info["uncached_matches_cached"] = float(
      np.mean(np.asarray(fn(params, prompts)) == cached_tokens)
    )
    run_uncached = lambda: jax.block_until_ready(fn(params, prompts))
  return info, run_cached, run_prefill, run_uncached


def decode_compare(
  size: str, batch: int, length: int, repeats: int, uncached: bool
) -> dict[str, Any]:
  """Both architectures' decoding, timed alternately (Dec, Red, Dec, ...) so that a
  change of machine load hits both; best and median per architecture."""
  setups = {arch: decode_setup(arch, size, batch, length, uncached) for arch in ARCHS}
  times = {(arch, kind): [] for arch in ARCHS for kind in ("cached", "uncached")}
  for i in range(repeats):
    for arch, (_, run_cached, _, run_uncached) in setups.items():
      for kind, fn in (("cached", run_cached), ("uncached", run_uncached)):
        if fn is None or (kind == "uncached" and i >= max(1, repeats - 1)):
          continue
        tic = time.perf_counter()
        fn()
        times[(arch, kind)].append(time.perf_counter() - tic)
  out = {}
  for arch, (info, *_) in setups.items():
    r = dict(info)
    for kind in ("cached", "uncached"):
      t = times[(arch, kind)]
      if t:
        r.update(
          {
            f"{kind}_best_s": min(t),
            f"{kind}_median_s": statistics.median(t),
            f"{kind}_tokens_per_s": batch * length / min(t),
          }
        )
    if "uncached_tokens_per_s" in r:
      r["cache_speedup"] = r["cached_tokens_per_s"] / r["uncached_tokens_per_s"]
    out[arch] = r
  return out


def decode_section(
  sizes: Sequence[str],
  decode_batch: int,
  decode_length: int,
  repeats: int,
  uncached: bool,
  log: Callable[[str], None],
) -> dict[str, Any]:
  """The decode section's figures, `{arch}_{size}`, and each size's Red/Dec ratio."""
  out = {}
  for size in sizes:
    rows = decode_compare(size, decode_batch, decode_length, repeats, uncached)
    for arch, r in rows.items():
      out[f"{arch}_{size}"] = r
      extra = (
        f"  uncached {r['uncached_tokens_per_s']:8.0f} tok/s  cache speedup "
        f"{r['cache_speedup']:.1f}x"
        if uncached
        else ""
      )
      log(
        f"decode {arch:7s} {size:5s} {decode_batch}x({decode_length}+{decode_length}): "
        f"cached {r['cached_tokens_per_s']:8.0f} tok/s{extra}"
      )
    ratio = rows["redllm"]["cached_tokens_per_s"] / rows["decllm"]["cached_tokens_per_s"]
    out[f"red_over_dec_{size}"] = ratio
    log(
      f"decode RedLLM/DecLLM {size}: {ratio:.2f}x (params "
      f"{rows['redllm']['params'] / 1e6:.1f}M vs {rows['decllm']['params'] / 1e6:.1f}M)"
    )
  return out
