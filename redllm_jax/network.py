"""The two networks: DecLLM (decoder-only) and RedLLM (encoder-decoder).

Both are built from one `TransformerLayer`; their differences are explicit flags
(cross-attention, the attention-output norm, causal vs bidirectional masks).

Shapes: tokens, positions and segment ids are [batch, length] int32; segment id 0
marks padding. RoPE positions are explicit inputs, so packing restarts them per
example and the RedLLM decoder continues the encoder's numbering.

Incremental decoding keeps explicit caches (`DecodeState`), so a decode step is a
pure function of (token, state): RedLLM's cross-attention K/V are written into the
state once at prefill and a decode step has no access to the encoder output.
"""

from typing import Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from redllm_jax.config import REMAT_CHECKPOINT_POLICIES, TransformerConfig
from redllm_jax.functional import AttentionMask, attention_mask, row_positions
from redllm_jax.layers import Attention, RMSNorm, SwiGLU, TiedEmbedding, constrain

Array = jax.Array
# One layer's K/V caches by name; a stack's are stacked (scanned) or one per layer.
LayerCache = dict[str, Array]
StackCache = LayerCache | tuple[LayerCache, ...]


@flax.struct.dataclass
class LayerContext:
  """What every layer of a stack sees (broadcast across scanned layers)."""

  positions: Array  # [b, l] RoPE positions of this stack's tokens.
  self_mask: AttentionMask  # Over [l, k] (k = cache length when cached).
  cache_index: Optional[Array] = None  # Scalar slot where new K/V are written.
  encoded: Optional[Array] = None  # [b, s, d] final encoder output (RedLLM).
  encoder_positions: Optional[Array] = None  # [b, s]
  cross_mask: Optional[AttentionMask] = None  # Over [l, s].


@flax.struct.dataclass
class DecodeState:
  """Caches for incremental decoding.

  `layers` maps "self_key"/"self_value" (and for RedLLM "cross_key"/"cross_value")
  to arrays [layers, batch, kv_heads, head_dim, slots] (`to_cache_layout`) when layers
  are scanned; unrolled layers keep a tuple of such maps, one per layer, without the
  leading axis. Slots are written at a shared `index`; each example carries its own
  RoPE `position`, and `valid` marks which slots hold real tokens, so right-padded
  prompts of different lengths share a batch.
  """

  layers: StackCache
  valid: Array  # [b, slots] bool
  index: Array  # scalar int32
  position: Array  # [b] int32
  encoder_valid: Optional[Array] = None  # [b, s] bool (RedLLM)


def to_cache_layout(x: Array) -> Array:
  """K or V [b, slots, heads, head_dim] as stored in a cache: [b, heads, head_dim, slots].

  That is the operand layout of XLA's batched attention dots, so a decode step
  reads the cache in place; with [b, slots, h, d] it transposed every layer's
  whole cache at every step (docs/perf_notes.md).
  """
  return jnp.transpose(x, (0, 2, 3, 1))


def from_cache_layout(x: Array) -> Array:
  """The inverse of `to_cache_layout`, which XLA folds into the attention dots."""
  return jnp.transpose(x, (0, 3, 1, 2))


class TransformerLayer(nn.Module):
  """Pre-norm layer: self-attention, optional cross-attention, SwiGLU FFN."""

  config: TransformerConfig
  cross_attention: bool = False

  @nn.compact
  def __call__(
    self, x: Array, cache: Optional[LayerCache], ctx: LayerContext, deterministic: bool
  ) -> tuple[Array, Optional[LayerCache]]:
    cfg = self.config
    norm = lambda name: RMSNorm(cfg.norm_epsilon, cfg.activation_dtype, cfg.weight_dtype, name=name)
    drop = lambda y: nn.Dropout(cfg.dropout_rate)(y, deterministic=deterministic)
    new_cache = {}

    attn = Attention(cfg, cfg.attention_output_norm, name="self_attention")
    h = norm("pre_self_attention_norm")(x)
    k, v = attn.keys_values(h, ctx.positions)
    if cache is not None:
      write = lambda buf, new: jax.lax.dynamic_update_slice_in_dim(
        buf, to_cache_layout(new).astype(buf.dtype), ctx.cache_index, axis=3
      )
      new_cache.update(
        self_key=write(cache["self_key"], k), self_value=write(cache["self_value"], v)
      )
      k, v = from_cache_layout(new_cache["self_key"]), from_cache_layout(new_cache["self_value"])
    x = x + drop(attn(attn.queries(h, ctx.positions), k, v, ctx.self_mask))

    if self.cross_attention:
      cross = Attention(cfg, cfg.attention_output_norm, name="cross_attention")
      h = norm("pre_cross_attention_norm")(x)
      if cache is not None and "cross_key" in cache:
        k, v = from_cache_layout(cache["cross_key"]), from_cache_layout(cache["cross_value"])
      else:
        k, v = cross.keys_values(ctx.encoded, ctx.encoder_positions)
      if cache is not None:
        new_cache.update(cross_key=to_cache_layout(k), cross_value=to_cache_layout(v))
      x = x + drop(cross(cross.queries(h, ctx.positions), k, v, ctx.cross_mask))

    h = norm("pre_mlp_norm")(x)
    x = x + drop(SwiGLU(cfg, deterministic, name="mlp")(h))
    return constrain(x, ("batch", "length", "embed")), (new_cache if cache is not None else None)


class LayerStack(nn.Module):
  """`num_layers` TransformerLayers, scanned (one compiled body) or unrolled."""

  config: TransformerConfig
  num_layers: int
  cross_attention: bool = False

  @nn.compact
  def __call__(
    self, x: Array, cache: Optional[StackCache], ctx: LayerContext, deterministic: bool
  ) -> tuple[Array, Optional[StackCache]]:
    cfg = self.config
    layer = TransformerLayer
    if cfg.remat_policy != "none":
      layer = nn.remat(
        layer,
        policy=REMAT_CHECKPOINT_POLICIES[cfg.remat_policy],
        prevent_cse=not cfg.scan_layers,
        static_argnums=(4,),
      )
    if cfg.scan_layers:
      scanned = nn.scan(
        layer,
        variable_axes={"params": 0, "intermediates": 0},
        split_rngs={"params": True, "dropout": True},
        in_axes=(0, nn.broadcast, nn.broadcast),
        length=self.num_layers,
        metadata_params={nn.PARTITION_NAME: "layers"},
      )
      return scanned(cfg, self.cross_attention, name="layers")(x, cache, ctx, deterministic)
    new_caches = []
    for i in range(self.num_layers):
      x, layer_cache = layer(cfg, self.cross_attention, name=f"layers_{i}")(
        x, None if cache is None else cache[i], ctx, deterministic
      )
      new_caches.append(layer_cache)
    return x, (None if cache is None else tuple(new_caches))


def _empty_cache(cfg: TransformerConfig, num_layers: int, batch: int, slots: int) -> StackCache:
  """Self-attention K/V caches (K/V heads only: grouped-query attention shrinks them):
  stacked [layers, ...] for scanned layers, else one dict
  per layer, so that an unrolled decode step updates each layer's cache in place
  rather than restacking all of them."""
  zeros = lambda *lead: jnp.zeros(
    (*lead, batch, cfg.kv_heads, cfg.head_dim, slots), cfg.activation_dtype
  )
  if cfg.scan_layers:
    return {"self_key": zeros(num_layers), "self_value": zeros(num_layers)}
  return tuple({"self_key": zeros(), "self_value": zeros()} for _ in range(num_layers))


def _take_last(x: Array, lengths: Array) -> Array:
  """x[b, lengths[b] - 1] as [b, 1, d]: each example's last real position."""
  return jnp.take_along_axis(x, (lengths - 1)[:, None, None], axis=1)


class _CachedDecoder(nn.Module):
  """Shared cached-decoding step; subclasses define embed, decoder and decoder_norm."""

  def _logits(self, x: Array) -> Array:
    return self.embed.attend(self.decoder_norm(x))

  def _step(
    self,
    tokens: Array,
    state: DecodeState,
    encoded: Optional[Array] = None,
    encoder_positions: Optional[Array] = None,
  ) -> tuple[Array, DecodeState]:
    """Feeds one token per example at slot `state.index`; returns logits [b, vocab]."""
    valid = jax.lax.dynamic_update_slice_in_dim(
      state.valid, jnp.ones_like(state.valid[:, :1]), state.index, axis=1
    )
    query_index = jnp.full((tokens.shape[0], 1), state.index, jnp.int32)
    self_mask = attention_mask(
      jnp.ones_like(query_index),
      valid.astype(jnp.int32),
      query_index,
      row_positions(valid),
      causal=True,
    )
    cross_mask = None
    if state.encoder_valid is not None:
      enc = state.encoder_valid.astype(jnp.int32)
      cross_mask = attention_mask(
        jnp.ones_like(query_index), enc, query_index, row_positions(enc), causal=False
      )
    ctx = LayerContext(
      positions=state.position[:, None],
      self_mask=self_mask,
      cache_index=state.index,
      encoded=encoded,
      encoder_positions=encoder_positions,
      cross_mask=cross_mask,
    )
    x, layers = self.decoder(self.embed(tokens[:, None]), state.layers, ctx, True)
    new_state = state.replace(
      layers=layers, valid=valid, index=state.index + 1, position=state.position + 1
    )
    return self._logits(x)[:, 0], new_state

  def decode_step(self, tokens: Array, state: DecodeState) -> tuple[Array, DecodeState]:
    """One cached step: reads and extends `state`, never the encoder output."""
    return self._step(tokens, state)


class DecLLM(_CachedDecoder):
  """Decoder-only LM: causal self-attention, or bidirectional over a prefix (BiAttn)."""

  config: TransformerConfig

  def setup(self):
    cfg = self.config
    self.embed = TiedEmbedding(cfg)
    self.decoder = LayerStack(cfg, cfg.num_layers)
    self.decoder_norm = RMSNorm(cfg.norm_epsilon, cfg.activation_dtype, cfg.weight_dtype)

  def __call__(
    self,
    tokens: Array,
    positions: Array,
    segment_ids: Array,
    prefix: Optional[Array] = None,
    enable_dropout: bool = False,
  ) -> Array:
    """Logits [b, l, vocab]. `prefix` (1 = bidirectional region) selects BiAttn."""
    index = row_positions(tokens)
    mask = attention_mask(segment_ids, segment_ids, index, index, causal=True, q_prefix=prefix)
    ctx = LayerContext(positions=positions, self_mask=mask)
    x, _ = self.decoder(self.embed(tokens), None, ctx, not enable_dropout)
    return self._logits(x)

  def prefill(
    self, tokens: Array, lengths: Array, cache_length: int, bidirectional_prompt: bool = False
  ) -> tuple[Array, DecodeState]:
    """Runs right-padded prompts [b, P] into a cache of `cache_length` slots.

    Returns the logits at each prompt's last real token (the first prediction) and
    the state; generation then writes slots P, P+1, ... at positions lengths, ...
    """
    cfg = self.config
    batch, prompt_len = tokens.shape
    in_prompt = row_positions(tokens) < lengths[:, None]
    valid = jnp.zeros((batch, cache_length), bool).at[:, :prompt_len].set(in_prompt)
    mask = attention_mask(
      in_prompt,
      valid,
      row_positions(tokens),
      row_positions(valid),
      causal=True,
      q_prefix=in_prompt if bidirectional_prompt else None,
    )
    ctx = LayerContext(positions=row_positions(tokens), self_mask=mask, cache_index=jnp.int32(0))
    cache = _empty_cache(cfg, cfg.num_layers, batch, cache_length)
    x, layers = self.decoder(self.embed(tokens), cache, ctx, True)
    state = DecodeState(
      layers=layers, valid=valid, index=jnp.int32(prompt_len), position=lengths.astype(jnp.int32)
    )
    return self._logits(_take_last(x, lengths))[:, 0], state


class RedLLM(_CachedDecoder):
  """Encoder-decoder LM with continuous RoPE positions, cross-attention included."""

  config: TransformerConfig

  def setup(self):
    cfg = self.config
    norm = lambda: RMSNorm(cfg.norm_epsilon, cfg.activation_dtype, cfg.weight_dtype)
    self.embed = TiedEmbedding(cfg)
    self.encoder = LayerStack(cfg, cfg.num_encoder_layers)
    self.encoder_norm = norm()
    self.decoder = LayerStack(cfg, cfg.num_decoder_layers, cross_attention=True)
    self.decoder_norm = norm()

  def encode(
    self, tokens: Array, positions: Array, segment_ids: Array, enable_dropout: bool = False
  ) -> Array:
    """Bidirectional encoder over [b, s] tokens; returns the normed output [b, s, d]."""
    index = row_positions(tokens)
    mask = attention_mask(segment_ids, segment_ids, index, index, causal=False)
    ctx = LayerContext(positions=positions, self_mask=mask)
    x, _ = self.encoder(self.embed(tokens), None, ctx, not enable_dropout)
    return self.encoder_norm(x)

  def decode(
    self,
    encoded: Array,
    encoder_positions: Array,
    encoder_segment_ids: Array,
    tokens: Array,
    positions: Array,
    segment_ids: Array,
    enable_dropout: bool = False,
  ) -> Array:
    """Teacher-forced decoder logits [b, l, vocab].

    `positions` are relative (0 at each example's first target). The RoPE position
    adds the example's true encoder length: the number of encoder tokens its
    cross-attention can see, which is padding- and packing-aware.
    """
    index = row_positions(tokens)
    cross_mask = attention_mask(
      segment_ids, encoder_segment_ids, index, row_positions(encoder_segment_ids), causal=False
    )
    ctx = LayerContext(
      positions=positions + cross_mask.visible_keys(),
      self_mask=attention_mask(segment_ids, segment_ids, index, index, causal=True),
      encoded=encoded,
      encoder_positions=encoder_positions,
      cross_mask=cross_mask,
    )
    x, _ = self.decoder(self.embed(tokens), None, ctx, not enable_dropout)
    return self._logits(x)

  def __call__(
    self,
    encoder_tokens: Array,
    encoder_positions: Array,
    encoder_segment_ids: Array,
    decoder_tokens: Array,
    decoder_positions: Array,
    decoder_segment_ids: Array,
    enable_dropout: bool = False,
  ) -> Array:
    encoded = self.encode(encoder_tokens, encoder_positions, encoder_segment_ids, enable_dropout)
    return self.decode(
      encoded,
      encoder_positions,
      encoder_segment_ids,
      decoder_tokens,
      decoder_positions,
      decoder_segment_ids,
      enable_dropout,
    )

  def prefill(
    self, tokens: Array, lengths: Array, cache_length: int, start_token: int = 0
  ) -> tuple[Array, DecodeState]:
    """Encodes right-padded prompts once and feeds the decoder start token.

    This is the only place the cross-attention K/V are projected: they go into the
    state and every later `decode_step` reads them from there.
    """
    cfg = self.config
    batch = tokens.shape[0]
    encoder_valid = row_positions(tokens) < lengths[:, None]
    encoded = self.encode(tokens, row_positions(tokens), encoder_valid.astype(jnp.int32))
    state = DecodeState(
      layers=_empty_cache(cfg, cfg.num_decoder_layers, batch, cache_length),
      valid=jnp.zeros((batch, cache_length), bool),
      index=jnp.int32(0),
      position=lengths.astype(jnp.int32),
      encoder_valid=encoder_valid,
    )
    start = jnp.full((batch,), start_token, jnp.int32)
    return self._step(start, state, encoded, row_positions(tokens))
