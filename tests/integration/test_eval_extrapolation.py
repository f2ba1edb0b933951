"""Length extrapolation on tiny models: curves computed, CSV and plot written, PPL consistent."""

import csv
import os

import jax
import numpy as np

from conftest import init, make_model, random_tokens
from redllm_jax import models
from redllm_jax.evaluation import extrapolation, windows


def test_extrapolation_curves_and_plot(tmp_path):
  windows = random_tokens(0, (3, 64))
  pair = {arch: (make_model(arch), None) for arch in ("decllm", "redllm")}
  pair = {arch: (m, init(m)) for arch, (m, _) in pair.items()}
  out = extrapolation.run(
    pair, windows, training_length=16, factors=[1, 4], out_dir=str(tmp_path), batch_size=2
  )
  for arch in ("decllm", "redllm"):
    summary = out["results"][arch]["summary"]
    assert [s["length"] for s in summary] == [16, 64]
    assert all(np.isfinite(s["ppl"]) and s["ppl"] > 1 for s in summary)
    buckets = out["results"][arch]["buckets"]
    longest = [b for b in buckets if b["length"] == 64]
    # Bucket = half the training length; RedLLM predicts only the second half.
    assert len(longest) == (8 if arch == "decllm" else 4)
  assert "ppl_all" in out["results"]["decllm"]["summary"][0]
  for path in out["files"].values():
    assert os.path.getsize(path) > 0
  with open(out["files"][".png"], "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  with open(out["files"][".csv"]) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 4 and {r["name"] for r in rows} == {"decllm", "redllm"}

  # RedLLM's PPL at length 64 equals the model's own loss on the middle split.
  model, params = pair["redllm"]
  w = windows[:, :64]
  batch = {
    "encoder_input_tokens": w[:, :32],
    "decoder_target_tokens": w[:, 32:],
    "decoder_input_tokens": np.pad(w[:, 32:-1], ((0, 0), (1, 0))),
  }
  _, sums = jax.jit(model.loss_fn)(params, batch)
  expected = float(models.summarize_metrics(sums)["perplexity"])
  got = out["results"]["redllm"]["summary"][1]
  np.testing.assert_allclose(got["ppl"], expected, rtol=1e-4)
  # Its first decoder target and the rest, from the logits in float64.
  logits = np.asarray(model.logits(params, batch), np.float64)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  nll = -np.take_along_axis(logp, w[:, 32:, None], -1)[..., 0]
  np.testing.assert_allclose(got["first_token_ppl"], np.exp(nll[:, 0].mean()), rtol=1e-4)
  np.testing.assert_allclose(got["rest_ppl"], np.exp(nll[:, 1:].mean()), rtol=1e-4)


def test_windows_from_demo_validation_text(demo_root):
  texts, vocab = windows.task_texts("demo_redpajama")
  token_windows = windows.token_windows(texts, vocab.encode, 2048, 8)
  assert token_windows.shape == (8, 2048)
  assert (token_windows > 1).mean() > 0.99  # real text, few EOS
  first = vocab.decode(token_windows[0, :20].tolist())
  assert any(first in " ".join(t.split()) for t in texts)
