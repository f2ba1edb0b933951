"""Flash attention as a Pallas kernel that reads masks as vectors, never as [q, k] matrices.

Every mask the two networks use is one rule over per-token vectors (see
`functional.AttentionMask`): query i sees key j iff their segment ids are equal
and non-zero and, for causal masks, rank[j] <= rank[i]. DecLLM's causal mask,
the BiAttn prefix, RedLLM's bidirectional encoder, its causal decoder and
cross-attention, packing and padding are all that rule, so one kernel covers
them; it reads O(length) mask inputs and keeps the softmax in VMEM tiles.

The stock Pallas kernels do not: `flash_attention` derives causality from slot
indices (no prefix), and splash attention's masks are static per head. Forward
and backward are ours: the forward saves the log-sum-exp per query, the
backward recomputes probabilities tile by tile (dq over key blocks, dk/dv over
query blocks). Blocks that ranks make invisible are skipped, so a causal mask
costs half the FLOPs of a bidirectional one.

On a TPU the kernel is compiled by Mosaic; on any other platform it runs in
Pallas interpret mode, which is how the tests check it against `einsum`.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from redllm_jax.functional import AttentionMask

Array = jax.Array

BLOCK = 128  # Query and key tile; also the lane width the mask vectors are broadcast to.
SUBLANES = 8
MASKED = -1e30  # Finite, so that a tile with no visible key gives exp(0) * 0, never NaN.
NT = (((1,), (1,)), ((), ()))  # a @ b.T
TN = (((0,), (0,)), ((), ()))  # a.T @ b


def flash_attention(q: Array, k: Array, v: Array, mask: AttentionMask) -> Array:
  """Softmax(q k^T / sqrt(d)) v for q [b,q,h,d], k/v [b,k,h,d]; zeros for blind queries."""
  return lax.platform_dependent(
    q,
    k,
    v,
    mask,
    tpu=functools.partial(_attention, interpret=False),
    default=functools.partial(_attention, interpret=True),
  )


def _attention(q: Array, k: Array, v: Array, mask: AttentionMask, interpret: bool) -> Array:
  q_len, k_len = q.shape[1], k.shape[1]
  to_bhld = lambda x, n: _pad(jnp.transpose(x, (0, 2, 1, 3)), 2, n)
  causal = mask.q_ranks is not None
  inputs = _MaskInputs.build(mask, q_len, k_len, causal)
  out = _flash(
    to_bhld(q, q_len),
    to_bhld(k, k_len),
    to_bhld(v, k_len),
    inputs,
    causal,
    q.shape[-1] ** -0.5,
    interpret,
  )
  return jnp.transpose(out[:, :, :q_len], (0, 2, 1, 3))


def _round_up(n: int) -> int:
  return -(-n // BLOCK) * BLOCK


def _pad(x: Array, axis: int, length: int) -> Array:
  widths = [(0, 0)] * x.ndim
  widths[axis] = (0, _round_up(length) - length)
  return jnp.pad(x, widths)


class _MaskInputs(NamedTuple):
  """The mask's vectors in the kernel's layouts, padded to whole blocks (segment 0).

  Query vectors are broadcast across 128 lanes and key vectors across 8 sublanes,
  the layouts Mosaic reads a column and a row in without relayout. `kv_end[b, i]`
  is how many key blocks query block i can see and `q_start[b, j]` the first
  query block that sees key block j; both come from the ranks.
  """

  q_vecs: Array  # [b, 2 (segment, rank), q, 128]
  k_vecs: Array  # [b, 2, 8, k]
  kv_end: Array  # [b, q blocks]
  q_start: Array  # [b, k blocks]

  @classmethod
  def build(cls, mask: AttentionMask, q_len: int, k_len: int, causal: bool) -> "_MaskInputs":
    q_rank = mask.q_ranks if causal else jnp.zeros_like(mask.q_segments)
    k_rank = mask.k_ranks if causal else jnp.zeros_like(mask.k_segments)
    q_pair = jnp.stack([_pad(mask.q_segments, 1, q_len), _pad(q_rank, 1, q_len)], 1)
    k_pair = jnp.stack([_pad(mask.k_segments, 1, k_len), _pad(k_rank, 1, k_len)], 1)
    batch, nq, nk = q_pair.shape[0], _round_up(q_len) // BLOCK, _round_up(k_len) // BLOCK
    if causal:
      # Padded keys have segment 0 and are masked anyway; give them the largest
      # rank so they never widen a block's visible range.
      k_blocks = jnp.where(k_pair[:, 0] == 0, jnp.iinfo(jnp.int32).max, k_pair[:, 1])
      q_blocks = jnp.where(q_pair[:, 0] == 0, jnp.iinfo(jnp.int32).min, q_pair[:, 1])
      k_min = k_blocks.reshape(batch, nk, BLOCK).min(-1)
      q_max = q_blocks.reshape(batch, nq, BLOCK).max(-1)
      visible = k_min[:, None, :] <= q_max[:, :, None]  # [b, nq, nk]
      kv_end = jnp.max(jnp.where(visible, jnp.arange(1, nk + 1), 0), axis=2)
      q_start = jnp.min(jnp.where(visible, jnp.arange(nq)[:, None], nq), axis=1)
    else:
      kv_end = jnp.full((batch, nq), nk, jnp.int32)
      q_start = jnp.zeros((batch, nk), jnp.int32)
    q_vecs = jnp.broadcast_to(q_pair[..., None], q_pair.shape + (BLOCK,))  # [b, 2, q, 128]
    k_vecs = jnp.broadcast_to(k_pair[:, :, None], (batch, 2, SUBLANES, k_pair.shape[-1]))
    return cls(
      q_vecs.astype(jnp.int32),
      k_vecs.astype(jnp.int32),
      kv_end.astype(jnp.int32),
      q_start.astype(jnp.int32),
    )


def _visible(q_vecs: Array, k_vecs: Array, causal: bool) -> Array:
  """[BLOCK, BLOCK] mask from a query tile [2, BLOCK, 128] and a key tile [2, 8, BLOCK]."""
  q_seg, k_seg = q_vecs[0], k_vecs[0, :1]
  seen = (q_seg == k_seg) & (k_seg != 0)
  if causal:
    seen &= k_vecs[1, :1] <= q_vecs[1]
  return seen


def _probabilities(q, k, q_vecs, k_vecs, scale, causal, lse=None):
  """Scaled scores and their mask; with `lse`, the softmax probabilities instead."""
  s = lax.dot_general(q, k, NT, preferred_element_type=jnp.float32) * scale
  seen = _visible(q_vecs, k_vecs, causal)
  if lse is None:
    return jnp.where(seen, s, MASKED), seen
  return jnp.where(seen, jnp.exp(s - lse), 0.0)


# Grids are (batch, head, outer block, inner block): the inner axis walks the key
# blocks (forward, dq) or query blocks (dk/dv) while VMEM scratch accumulates, and
# only one tile of each operand is in VMEM at a time. Inner blocks the ranks make
# invisible are skipped, and their index maps repeat the last visible block so the
# pipeline does not fetch them either.


def _fwd_kernel(
  kv_end_ref,
  q_start_ref,
  q_ref,
  k_ref,
  v_ref,
  qv_ref,
  kv_ref,
  o_ref,
  lse_ref,
  m_scr,
  l_scr,
  acc_scr,
  *,
  scale,
  causal,
):
  del q_start_ref
  b, i, j = pl.program_id(0), pl.program_id(2), pl.program_id(3)

  @pl.when(j == 0)
  def _init():
    m_scr[...] = jnp.full(m_scr.shape, MASKED, jnp.float32)
    l_scr[...] = jnp.zeros(l_scr.shape, jnp.float32)
    acc_scr[...] = jnp.zeros(acc_scr.shape, jnp.float32)

  @pl.when(j < kv_end_ref[b, i])
  def _accumulate():
    s, seen = _probabilities(q_ref[...], k_ref[...], qv_ref[...], kv_ref[...], scale, causal)
    m, l = m_scr[:, :1], l_scr[:, :1]
    m_new = jnp.maximum(m, jnp.max(s, axis=1, keepdims=True))
    p = jnp.where(seen, jnp.exp(s - m_new), 0.0)
    alpha = jnp.exp(m - m_new)
    l_scr[...] = jnp.broadcast_to(alpha * l + jnp.sum(p, axis=1, keepdims=True), l_scr.shape)
    m_scr[...] = jnp.broadcast_to(m_new, m_scr.shape)
    v = v_ref[...]
    acc_scr[...] = alpha * acc_scr[...] + lax.dot(
      p.astype(v.dtype), v, preferred_element_type=jnp.float32
    )

  @pl.when(j == pl.num_programs(3) - 1)
  def _finish():
    m, l = m_scr[:, :1], l_scr[:, :1]
    seen_any = l > 0
    o_ref[...] = jnp.where(seen_any, acc_scr[...] / jnp.where(seen_any, l, 1.0), 0.0).astype(
      o_ref.dtype
    )
    # Blind queries get a huge lse, so the backward's probabilities are exactly 0.
    lse = jnp.where(seen_any, m + jnp.log(jnp.where(seen_any, l, 1.0)), -MASKED)
    lse_ref[...] = jnp.broadcast_to(lse, lse_ref.shape)


def _dq_kernel(
  kv_end_ref,
  q_start_ref,
  q_ref,
  k_ref,
  v_ref,
  qv_ref,
  kv_ref,
  do_ref,
  lse_ref,
  delta_ref,
  dq_ref,
  dq_scr,
  *,
  scale,
  causal,
):
  del q_start_ref
  b, i, j = pl.program_id(0), pl.program_id(2), pl.program_id(3)

  @pl.when(j == 0)
  def _init():
    dq_scr[...] = jnp.zeros(dq_scr.shape, jnp.float32)

  @pl.when(j < kv_end_ref[b, i])
  def _accumulate():
    k, do = k_ref[...], do_ref[...]
    p = _probabilities(q_ref[...], k, qv_ref[...], kv_ref[...], scale, causal, lse_ref[:, :1])
    dp = lax.dot_general(do, v_ref[...], NT, preferred_element_type=jnp.float32)
    ds = p * (dp - delta_ref[:, :1]) * scale
    dq_scr[...] += lax.dot(ds.astype(k.dtype), k, preferred_element_type=jnp.float32)

  @pl.when(j == pl.num_programs(3) - 1)
  def _finish():
    dq_ref[...] = dq_scr[...].astype(dq_ref.dtype)


def _dkv_kernel(
  kv_end_ref,
  q_start_ref,
  q_ref,
  k_ref,
  v_ref,
  qv_ref,
  kv_ref,
  do_ref,
  lse_ref,
  delta_ref,
  dk_ref,
  dv_ref,
  dk_scr,
  dv_scr,
  *,
  scale,
  causal,
):
  del kv_end_ref
  b, j, i = pl.program_id(0), pl.program_id(2), pl.program_id(3)

  @pl.when(i == 0)
  def _init():
    dk_scr[...] = jnp.zeros(dk_scr.shape, jnp.float32)
    dv_scr[...] = jnp.zeros(dv_scr.shape, jnp.float32)

  @pl.when(i >= q_start_ref[b, j])
  def _accumulate():
    q, do = q_ref[...], do_ref[...]
    p = _probabilities(q, k_ref[...], qv_ref[...], kv_ref[...], scale, causal, lse_ref[:, :1])
    dv_scr[...] += lax.dot_general(p.astype(do.dtype), do, TN, preferred_element_type=jnp.float32)
    dp = lax.dot_general(do, v_ref[...], NT, preferred_element_type=jnp.float32)
    ds = p * (dp - delta_ref[:, :1]) * scale
    dk_scr[...] += lax.dot_general(ds.astype(q.dtype), q, TN, preferred_element_type=jnp.float32)

  @pl.when(i == pl.num_programs(3) - 1)
  def _finish():
    dk_ref[...] = dk_scr[...].astype(dk_ref.dtype)
    dv_ref[...] = dv_scr[...].astype(dv_ref.dtype)


def _q_side(outer_is_query: bool, q_blocks: int):
  """Block index along the query axis, as a function of the grid and the prefetched bounds."""
  if outer_is_query:
    return lambda b, i, j, kv_end, q_start: i
  # dk/dv: start at the first query block that sees this key block (clamped when none does).
  return lambda b, j, i, kv_end, q_start: jnp.minimum(jnp.maximum(i, q_start[b, j]), q_blocks - 1)


def _k_side(outer_is_query: bool):
  """Block index along the key axis; past the last visible block, it stays there."""
  if outer_is_query:
    return lambda b, i, j, kv_end, q_start: jnp.clip(j, 0, jnp.maximum(kv_end[b, i] - 1, 0))
  return lambda b, j, i, kv_end, q_start: j


def _specs(d: int, q_blocks: int, outer_is_query: bool):
  """BlockSpecs for a query-side tile, a key-side tile, and the query/key mask vectors."""
  q_of, k_of = _q_side(outer_is_query, q_blocks), _k_side(outer_is_query)
  return {
    "q": lambda width: pl.BlockSpec(
      (None, None, BLOCK, width), lambda b, h, o, n, *r: (b, h, q_of(b, o, n, *r), 0)
    ),
    "k": pl.BlockSpec((None, None, BLOCK, d), lambda b, h, o, n, *r: (b, h, k_of(b, o, n, *r), 0)),
    "q_vecs": pl.BlockSpec(
      (None, 2, BLOCK, BLOCK), lambda b, h, o, n, *r: (b, 0, q_of(b, o, n, *r), 0)
    ),
    "k_vecs": pl.BlockSpec(
      (None, 2, SUBLANES, BLOCK), lambda b, h, o, n, *r: (b, 0, 0, k_of(b, o, n, *r))
    ),
  }


def _call(
  kernel,
  grid,
  in_specs,
  out_specs,
  out_shape,
  scratch,
  masks: _MaskInputs,
  causal,
  scale,
  interpret,
  *operands,
):
  spec = pltpu.PrefetchScalarGridSpec(
    num_scalar_prefetch=2, grid=grid, in_specs=in_specs, out_specs=out_specs, scratch_shapes=scratch
  )
  params = pltpu.CompilerParams(
    dimension_semantics=("parallel", "parallel", "parallel", "arbitrary")
  )
  fn = pl.pallas_call(
    functools.partial(kernel, scale=scale, causal=causal),
    grid_spec=spec,
    out_shape=out_shape,
    compiler_params=params,
    interpret=interpret,
  )
  return fn(masks.kv_end, masks.q_start, *operands)


def _forward(q, k, v, masks, causal, scale, interpret):
  (b, h, q_len, d), k_len = q.shape, k.shape[2]
  sp = _specs(d, q_len // BLOCK, outer_is_query=True)
  f32 = lambda width: pltpu.VMEM((BLOCK, width), jnp.float32)
  return _call(
    _fwd_kernel,
    (b, h, q_len // BLOCK, k_len // BLOCK),
    [sp["q"](d), sp["k"], sp["k"], sp["q_vecs"], sp["k_vecs"]],
    [sp["q"](d), sp["q"](BLOCK)],
    [
      jax.ShapeDtypeStruct(q.shape, q.dtype),
      jax.ShapeDtypeStruct((b, h, q_len, BLOCK), jnp.float32),
    ],
    [f32(BLOCK), f32(BLOCK), f32(d)],
    masks,
    causal,
    scale,
    interpret,
    q,
    k,
    v,
    masks.q_vecs,
    masks.k_vecs,
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _flash(q, k, v, masks, causal, scale, interpret):
  return _forward(q, k, v, masks, causal, scale, interpret)[0]


def _flash_fwd(q, k, v, masks, causal, scale, interpret):
  out, lse = _forward(q, k, v, masks, causal, scale, interpret)
  return out, (q, k, v, masks, out, lse)


def _flash_bwd(causal, scale, interpret, residuals, d_out):
  q, k, v, masks, out, lse = residuals
  (b, h, q_len, d), k_len = q.shape, k.shape[2]
  delta = jnp.sum(d_out.astype(jnp.float32) * out.astype(jnp.float32), -1, keepdims=True)
  delta = jnp.broadcast_to(delta, lse.shape)
  operands = (q, k, v, masks.q_vecs, masks.k_vecs, d_out, lse, delta)
  f32 = lambda width: pltpu.VMEM((BLOCK, width), jnp.float32)
  sp = _specs(d, q_len // BLOCK, outer_is_query=True)
  in_specs = [
    sp["q"](d),
    sp["k"],
    sp["k"],
    sp["q_vecs"],
    sp["k_vecs"],
    sp["q"](d),
    sp["q"](BLOCK),
    sp["q"](BLOCK),
  ]
  dq = _call(
    _dq_kernel,
    (b, h, q_len // BLOCK, k_len // BLOCK),
    in_specs,
    sp["q"](d),
    jax.ShapeDtypeStruct(q.shape, q.dtype),
    [f32(d)],
    masks,
    causal,
    scale,
    interpret,
    *operands,
  )
  sp = _specs(d, q_len // BLOCK, outer_is_query=False)
  in_specs = [
    sp["q"](d),
    sp["k"],
    sp["k"],
    sp["q_vecs"],
    sp["k_vecs"],
    sp["q"](d),
    sp["q"](BLOCK),
    sp["q"](BLOCK),
  ]
  dk, dv = _call(
    _dkv_kernel,
    (b, h, k_len // BLOCK, q_len // BLOCK),
    in_specs,
    [sp["k"], sp["k"]],
    [jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)],
    [f32(d), f32(d)],
    masks,
    causal,
    scale,
    interpret,
    *operands,
  )
  return dq, dk, dv, None


_flash.defvjp(_flash_fwd, _flash_bwd)
