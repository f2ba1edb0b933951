"""The maths both networks share with the standalone loader: token ids, positions,
RMSNorm, RoPE, masks and attention weights, as pure jax.numpy functions.

`layers.py` builds its Flax modules on these, and `export` copies this file next
to `standalone.py`, so an exported model runs with the very same arithmetic and
the two cannot drift. Keep it free of Flax, TensorFlow, seqio and gin.
"""
import jax
import jax.numpy as jnp

# T5's ids: padding, which also starts every decoder input stream (BOS); end of
# sequence; unknown. Vocabularies, batches, decoding and exports all use these.
PAD_ID = 0
BOS_ID = PAD_ID
EOS_ID = 1
UNK_ID = 2


def row_positions(tokens: jax.Array) -> jax.Array:
  """[b, l] int32 positions 0..l-1 of every row (unpacked examples)."""
  return jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)


def rms_norm(x: jax.Array, scale: jax.Array, epsilon: float, dtype) -> jax.Array:
  """RMSNorm over the last axis with a learned scale, computed in float32."""
  x32 = x.astype(jnp.float32)
  normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + epsilon)
  return (normed * scale.astype(jnp.float32)).astype(dtype)


def apply_rope(x: jax.Array, positions: jax.Array, base: float) -> jax.Array:
  """Rotary embedding of x [batch, length, heads, head_dim] at integer positions [batch, length].

  Rotate-half layout (the first and second halves of head_dim pair up). Positions
  are arbitrary per token, which lets the RedLLM decoder continue the encoder's
  numbering and cross-attention rotate queries and keys in one coordinate system.
  """
  half = x.shape[-1] // 2
  inv_freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [b, l, half]
  sin = jnp.sin(angles)[:, :, None, :]
  cos = jnp.cos(angles)[:, :, None, :]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return rotated.astype(x.dtype)


def attention_mask(q_segments: jax.Array, k_segments: jax.Array, q_index: jax.Array,
                   k_index: jax.Array, causal: bool, q_prefix: jax.Array | None = None,
                   k_prefix: jax.Array | None = None) -> jax.Array:
  """Boolean mask [batch, 1, q, k]: same non-zero segment, plus causality if asked.

  Causality compares slot indices (not RoPE positions). Where both the query and
  the key lie in a bidirectional prefix (DecLLM + BiAttn, T5X's
  `decoder_causal_attention`), the causal restriction is lifted.
  """
  mask = (q_segments[:, :, None] == k_segments[:, None, :]) & (k_segments[:, None, :] != 0)
  if causal:
    allowed = q_index[:, :, None] >= k_index[:, None, :]
    if q_prefix is not None:
      allowed |= q_prefix[:, :, None].astype(bool) & k_prefix[:, None, :].astype(bool)
    mask &= allowed
  return mask[:, None]


def attention_probs(q: jax.Array, k: jax.Array, mask: jax.Array) -> jax.Array:
  """Float32 attention weights [b, h, q, k] (rows without a visible key are uniform)."""
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
  logits = jnp.where(mask, logits * q.shape[-1] ** -0.5, jnp.finfo(jnp.float32).min)
  return jax.nn.softmax(logits, axis=-1)


def zero_blind_rows(out: jax.Array, mask: jax.Array) -> jax.Array:
  """Zeros the outputs [b, q, h, d] of queries that see no key (padding), never NaN."""
  has_key = jnp.any(mask, axis=-1)  # [b, 1, q]
  return out * jnp.transpose(has_key, (0, 2, 1))[..., None].astype(out.dtype)


def einsum_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
  """(Softmax(q k^T / sqrt(d)) v, its weights) with q [b,q,h,d], k/v [b,k,h,d]."""
  probs = attention_probs(q, k, mask)
  out = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v)
  return zero_blind_rows(out, mask), probs
