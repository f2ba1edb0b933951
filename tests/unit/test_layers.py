"""Layers against independent references: float64 NumPy attention, RoPE identities."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from conftest import init, lm_batch, make_model, small_config
from redllm_jax.decoding import DecodingConfig
from redllm_jax.functional import apply_rope, attention_mask
from redllm_jax.layers import Attention


def _np_rms(x, scale, eps=1e-6):
  return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * scale


def _np_rope(x, pos, base=10000.0):
  half = x.shape[-1] // 2
  freq = base ** (-np.arange(half) / half)
  ang = pos[..., None] * freq
  sin, cos = np.sin(ang)[:, :, None], np.cos(ang)[:, :, None]
  x1, x2 = x[..., :half], x[..., half:]
  return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


class _SelfAttention(nn.Module):
  config: object
  output_norm: bool

  @nn.compact
  def __call__(self, x, positions, mask):
    attn = Attention(self.config, self.output_norm)
    k, v = attn.keys_values(x, positions)
    return attn(attn.queries(x, positions), k, v, mask)


def _reference(p, x, pos, mask, output_norm):
  x, pos = x.astype(np.float64), pos.astype(np.float64)
  f64 = lambda a: np.asarray(a, np.float64)
  proj = lambda name: np.einsum("bld,dhk->blhk", x, f64(p[name]["kernel"]))
  norm = lambda y, name: _np_rms(y, f64(p[name]["scale"]))
  q = _np_rope(norm(proj("query"), "query_norm"), pos)
  k = _np_rope(norm(proj("key"), "key_norm"), pos)
  v = norm(proj("value"), "value_norm")
  logits = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
  logits = np.where(mask, logits, -np.inf)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  out = np.einsum("bhqk,bkhd->bqhd", probs, v)
  if output_norm:
    out = norm(out, "output_norm_layer")
  return np.einsum("bqhk,hkd->bqd", out, f64(p["out"]["kernel"]))


def test_attention_matches_float64_numpy():
  cfg = small_config()
  rng = np.random.RandomState(0)
  x = rng.randn(2, 9, cfg.d_model).astype(np.float32)
  pos = np.stack([np.arange(9), np.arange(9) + 40]).astype(np.int32)
  seg = np.ones((2, 9), np.int32)
  index = np.broadcast_to(np.arange(9), (2, 9))
  mask = attention_mask(
    jnp.asarray(seg), jnp.asarray(seg), jnp.asarray(index), jnp.asarray(index), causal=True
  )
  for output_norm in (False, True):
    module = _SelfAttention(cfg, output_norm)
    variables = nn.meta.unbox(module.init(jax.random.key(1), x, pos, mask))
    # Random norm scales, so the test sees them (they start at one).
    params = jax.tree.map(
      lambda a: a + 0.3 * rng.randn(*a.shape).astype(np.float32) if a.ndim == 1 else a,
      variables["params"],
    )
    got = np.asarray(module.apply({"params": params}, x, pos, mask), np.float64)
    want = _reference(params["Attention_0"], x, pos, np.asarray(mask.dense()), output_norm)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_rope_is_a_rotation_with_relative_dot_products():
  rng = np.random.RandomState(0)
  q, k = rng.randn(1, 1, 2, 16).astype(np.float32), rng.randn(1, 1, 2, 16).astype(np.float32)
  dot = lambda i, j: float(
    jnp.sum(apply_rope(q, jnp.array([[i]]), 1e4) * apply_rope(k, jnp.array([[j]]), 1e4))
  )
  assert abs(dot(3, 10) - dot(103, 110)) < 1e-4  # Depends on j - i only.
  assert abs(dot(3, 10) - dot(3, 11)) > 1e-3
  norm = float(jnp.linalg.norm(apply_rope(q, jnp.array([[77]]), 1e4)))
  assert abs(norm - float(np.linalg.norm(q))) < 1e-4


def _shift(batch, arch, c):
  batch = dict(batch)
  target_len = batch["decoder_target_tokens"].shape[1]
  batch["decoder_positions"] = np.arange(target_len, dtype=np.int32)[None].repeat(2, 0) + c
  if arch == "redllm":
    input_len = batch["encoder_input_tokens"].shape[1]
    batch["encoder_positions"] = np.arange(input_len, dtype=np.int32)[None].repeat(2, 0) + c
  return batch


def test_shifting_every_position_leaves_logits_unchanged(arch):
  model = make_model(arch)
  params = init(model)
  batch = lm_batch(arch)
  logits = jax.jit(model.logits)
  base = np.asarray(logits(params, _shift(batch, arch, 0)))
  shifted = np.asarray(logits(params, _shift(batch, arch, 37)))
  np.testing.assert_allclose(shifted, base, atol=2e-4, rtol=2e-4)


def test_tied_logits_are_scaled_by_inverse_sqrt_d():
  for scaled in (True, False):
    model = make_model("decllm", scale_tied_logits=scaled)
    params = init(model)
    hidden = jnp.ones((1, 1, model.config.d_model))
    got = model.network.apply({"params": params}, hidden, method=lambda net, h: net.embed.attend(h))
    table = np.asarray(params["embed"]["embedding"])
    want = table.sum(-1) * (model.config.d_model**-0.5 if scaled else 1.0)
    np.testing.assert_allclose(np.asarray(got)[0, 0], want, rtol=1e-5, atol=1e-5)


def test_one_table_serves_encoder_decoder_and_softmax():
  params = init(make_model("redllm"))
  assert set(params) == {"embed", "encoder", "encoder_norm", "decoder", "decoder_norm"}
  assert list(params["embed"]) == ["embedding"]


def test_out_first_kernels_store_the_same_values_transposed(arch):
  """`kernels_out_first` changes storage only: the same seed gives each kernel's
  values transposed, `decoding_params` converts one layout into the other exactly,
  and both compute the same logits."""
  in_first, out_first = make_model(arch), make_model(arch, kernels_out_first=True)
  params, transposed = init(in_first), init(out_first)
  assert jax.tree.structure(params) == jax.tree.structure(transposed)
  query = lambda p: p["decoder"]["layers"]["self_attention"]["query"]["kernel"]
  assert query(transposed).shape == (
    *query(params).shape[:1],
    *query(params).shape[2:],
    query(params).shape[1],
  )  # [L, d, h, kv] -> [L, h, kv, d]
  np.testing.assert_array_equal(
    np.moveaxis(np.asarray(query(params)), 1, -1), np.asarray(query(transposed))
  )
  batch = lm_batch(arch)
  np.testing.assert_allclose(
    np.asarray(jax.jit(out_first.logits)(transposed, batch)),
    np.asarray(jax.jit(in_first.logits)(params, batch)),
    atol=1e-5,
    rtol=1e-5,
  )
  cfg = DecodingConfig(cpu_weight_layout=True)
  from_in, from_out = (
    model.decoding_params(p, cfg).params
    for model, p in ((in_first, params), (out_first, transposed))
  )
  jax.tree.map(np.testing.assert_array_equal, from_in, from_out)
