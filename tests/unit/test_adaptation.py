"""Adaptation (DecLLM -> RedLLM): layer selection, the mapping table, exact logits."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import random_tokens, small_config
from redllm_jax import adaptation
from redllm_jax.errors import ConfigError
from redllm_jax.models import DecoderOnlyModel, EncoderDecoderModel, unstack_layers

SOURCE_LAYERS = 5


def _decllm(**overrides):
  model = DecoderOnlyModel(small_config(num_layers=SOURCE_LAYERS, **overrides))
  return model, model.init_params(jax.random.key(0))


def _target(enc, dec, **overrides):
  return small_config(
    num_layers=SOURCE_LAYERS,
    num_encoder_layers=enc,
    num_decoder_layers=dec,
    **{"attention_output_norm": True, **overrides},
  )


@pytest.mark.parametrize(
  "rule,want", [("first", [0, 1]), ("last", [3, 4]), ("evenly_spaced", [0, 4])]
)
def test_select_two_of_five(rule, want):
  assert adaptation.select_layers(5, 2, rule) == want


def test_select_layers_edges():
  for rule in adaptation.LAYER_SELECTIONS:
    assert adaptation.select_layers(5, 5, rule) == [0, 1, 2, 3, 4]
  assert adaptation.select_layers(5, 3, "evenly_spaced") == [0, 2, 4]
  assert adaptation.select_layers(32, 8, "evenly_spaced") == [0, 4, 9, 13, 18, 22, 27, 31]
  assert adaptation.select_layers(5, 1, "evenly_spaced") == [0]
  with pytest.raises(ConfigError, match="never adds them"):
    adaptation.select_layers(5, 6, "first")
  with pytest.raises(ConfigError, match="choose one of"):
    adaptation.select_layers(5, 2, "middle")


# The mapping table of docs/adaptation.md: target path -> source path, with {i} the
# selected DecLLM layer. Written out here independently of adaptation.py's code.
_ATTENTION = (
  "query/kernel",
  "key/kernel",
  "value/kernel",
  "out/kernel",
  "query_norm/scale",
  "key_norm/scale",
  "value_norm/scale",
)
_LAYER = (
  "pre_self_attention_norm/scale",
  "pre_mlp_norm/scale",
  "mlp/wi_gate/kernel",
  "mlp/wi_up/kernel",
  "mlp/wo/kernel",
  *[f"self_attention/{a}" for a in _ATTENTION],
)


def _table(enc_pick, dec_pick):
  table = {
    "embed/embedding": "embed/embedding",
    "encoder_norm/scale": "decoder_norm/scale",
    "decoder_norm/scale": "decoder_norm/scale",
  }
  for j, i in enumerate(enc_pick):
    table.update({f"encoder/layers_{j}/{p}": f"decoder/layers_{i}/{p}" for p in _LAYER})
  for j, i in enumerate(dec_pick):
    table.update({f"decoder/layers_{j}/{p}": f"decoder/layers_{i}/{p}" for p in _LAYER})
    table.update(
      {
        f"decoder/layers_{j}/cross_attention/{a}": f"decoder/layers_{i}/self_attention/{a}"
        for a in _ATTENTION
      }
    )
    table[f"decoder/layers_{j}/pre_cross_attention_norm/scale"] = (
      f"decoder/layers_{i}/pre_self_attention_norm/scale"
    )
  return table


def _flat(params):
  return {
    "/".join(k.key for k in path): np.asarray(x)
    for path, x in jax.tree_util.tree_leaves_with_path(unstack_layers(params))
  }


@pytest.mark.parametrize(
  "enc,dec,enc_rule,dec_rule,scan",
  [
    (5, 5, "evenly_spaced", "evenly_spaced", True),  # balanced, the T5Gemma recipe
    (5, 2, "first", "last", True),  # large encoder, small decoder
    (3, 1, "evenly_spaced", "first", False),  # unrolled target layers
  ],
)
def test_every_adapted_tensor_is_its_source(enc, dec, enc_rule, dec_rule, scan):
  source, params = _decllm()
  target = EncoderDecoderModel(_target(enc, dec, scan_layers=scan))
  adapted = adaptation.adapt_params(params, source.config, target.config, enc_rule, dec_rule)
  got, src = _flat(adapted), _flat(params)
  table = _table(
    adaptation.select_layers(5, enc, enc_rule), adaptation.select_layers(5, dec, dec_rule)
  )
  norms = {k for k in got if k.endswith("output_norm_layer/scale")}
  unrolled = EncoderDecoderModel(dataclasses.replace(target.config, scan_layers=False))
  assert (
    set(got)
    == set(table) | norms
    == {
      "/".join(k.key for k in path)
      for path, _ in jax.tree_util.tree_leaves_with_path(unrolled.abstract_params())
    }
  )
  assert len(norms) == 2 * dec + enc  # self- and cross-attention of each decoder layer
  for path, origin in table.items():
    np.testing.assert_array_equal(got[path], src[origin], err_msg=path)
  for path in norms:
    np.testing.assert_array_equal(got[path], np.ones(8), err_msg=path)


def _zero_cross_attention_output(params):
  def zero(path, x):
    names = [k.key for k in path]
    return jnp.zeros_like(x) if "cross_attention" in names and "out" in names else x

  return jax.tree_util.tree_map_with_path(zero, params)


@pytest.mark.parametrize("dec,rule", [(5, "evenly_spaced"), (2, "last")])
def test_adapted_decoder_logits_equal_the_decllm(dec, rule):
  """Cross-attention output zeroed and no output norm (attention_output_norm=False,
  the 'identity' start): the decoder is the DecLLM of the selected layers. RedLLM's
  decoder RoPE positions start at the encoder length, so the DecLLM is fed the same
  absolute positions (its positions are an input): same tokens, same positions."""
  source, params = _decllm()
  target = EncoderDecoderModel(_target(5, dec, attention_output_norm=False))
  adapted = _zero_cross_attention_output(
    adaptation.adapt_params(params, source.config, target.config, "first", rule)
  )
  zeroed = adaptation.adapt_params(
    params, source.config, target.config, "first", rule, cross_attention_output="zero"
  )
  jax.tree.map(np.testing.assert_array_equal, zeroed, adapted)
  batch, enc_len, dec_len = 2, 6, 7
  enc_tokens, dec_tokens = random_tokens(0, (batch, enc_len)), random_tokens(1, (batch, dec_len))
  ones = lambda t: np.ones_like(t)
  pos = lambda n: np.broadcast_to(np.arange(n, dtype=np.int32), (batch, n))
  red_apply = jax.jit(target.network.apply)  # eager scanned layers run op by op: slower
  red = red_apply(
    {"params": adapted},
    enc_tokens,
    pos(enc_len),
    ones(enc_tokens),
    dec_tokens,
    pos(dec_len),
    ones(dec_tokens),
  )
  # The DecLLM made of the selected layers only (all five when dec == 5).
  pick = adaptation.select_layers(SOURCE_LAYERS, dec, rule)
  small = DecoderOnlyModel(dataclasses.replace(source.config, num_layers=dec))
  sub = {
    **params,
    "decoder": {"layers": jax.tree.map(lambda a: a[np.array(pick)], params["decoder"]["layers"])},
  }
  ref = jax.jit(small.network.apply)(
    {"params": sub}, dec_tokens, pos(dec_len) + enc_len, ones(dec_tokens)
  )
  np.testing.assert_allclose(red, ref, atol=2e-5, rtol=1e-5)
  # The check can fail: the cross-attention, left on, changes the logits.
  live = adaptation.adapt_params(params, source.config, target.config, "first", rule)
  red_live = red_apply(
    {"params": live},
    enc_tokens,
    pos(enc_len),
    ones(enc_tokens),
    dec_tokens,
    pos(dec_len),
    ones(dec_tokens),
  )
  assert np.abs(np.asarray(red_live) - np.asarray(ref)).max() > 1e-2


def test_incompatible_models_are_one_line_errors():
  source, _ = _decllm()
  red = EncoderDecoderModel(_target(2, 2))
  adaptation.check_compatible(source, red, "ckpt")  # compatible: no error
  cases = [
    (EncoderDecoderModel(_target(2, 2)), red, "holds a redllm checkpoint"),
    (source, DecoderOnlyModel(_target(2, 2)), "builds a redllm model"),
    (source, EncoderDecoderModel(_target(2, 2, d_ff=128)), "d_ff=64"),
    (source, EncoderDecoderModel(_target(2, 2, vocab_size=50)), "vocab_size=101"),
  ]
  for src, tgt, message in cases:
    with pytest.raises(ConfigError, match=message) as error:
      adaptation.check_compatible(src, tgt, "ckpt")
    assert "\n" not in error.value.message
