"""The maths both networks share with the standalone loader: token ids, positions,
RMSNorm, RoPE, masks and attention weights, as pure jax.numpy functions.

`layers.py` builds its Flax modules on these, and `export` copies this file next
to `standalone.py`, so an exported model runs with the very same arithmetic and
the two cannot drift. Keep it free of Flax, TensorFlow, seqio and gin.
"""

from typing import NamedTuple

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


class AttentionMask(NamedTuple):
  """Which keys each query sees, as per-token vectors rather than a [q, k] matrix.

  Query i sees key j iff q_segments[i] == k_segments[j] != 0 and, when ranks are
  given (causal masks), k_ranks[j] <= q_ranks[i]. Segment 0 is padding. That one
  rule covers causal, BiAttn-prefix, bidirectional and cross-attention masks with
  packing, so a flash kernel can read O(length) inputs; `dense()` is the matrix.
  """

  q_segments: jax.Array  # [b, q] int32
  k_segments: jax.Array  # [b, k] int32
  q_ranks: jax.Array | None = None  # [b, q] int32; None = bidirectional.
  k_ranks: jax.Array | None = None  # [b, k] int32

  def dense(self) -> jax.Array:
    """Boolean mask [batch, 1, q, k]."""
    mask = (self.q_segments[:, :, None] == self.k_segments[:, None, :]) & (
      self.k_segments[:, None, :] != 0
    )
    if self.q_ranks is not None:
      mask &= self.k_ranks[:, None, :] <= self.q_ranks[:, :, None]
    return mask[:, None]

  def visible_keys(self) -> jax.Array:
    """[b, q] int32: how many keys each query sees (XLA fuses this; no [q, k] buffer)."""
    return jnp.sum(self.dense()[:, 0], axis=-1, dtype=jnp.int32)


def attention_mask(
  q_segments: jax.Array,
  k_segments: jax.Array,
  q_index: jax.Array,
  k_index: jax.Array,
  causal: bool,
  q_prefix: jax.Array | None = None,
) -> AttentionMask:
  """Same non-zero segment, plus causality over slot indices if asked.

  With a bidirectional prefix (DecLLM + BiAttn, T5X's `decoder_causal_attention`:
  1 on each example's leading input tokens), a prefix query ranks as the last slot
  of its prefix, so it sees the whole prefix and nothing after it; every other
  query ranks as its own slot. `q_index` must then be the slots 0..q-1 of the row.
  """
  q_segments, k_segments = q_segments.astype(jnp.int32), k_segments.astype(jnp.int32)
  if not causal:
    return AttentionMask(q_segments, k_segments)
  q_ranks = q_index.astype(jnp.int32)
  if q_prefix is not None:
    q_ranks = jnp.where(
      q_prefix.astype(bool), _prefix_ends(q_segments, q_prefix.astype(bool)), q_ranks
    )
  return AttentionMask(q_segments, k_segments, q_ranks, k_index.astype(jnp.int32))


def _prefix_ends(segments: jax.Array, prefix: jax.Array) -> jax.Array:
  """[b, l]: for each slot, the last slot before the next non-prefix slot or segment start."""
  length = segments.shape[1]
  slots = jnp.arange(length, dtype=jnp.int32)
  starts = jnp.concatenate(
    [jnp.ones_like(prefix[:, :1]), segments[:, 1:] != segments[:, :-1]], axis=1
  )
  stops = jnp.where(~prefix | starts, slots, length)
  next_stop = jnp.concatenate([stops[:, 1:], jnp.full_like(stops[:, :1], length)], axis=1)
  return jax.lax.cummin(next_stop, axis=1, reverse=True) - 1


def _grouped(q: jax.Array, kv_heads: int) -> jax.Array:
  """q [b, l, h, d] as [b, l, kv_heads, h / kv_heads, d]: query head h reads K/V head
  h // group (Hugging Face's `repeat_kv` order)."""
  b, l, h, d = q.shape
  return q.reshape(b, l, kv_heads, h // kv_heads, d)


def attention_probs(q: jax.Array, k: jax.Array, mask: jax.Array) -> jax.Array:
  """Float32 attention weights [b, h, q, k] under a dense mask (blind rows are uniform).

  k [b, k, kv, d] may have fewer heads than q (grouped-query attention)."""
  if k.shape[2] == q.shape[2]:
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
  else:
    logits = jnp.einsum(
      "bqngd,bknd->bngqk", _grouped(q, k.shape[2]), k, preferred_element_type=jnp.float32
    )
    logits = logits.reshape(q.shape[0], q.shape[2], q.shape[1], k.shape[1])
  logits = jnp.where(mask, logits * q.shape[-1] ** -0.5, jnp.finfo(jnp.float32).min)
  return jax.nn.softmax(logits, axis=-1)


def zero_blind_rows(out: jax.Array, mask: jax.Array) -> jax.Array:
  """Zeros the outputs [b, q, h, d] of queries that see no key (padding), never NaN."""
  has_key = jnp.any(mask, axis=-1)  # [b, 1, q]
  return out * jnp.transpose(has_key, (0, 2, 1))[..., None].astype(out.dtype)


def einsum_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: AttentionMask) -> jax.Array:
  """(Softmax(q k^T / sqrt(d)) v, its weights) with q [b,q,h,d], k/v [b,k,kv,d]."""
  dense = mask.dense()
  probs = attention_probs(q, k, dense)
  if v.shape[2] == q.shape[2]:
    out = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v)
  else:
    b, h, lq, lk = probs.shape
    grouped = probs.astype(v.dtype).reshape(b, v.shape[2], h // v.shape[2], lq, lk)
    out = jnp.einsum("bngqk,bknd->bqngd", grouped, v).reshape(q.shape[:3] + v.shape[3:])
  return zero_blind_rows(out, dense), probs
