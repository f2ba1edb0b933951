"""Autoregressive sampling over a cached decode step: greedy, temperature, top-k, top-p.

The loop is one `jax.lax.while_loop` with static shapes, so a jitted decode compiles
once per (batch, prompt length, max_new_tokens) and not once per step. It stops
when every example has emitted EOS or after `max_new_tokens` tokens.
"""

import dataclasses
from typing import Any, Callable, Optional

import flax
import gin
import jax
import jax.numpy as jnp

from redllm_jax.functional import EOS_ID, PAD_ID

Array = jax.Array
StepFn = Callable[[Array, Any], tuple[Array, Any]]


@gin.configurable
@dataclasses.dataclass(frozen=True)
class DecodingConfig:
  """How to pick tokens. temperature 0 is greedy; top_k 0 and top_p 1 disable those filters.

  `cpu_weight_layout` decodes through a copy of the weights laid out for XLA:CPU
  (`BaseModel.decoding_params`, made once per checkpoint): one array per layer
  (with scanned layers XLA:CPU copies every layer's weights out of the stack at
  every step) and kernels [*out, *in] (its matrix-vector products read them 1.4x
  faster); docs/perf_notes.md has the profiles. A TPU reads scanned weights in
  place and would only pay the copy's memory. The default follows the default
  backend; compiling for another platform (`tools/tpu_compile`) sets it.
  """

  max_new_tokens: int = 64
  temperature: float = 0.0
  top_k: int = 0
  top_p: float = 1.0
  eos_id: int = EOS_ID
  pad_id: int = PAD_ID
  cpu_weight_layout: bool = dataclasses.field(
    default_factory=lambda: jax.default_backend() == "cpu"
  )

  def __post_init__(self):
    if self.max_new_tokens < 1:
      raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
    if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
      raise ValueError(
        f"invalid sampling settings: temperature={self.temperature}, "
        f"top_k={self.top_k}, top_p={self.top_p}"
      )


@flax.struct.dataclass
class DecodeOutput:
  tokens: Array  # [b, max_new_tokens], pad after EOS.
  lengths: Array  # [b] generated tokens including EOS.
  logits: Optional[Array] = None  # [b, max_new_tokens, vocab] when asked for.


def filter_logits(logits: Array, top_k: int, top_p: float) -> Array:
  """Sets logits outside the top-k / nucleus (top-p) set to -inf."""
  neg_inf = jnp.finfo(logits.dtype).min
  if top_k:
    kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits < kth, neg_inf, logits)
  if top_p < 1.0:
    sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    # Keep the smallest prefix whose mass reaches top_p (always keep the best token).
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    cutoff = jnp.min(jnp.where(mass_before < top_p, sorted_logits, jnp.inf), axis=-1, keepdims=True)
    logits = jnp.where(logits < cutoff, neg_inf, logits)
  return logits


def sample_tokens(logits: Array, rng: Array, cfg: DecodingConfig) -> Array:
  """One token per row of logits [b, vocab]."""
  if cfg.temperature == 0.0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  logits = filter_logits(logits.astype(jnp.float32) / cfg.temperature, cfg.top_k, cfg.top_p)
  return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)


def decode_loop(
  step_fn: StepFn,
  first_logits: Array,
  state: Any,
  rng: Array,
  cfg: DecodingConfig,
  return_logits: bool = False,
) -> DecodeOutput:
  """Samples from `first_logits`, then feeds each new token through `step_fn`."""
  batch, vocab = first_logits.shape
  steps = cfg.max_new_tokens
  rng, first_rng = jax.random.split(rng)
  first = sample_tokens(first_logits, first_rng, cfg)
  tokens = jnp.full((batch, steps), cfg.pad_id, jnp.int32).at[:, 0].set(first)
  all_logits = jnp.zeros((batch, steps if return_logits else 0, vocab), jnp.float32)
  if return_logits:
    all_logits = all_logits.at[:, 0].set(first_logits.astype(jnp.float32))
  init = (jnp.int32(1), tokens, first == cfg.eos_id, state, rng, all_logits)

  def cond(carry):
    t, _, done, *_ = carry
    return (t < steps) & ~jnp.all(done)

  def body(carry):
    t, tokens, done, state, rng, all_logits = carry
    logits, state = step_fn(tokens[:, t - 1], state)
    rng, step_rng = jax.random.split(rng)
    new = jnp.where(done, cfg.pad_id, sample_tokens(logits, step_rng, cfg))
    tokens = jax.lax.dynamic_update_slice_in_dim(tokens, new[:, None], t, axis=1)
    if return_logits:
      all_logits = jax.lax.dynamic_update_slice_in_dim(
        all_logits, logits[:, None].astype(jnp.float32), t, axis=1
      )
    return t + 1, tokens, done | (new == cfg.eos_id), state, rng, all_logits

  _, tokens, _, _, _, all_logits = jax.lax.while_loop(cond, body, init)
  is_eos = tokens == cfg.eos_id
  lengths = jnp.where(jnp.any(is_eos, axis=1), jnp.argmax(is_eos, axis=1) + 1, steps)
  return DecodeOutput(
    tokens=tokens, lengths=lengths.astype(jnp.int32), logits=all_logits if return_logits else None
  )
