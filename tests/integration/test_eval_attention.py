"""Attention-weight capture (flax `intermediates`) and the locality / cross-attention analysis."""

import json
import os

import jax
import numpy as np
import pytest

from conftest import init, make_model, random_tokens
from redllm_jax.evaluation import attention


def test_weights_are_captured_only_when_asked():
  model = make_model("redllm")  # scanned; the unscanned path is used below
  params = init(model)
  windows = random_tokens(0, (2, 16))
  maps = attention.attention_maps(model, params, model.pretraining_batch(windows))
  cfg = model.config
  assert maps["encoder/self_attention"].shape == (cfg.num_encoder_layers, 2, cfg.num_heads, 8, 8)
  assert maps["decoder/cross_attention"].shape == (cfg.num_decoder_layers, 2, cfg.num_heads, 8, 8)
  self_attn = maps["decoder/self_attention"]
  np.testing.assert_allclose(self_attn.sum(-1), 1.0, atol=1e-5)
  assert np.all(np.triu(self_attn[0, 0, 0], k=1) == 0)  # causal
  # A plain apply returns the bare logits, and capturing the weights changes nothing.
  batch = model.pretraining_batch(windows)
  apply = lambda p, **kw: model.network.apply({"params": p}, **model._network_inputs(batch), **kw)
  plain = jax.jit(apply)(params)
  captured, state = jax.jit(lambda p: apply(p, mutable=["intermediates"]))(params)
  assert plain.shape == (2, 8, cfg.vocab_size) and set(state) == {"intermediates"}
  np.testing.assert_array_equal(plain, captured)


def test_locality_and_cross_attention_outputs(tmp_path):
  windows = random_tokens(1, (2, 32))
  results = {}
  for arch in ("decllm", "redllm"):
    model = make_model(arch, scan_layers=arch == "redllm")
    results[arch] = attention.analyze(model, init(model), windows, [1, 7, 15])
  dec, red = results["decllm"]["locality"], results["redllm"]["locality"]
  assert len(dec[15]["weights"]) == 16 + 15 + 1 and len(red[15]["weights"]) == 16
  assert dec[7]["query_index"] == 23 and red[7]["query_index"] == 7
  for curve in list(dec.values()) + list(red.values()):
    assert sum(curve["weights"]) == pytest.approx(1.0, abs=1e-4)
  cross = results["redllm"]["cross_attention"]
  assert np.asarray(cross["weights"]).shape == (2, 16, 16)
  assert "cross_attention" not in results["decllm"]
  files = attention.write_outputs(results, str(tmp_path))
  for name in (
    "locality.csv",
    "locality.json",
    "locality.png",
    "cross_attention.json",
    "cross_attention.png",
  ):
    assert os.path.getsize(files[name]) > 0
  with open(files["locality.json"]) as f:
    assert set(json.load(f)) == {"decllm", "redllm"}
