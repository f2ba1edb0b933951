"""The Pallas flash kernel (interpret mode on CPU) against einsum, for every mask the networks use.

Values and gradients (dq, dk, dv) are compared on rows with padding, packing,
causal and BiAttn-prefix masks, encoder (bidirectional) and cross-attention
shapes, including lengths that are not multiples of the kernel's 128-token tile
and rows whose queries see no key at all. Whole-model logits: test_attention_impl.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from redllm_jax import flash_attention, functional, layers


def _dense_reference(q_seg, k_seg, causal, q_prefix=None):
  """The mask rule written out directly: same non-zero segment; slot causality; prefix lifts it."""
  q_idx, k_idx = np.arange(q_seg.shape[1]), np.arange(k_seg.shape[1])
  mask = (q_seg[:, :, None] == k_seg[:, None, :]) & (k_seg[:, None, :] != 0)
  if causal:
    allowed = q_idx[None, :, None] >= k_idx[None, None, :]
    if q_prefix is not None:
      same = q_seg[:, :, None] == k_seg[:, None, :]
      allowed = allowed | (q_prefix[:, :, None] & q_prefix[:, None, :] & same)
    mask &= allowed
  return mask[:, None]


def _packed_rows(rng, batch, length, with_prefix):
  """Rows of 1-3 packed examples then padding; each example's first tokens are its prefix."""
  seg = np.zeros((batch, length), np.int32)
  prefix = np.zeros((batch, length), bool)
  for row in range(batch):
    start = 0
    for example in range(1, rng.randint(1, 4) + 1):
      size = rng.randint(1, max(2, (length - start) // 2 + 1))
      if start + size > length:
        break
      seg[row, start : start + size] = example
      if with_prefix:
        prefix[row, start : start + rng.randint(0, size + 1)] = True
      start += size
  return seg, prefix


@pytest.mark.parametrize("seed", range(4))
def test_rank_mask_equals_the_written_out_rule(seed):
  rng = np.random.RandomState(seed)
  seg, prefix = _packed_rows(rng, 3, 40, with_prefix=True)
  idx = np.broadcast_to(np.arange(40), (3, 40))
  for causal, q_prefix in ((False, None), (True, None), (True, prefix)):
    got = functional.attention_mask(seg, seg, idx, idx, causal, q_prefix).dense()
    np.testing.assert_array_equal(got, _dense_reference(seg, seg, causal, q_prefix))


def _qkv(rng, b, q, k, h=2, d=32):
  return [jnp.asarray(rng.randn(b, n, h, d).astype(np.float32)) for n in (q, k, k)]


def _mask_cases(rng):
  """(name, q length, k length, AttentionMask) for every mask kind of both networks."""
  seg, prefix = _packed_rows(rng, 2, 150, with_prefix=True)
  idx = np.broadcast_to(np.arange(150), (2, 150))
  enc_seg, _ = _packed_rows(rng, 2, 70, with_prefix=False)
  dec_seg = np.where(np.arange(150)[None] < 60, np.minimum(seg, enc_seg.max(1, keepdims=True)), 0)
  mask = functional.attention_mask
  return [
    ("decllm causal, packed", 150, 150, mask(seg, seg, idx, idx, True)),
    ("decllm biattn prefix, packed", 150, 150, mask(seg, seg, idx, idx, True, prefix)),
    ("redllm encoder, bidirectional", 150, 150, mask(seg, seg, idx, idx, False)),
    ("redllm decoder self, causal", 150, 150, mask(dec_seg, dec_seg, idx, idx, True)),
    ("redllm cross-attention", 150, 70, mask(dec_seg, enc_seg, idx, idx[:, :70], False)),
  ]


@pytest.mark.parametrize("case", range(5))
def test_flash_equals_einsum_values_and_gradients(case):
  rng = np.random.RandomState(case)
  name, q_len, k_len, mask = _mask_cases(rng)[case]
  q, k, v = _qkv(rng, 2, q_len, k_len)
  cotangent = jnp.asarray(rng.randn(*q.shape).astype(np.float32))

  def loss(impl, q, k, v):
    return jnp.sum(layers.dot_product_attention(q, k, v, mask, impl) * cotangent)

  want, want_grads = jax.value_and_grad(loss, argnums=(1, 2, 3))("einsum", q, k, v)
  got, got_grads = jax.value_and_grad(loss, argnums=(1, 2, 3))("pallas_flash", q, k, v)
  np.testing.assert_allclose(got, want, rtol=1e-4, err_msg=name)
  out = layers.dot_product_attention(q, k, v, mask, "pallas_flash")
  np.testing.assert_allclose(
    out, layers.dot_product_attention(q, k, v, mask, "einsum"), atol=2e-5, err_msg=name
  )
  for label, g, w in zip("qkv", got_grads, want_grads):
    np.testing.assert_allclose(
      g, w, atol=2e-4 * float(jnp.abs(w).max()) + 1e-6, err_msg=f"{name}: d{label}"
    )


def test_blind_queries_give_zeros_and_zero_gradients():
  rng = np.random.RandomState(7)
  q, k, v = _qkv(rng, 1, 20, 20)
  seg = np.zeros((1, 20), np.int32)  # All padding: nothing is visible.
  mask = functional.attention_mask(seg, seg, np.arange(20)[None], np.arange(20)[None], True)
  out, grads = jax.value_and_grad(
    lambda q, k, v: jnp.sum(flash_attention.flash_attention(q, k, v, mask) ** 2), argnums=(0, 1, 2)
  )(q, k, v)
  assert float(out) == 0.0
  assert all(float(jnp.abs(g).max()) == 0.0 for g in grads)
