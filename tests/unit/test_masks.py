"""Attention masks: causality, bidirectional encoder, BiAttn prefix, padding invariance."""

import jax
import jax.numpy as jnp
import numpy as np

from conftest import init, lm_batch, make_model, random_tokens
from conftest import logits as _logits


def test_decllm_is_causal_bit_for_bit():
  model = make_model("decllm")
  params = init(model)
  batch = lm_batch("decllm")
  changed = {k: v.copy() for k, v in batch.items()}
  changed["decoder_input_tokens"][:, 7] = 3
  a, b = _logits(model, params, batch), _logits(model, params, changed)
  np.testing.assert_array_equal(a[:, :7], b[:, :7])
  assert np.abs(a[:, 7:] - b[:, 7:]).max() > 1e-4


def test_redllm_decoder_is_causal_and_encoder_is_bidirectional():
  model = make_model("redllm")
  params = init(model)
  batch = lm_batch("redllm")
  future = {k: v.copy() for k, v in batch.items()}
  future["decoder_input_tokens"][:, 3] = 3
  a, b = _logits(model, params, batch), _logits(model, params, future)
  np.testing.assert_array_equal(a[:, :3], b[:, :3])
  assert np.abs(a[:, 3:] - b[:, 3:]).max() > 1e-4

  tokens = jnp.asarray(batch["encoder_input_tokens"])
  index = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
  encode = jax.jit(
    lambda t: model.network.apply(
      {"params": params}, t, index, jnp.ones_like(t), method=model.network.encode
    )
  )
  last_changed = tokens.at[:, -1].set(3)
  # The first encoder position sees the last one.
  assert np.abs(encode(tokens)[:, 0] - encode(last_changed)[:, 0]).max() > 1e-4


def test_biattn_prefix_is_bidirectional_and_the_rest_causal():
  model = make_model("decllm_biattn")
  params = init(model)
  batch = lm_batch("decllm_biattn", inputs=6)  # Prefix = input slots 0..6.
  later_prefix = {k: v.copy() for k, v in batch.items()}
  later_prefix["decoder_input_tokens"][:, 6] = 3
  a, b = _logits(model, params, batch), _logits(model, params, later_prefix)
  assert np.abs(a[:, 0] - b[:, 0]).max() > 1e-4  # Earlier prefix positions see it.

  after_prefix = {k: v.copy() for k, v in batch.items()}
  after_prefix["decoder_input_tokens"][:, 8] = 3
  c = _logits(model, params, after_prefix)
  np.testing.assert_array_equal(a[:, :8], c[:, :8])

  causal = make_model("decllm")  # Same weights, no BiAttn: position 0 is blind to 6.
  np.testing.assert_array_equal(
    _logits(causal, params, batch)[:, 0], _logits(causal, params, later_prefix)[:, 0]
  )


def _pad(batch, extra, seed):
  """Appends `extra` padding slots filled with garbage tokens but segment id 0."""
  out = {}
  for name, value in batch.items():
    garbage = random_tokens(seed, (value.shape[0], extra)).astype(value.dtype)
    if name in ("decoder_target_tokens", "decoder_loss_weights", "decoder_causal_attention"):
      garbage = np.zeros_like(garbage)
    out[name] = np.concatenate([value, garbage], axis=1)
  length = out["decoder_target_tokens"].shape[1]
  real = batch["decoder_target_tokens"].shape[1]
  out["decoder_segment_ids"] = (np.arange(length) < real).astype(np.int32)[None].repeat(2, 0)
  out["decoder_positions"] = np.arange(length, dtype=np.int32)[None].repeat(2, 0)
  if "encoder_input_tokens" in batch:
    length = out["encoder_input_tokens"].shape[1]
    real = batch["encoder_input_tokens"].shape[1]
    out["encoder_segment_ids"] = (np.arange(length) < real).astype(np.int32)[None].repeat(2, 0)
    out["encoder_positions"] = np.arange(length, dtype=np.int32)[None].repeat(2, 0)
  return out


def test_padding_never_changes_real_logits(arch):
  model = make_model(arch)
  params = init(model)
  batch = lm_batch(arch)
  real = batch["decoder_target_tokens"].shape[1]
  base = _logits(model, params, batch)
  for extra, seed in ((3, 1), (9, 2)):
    padded = _logits(model, params, _pad(batch, extra, seed))
    np.testing.assert_allclose(padded[:, :real], base, atol=1e-5, rtol=1e-5)
    assert np.all(np.isfinite(padded))


def test_fully_padded_rows_are_finite(arch):
  model = make_model(arch)
  params = init(model)
  batch = lm_batch(arch)
  for value in batch.values():
    value[1] = 0  # Row 1 is all padding.
  loss, _ = jax.jit(model.loss_fn)(params, {k: jnp.asarray(v) for k, v in batch.items()})
  assert np.isfinite(float(loss))
  assert np.all(np.isfinite(_logits(model, params, batch)))


def test_redllm_decoder_offset_is_the_true_input_length():
  """Right-padding the encoder leaves decoder RoPE positions at the unpadded length."""
  model = make_model("redllm")
  params = init(model)
  batch = lm_batch("redllm", batch=2, inputs=6)
  padded = dict(batch)
  padded["encoder_input_tokens"] = np.pad(batch["encoder_input_tokens"], ((0, 0), (0, 5)))
  np.testing.assert_allclose(
    _logits(model, params, padded), _logits(model, params, batch), atol=1e-5, rtol=1e-5
  )
