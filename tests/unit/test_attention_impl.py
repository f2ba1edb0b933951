"""Attention implementations equal 'einsum' on CPU: 'xla', and 'pallas_flash' in interpret mode
(the kernel itself, mask by mask and with gradients: test_flash_attention)."""

import numpy as np
import pytest

from redllm_jax import functional, layers
from conftest import init, lm_batch, logits, make_model


def _qkv(seed=0, b=2, q=7, k=9, h=3, d=8, kv_heads=None):
  r = np.random.RandomState(seed)
  return [
    r.randn(b, n, heads, d).astype(np.float32)
    for n, heads in ((q, h), (k, kv_heads or h), (k, kv_heads or h))
  ]


def test_xla_equals_einsum_with_padding_and_causality():
  q, k, v = _qkv()
  seg_q = np.array([[1] * 5 + [0] * 2, [1] * 7])
  seg_k = np.array([[1] * 6 + [0] * 3, [1] * 4 + [2] * 5])
  idx_q, idx_k = np.arange(7)[None].repeat(2, 0), np.arange(9)[None].repeat(2, 0)
  for causal in (False, True):
    mask = functional.attention_mask(seg_q, seg_k, idx_q, idx_k, causal)
    ref = layers.dot_product_attention(q, k, v, mask, "einsum")
    out = layers.dot_product_attention(q, k, v, mask, "xla")
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["xla", "pallas_flash"])
def test_model_logits_equal_einsum(arch, impl):
  """DecLLM, DecLLM + BiAttn and RedLLM: every attention layer through `impl`."""
  batch = lm_batch(arch)
  ref_model, model = make_model(arch), make_model(arch, attention_impl=impl)
  params = init(ref_model)
  np.testing.assert_allclose(
    logits(model, params, batch), logits(ref_model, params, batch), rtol=1e-4, atol=1e-4
  )


@pytest.mark.parametrize("impl", ["einsum", "xla", "pallas_flash"])
def test_grouped_query_attention_equals_repeated_heads(impl):
  """6 query heads over 2 K/V heads = 6 heads over K/V repeated as Hugging Face's
  repeat_kv does (query head h reads K/V head h // 3)."""
  q, k, v = _qkv(h=6, kv_heads=2)
  seg_q, seg_k = np.array([[1] * 5 + [0] * 2, [1] * 7]), np.array([[1] * 6 + [0] * 3, [1] * 9])
  mask = functional.attention_mask(
    seg_q, seg_k, np.arange(7)[None].repeat(2, 0), np.arange(9)[None].repeat(2, 0), causal=True
  )
  repeated = [np.repeat(x, 3, axis=2) for x in (k, v)]
  ref = layers.dot_product_attention(q, *repeated, mask, "einsum")
  np.testing.assert_allclose(
    layers.dot_product_attention(q, k, v, mask, impl), ref, rtol=1e-5, atol=1e-5
  )


@pytest.mark.parametrize("impl", ["xla", "pallas_flash"])
def test_grouped_query_model_logits_equal_einsum(arch, impl):
  flags = dict(num_kv_heads=2, value_norm=False, tied_embeddings=False)
  batch = lm_batch(arch)
  ref_model, model = make_model(arch, **flags), make_model(arch, attention_impl=impl, **flags)
  params = init(ref_model)
  np.testing.assert_allclose(
    logits(model, params, batch), logits(ref_model, params, batch), rtol=1e-4, atol=1e-4
  )
