"""Layers shared by DecLLM and RedLLM: RMSNorm, RoPE, attention, SwiGLU, embedding.

Flax modules and pure functions only; no losses and no decoding loops. Every
parameter carries logical axis names ("embed", "heads", "kv", "mlp", "vocab") and
the main activations are constrained to ("batch", "length", ...), so the
partitioner can map them onto any mesh through `logical_axis_rules`.
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from redllm_jax import flash_attention
from redllm_jax import functional as F
from redllm_jax.config import TransformerConfig

Array = jax.Array


def constrain(x: Array, names: tuple[str, ...]) -> Array:
  """Logical sharding constraint; a no-op outside a `logical_axis_rules` context."""
  return nn.with_logical_constraint(x, names)


def _transposed_init(
  init, shape: tuple[int, ...], perm: tuple[int, ...], key: Array, _, dtype=jnp.float32
) -> Array:
  return jnp.transpose(init(key, shape, dtype), perm)


def _dense(x: Array, kernel: Array, out_first: bool, out_dtype) -> Array:
  spec = "...i,oi->...o" if out_first else "...i,io->...o"
  return jnp.einsum(spec, x, kernel, preferred_element_type=out_dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def dense(x: Array, kernel: Array, out_first: bool, out_dtype=None) -> Array:
  """x [..., in] @ kernel [in, out] (or [out, in] when `out_first`), as `out_dtype`.

  Autodiff's maths, but the kernel gradient's dot is laid out for XLA:CPU
  (`_dense_bwd`). The tied embedding's logits are this with the table as [out, in].
  """
  return _dense(x, kernel, out_first, out_dtype)


def _dense_fwd(x: Array, kernel: Array, out_first: bool, out_dtype):
  return _dense(x, kernel, out_first, out_dtype), (x, kernel)


def _dense_bwd(out_first: bool, out_dtype, residuals, g: Array):
  """dx as autodiff; dkernel = sum over tokens of x (x) g with the narrower of x and g on
  the dot's left.

  XLA:CPU's dot wants its left operand's contracted axis (the tokens) minor, so it
  writes that operand again, transposed. Autodiff always puts g on the left: for the
  tied logits that transposed the whole [tokens, vocab] gradient, for SwiGLU the
  [tokens, d_ff] one, the step's costliest copies at the study's shapes
  (docs/perf_notes.md). The narrower operand makes that copy the small one; the
  [in, out] / [out, in] result is then transposed if the kernel is stored the other
  way round, behind a barrier that keeps XLA from folding it back into the dot.
  """
  x, kernel = residuals
  dx = jax.vjp(lambda x: _dense(x, kernel, out_first, out_dtype), x)[1](g)[0]
  x_left = x.shape[-1] <= g.shape[-1]
  left, right = (x, g) if x_left else (g, x)
  tokens = tuple(range(x.ndim - 1))
  dkernel = jax.lax.dot_general(
    left, right, ((tokens, tokens), ((), ())), preferred_element_type=out_dtype
  )  # [left, right] features
  if x_left == out_first:
    dkernel = jax.lax.optimization_barrier(dkernel).T
  return dx, dkernel.astype(kernel.dtype)


dense.defvjp(_dense_fwd, _dense_bwd)


class Projection(nn.Module):
  """x [..., *in] @ kernel [*in, *features], contracting the last `num_in` axes of x.

  Flax's DenseGeneral initialises a flattened kernel and then applies the logical
  sharding constraint to that 2-D value, which fails under a mesh; this keeps the
  kernel in its named shape throughout. Init: fan-in truncated normal (T5X's).
  `out_first` stores the kernel as [*features, *in] (`kernels_out_first`).
  """

  features: tuple[int, ...]
  names: tuple[str, ...]
  num_in: int = 1
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32
  out_first: bool = False

  @nn.compact
  def __call__(self, x: Array) -> Array:
    num_in, num_out = self.num_in, len(self.features)
    shape, names = x.shape[x.ndim - num_in :] + tuple(self.features), self.names
    init = nn.initializers.variance_scaling(
      1.0,
      "fan_in",
      "truncated_normal",
      in_axis=tuple(range(num_in)),
      out_axis=tuple(range(num_in, num_in + num_out)),
    )
    if self.out_first:
      # The values of the [*in, *out] kernel of the same seed, stored transposed, so
      # that the layout never changes what a run computes.
      perm = (*range(num_in, num_in + num_out), *range(num_in))
      init = functools.partial(_transposed_init, init, shape, perm)
      shape, names = tuple(shape[i] for i in perm), tuple(names[i] for i in perm)
    kernel = self.param(
      "kernel", nn.with_logical_partitioning(init, names), shape, self.param_dtype
    ).astype(self.dtype)
    x = x.astype(self.dtype)
    # One flattened [out, in] operand: XLA:CPU reads it in place, but transposes a
    # kernel whose contracting axes are several (the attention output's heads, kv).
    # Sizes, not -1: an empty input (a RedLLM window with no prefix) must reshape too.
    fan_in = math.prod(x.shape[x.ndim - num_in :])
    flat_x = x.reshape(*x.shape[: x.ndim - num_in], fan_in)
    kernel_shape = (fan_in, math.prod(self.features))[:: -1 if self.out_first else 1]
    y = dense(flat_x, kernel.reshape(kernel_shape), self.out_first)
    return y.reshape(*y.shape[:-1], *self.features)


class RMSNorm(nn.Module):
  """RMSNorm with a learned scale over the last axis, computed in float32."""

  epsilon: float = 1e-6
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32
  axis_name: str = "embed"

  @nn.compact
  def __call__(self, x: Array) -> Array:
    scale = self.param(
      "scale",
      nn.with_logical_partitioning(nn.initializers.ones, (self.axis_name,)),
      (x.shape[-1],),
      self.param_dtype,
    )
    return F.rms_norm(x, scale, self.epsilon, self.dtype)


def dot_product_attention(
  q: Array,
  k: Array,
  v: Array,
  mask: F.AttentionMask,
  impl: str = "einsum",
  return_probs: bool = False,
):
  """Softmax(q k^T / sqrt(d)) v with q [b,q,h,d], k/v [b,k,kv,d] (kv divides h: GQA).

  Rows with no visible key return zeros instead of NaN (or a uniform average):
  padding queries, and RedLLM decoder tokens of a packed example whose encoder
  part is empty. With `return_probs`, returns (out, probs); probs is None for
  the fused implementations. 'pallas_flash' never builds the [q, k] mask.
  """
  probs = None
  if impl == "einsum":
    out, probs = F.einsum_attention(q, k, v, mask)
  elif impl == "pallas_flash":
    # The kernel's grid pairs each query head with its own K/V block: grouped K/V are
    # repeated to the query heads first (the caches still hold K/V heads only).
    groups = q.shape[2] // k.shape[2]
    k, v = (jnp.repeat(x, groups, axis=2) if groups > 1 else x for x in (k, v))
    out = sharded_flash_attention(q, k, v, mask)
  else:
    dense = mask.dense()
    out = F.zero_blind_rows(
      jax.nn.dot_product_attention(q, k, v, mask=dense, implementation=impl), dense
    )
  return (out, probs) if return_probs else out


def sharded_flash_attention(q: Array, k: Array, v: Array, mask: F.AttentionMask) -> Array:
  """The flash kernel once per device's shard: batch and heads split as the logical rules say.

  A Pallas kernel cannot be partitioned by XLA, so under a mesh it runs inside
  `shard_map` with batch and heads sharded like the activations around it and
  lengths whole (the kernel needs every key of its rows). An axis the mesh does
  not divide (initialisation's one-row batch) stays whole.
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return flash_attention.flash_attention(q, k, v, mask)
  batch, heads = nn.logical_to_mesh_axes(("batch", "heads"))
  batch = batch if q.shape[0] % _mesh_size(mesh, batch) == 0 else None
  heads = heads if q.shape[2] % _mesh_size(mesh, heads) == 0 else None
  qkv_spec, vec_spec = P(batch, None, heads, None), P(batch, None)
  return jax.shard_map(
    flash_attention.flash_attention,
    mesh=mesh,
    in_specs=(qkv_spec, qkv_spec, qkv_spec, jax.tree.map(lambda _: vec_spec, mask)),
    out_specs=qkv_spec,
    check_vma=False,
  )(q, k, v, mask)


def _mesh_size(mesh: jax.sharding.AbstractMesh, axes) -> int:
  axes = () if axes is None else (axes,) if isinstance(axes, str) else axes
  return math.prod(mesh.shape[a] for a in axes)


class Attention(nn.Module):
  """Multi-head (or grouped-query) attention with optional per-head RMSNorm on Q, K, V
  and on the output.

  Split into `queries`, `keys_values` and `__call__` (attend + output projection) so
  that callers can cache keys/values: the decoder self-attention cache and
  RedLLM's cross-attention K/V, which are projected once per prompt.
  """

  config: TransformerConfig
  output_norm: bool = False

  def setup(self):
    cfg = self.config
    dense = lambda feats, num_in, names: Projection(
      feats, names, num_in, cfg.activation_dtype, cfg.weight_dtype, cfg.kernels_out_first
    )
    heads, kv_heads = (cfg.num_heads, cfg.head_dim), (cfg.kv_heads, cfg.head_dim)
    self.query = dense(heads, 1, ("embed", "heads", "kv"))
    self.key = dense(kv_heads, 1, ("embed", "heads", "kv"))
    self.value = dense(kv_heads, 1, ("embed", "heads", "kv"))
    self.out = dense((cfg.d_model,), 2, ("heads", "kv", "embed"))
    norm = lambda: RMSNorm(cfg.norm_epsilon, cfg.activation_dtype, cfg.weight_dtype, "kv")
    if cfg.query_norm:
      self.query_norm = norm()
    if cfg.key_norm:
      self.key_norm = norm()
    if cfg.value_norm:
      self.value_norm = norm()
    if self.output_norm:
      self.output_norm_layer = norm()

  def queries(self, x: Array, positions: Array) -> Array:
    q = self.query(x)
    if self.config.query_norm:
      q = self.query_norm(q)
    return constrain(
      F.apply_rope(q, positions, self.config.rope_base), ("batch", "length", "heads", "kv")
    )

  def keys_values(self, x: Array, positions: Array) -> tuple[Array, Array]:
    k, v = self.key(x), self.value(x)
    if self.config.key_norm:
      k = self.key_norm(k)
    if self.config.value_norm:
      v = self.value_norm(v)
    k = F.apply_rope(k, positions, self.config.rope_base)
    names = ("batch", "length", "heads", "kv")
    return constrain(k, names), constrain(v, names)

  def __call__(self, q: Array, k: Array, v: Array, mask: Array) -> Array:
    # Attention weights are sown only when the caller asks for them with
    # `apply(..., mutable=["intermediates"])`; otherwise nothing is stored.
    capture = self.is_mutable_collection("intermediates")
    out, probs = dot_product_attention(q, k, v, mask, self.config.attention_impl, return_probs=True)
    if capture:
      self.sow(
        "intermediates",
        "attention_weights",
        F.attention_probs(q, k, mask.dense()) if probs is None else probs,
      )
    if self.output_norm:
      out = self.output_norm_layer(out)
    return constrain(self.out(out), ("batch", "length", "embed"))


class SwiGLU(nn.Module):
  """Gated FFN: (silu(x W_gate) * x W_up) W_down."""

  config: TransformerConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, x: Array) -> Array:
    cfg = self.config
    dense = lambda feats, names, name: Projection(
      (feats,), names, 1, cfg.activation_dtype, cfg.weight_dtype, cfg.kernels_out_first, name=name
    )
    gate = dense(cfg.d_ff, ("embed", "mlp"), "wi_gate")(x)
    up = dense(cfg.d_ff, ("embed", "mlp"), "wi_up")(x)
    hidden = constrain(nn.silu(gate) * up, ("batch", "length", "mlp"))
    hidden = nn.Dropout(cfg.dropout_rate)(hidden, deterministic=self.deterministic)
    return constrain(
      dense(cfg.d_model, ("mlp", "embed"), "wo")(hidden), ("batch", "length", "embed")
    )


class TiedEmbedding(nn.Module):
  """One table for encoder input, decoder input and output logits; with
  `tied_embeddings=False` the logits read their own table, `output_embedding`."""

  config: TransformerConfig

  def setup(self):
    cfg = self.config
    table = lambda name, stddev: self.param(
      name,
      nn.with_logical_partitioning(nn.initializers.normal(stddev), ("vocab", "embed")),
      (cfg.vocab_size, cfg.d_model),
      cfg.weight_dtype,
    )
    scaled = cfg.scale_tied_logits and cfg.tied_embeddings
    self.embedding = table("embedding", 1.0 if scaled else cfg.d_model**-0.5)
    if not cfg.tied_embeddings:
      self.output_embedding = table("output_embedding", cfg.d_model**-0.5)

  def __call__(self, tokens: Array) -> Array:
    x = jnp.take(self.embedding, tokens, axis=0).astype(self.config.activation_dtype)
    return constrain(x, ("batch", "length", "embed"))

  def attend(self, x: Array) -> Array:
    """Float32 logits x E^T, times 1/sqrt(d) when tied with `scale_tied_logits` (T5 1.0)."""
    cfg = self.config
    table = self.embedding if cfg.tied_embeddings else self.output_embedding
    logits = dense(x, table.astype(cfg.activation_dtype), True, jnp.float32)
    if cfg.tied_embeddings and cfg.scale_tied_logits:
      logits = logits * cfg.d_model**-0.5
    return constrain(logits, ("batch", "length", "vocab"))
