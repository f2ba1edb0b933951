"""Losses, scoring and gradients of the model layer."""

import jax
import jax.numpy as jnp
import numpy as np

import conftest
from conftest import init, lm_batch, make_model
from redllm_jax.models import summarize_metrics, unstack_layers


def _as_jnp(batch):
  return {k: jnp.asarray(v) for k, v in batch.items()}


def _np_losses(logits, targets, weights, z):
  logits = np.asarray(logits, np.float64)
  log_z = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
  ce = log_z - np.take_along_axis(logits, targets[..., None], -1)[..., 0]
  return (ce * weights).sum(), (z * log_z**2 * weights).sum()


def test_loss_matches_numpy_and_counts_targets_only(arch):
  model = make_model(arch, z_loss=1e-2)
  params = init(model)
  batch = lm_batch(arch)
  logits = conftest.logits(model, params, batch)
  loss, sums = jax.jit(model.loss_fn)(params, _as_jnp(batch))
  ce, z = _np_losses(logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"], 1e-2)
  np.testing.assert_allclose(float(sums["cross_entropy"]), ce, rtol=1e-5)
  np.testing.assert_allclose(float(sums["z_loss"]), z, rtol=1e-5)
  np.testing.assert_allclose(float(loss), ce + z, rtol=1e-5)
  assert float(sums["num_tokens"]) == 2 * 5  # Targets only: 5 per example.
  metrics = summarize_metrics(sums)
  np.testing.assert_allclose(float(metrics["perplexity"]), np.exp(ce / 10), rtol=1e-5)
  assert 0.0 <= float(metrics["accuracy"]) <= 1.0


def test_decllm_finetuning_loss_ignores_the_prompt_tokens():
  model = make_model("decllm")
  params = init(model)
  batch = lm_batch("decllm")
  other = {k: v.copy() for k, v in batch.items()}
  other["decoder_target_tokens"][:, :6] = 7  # Change targets where weight is 0.
  loss = jax.jit(model.loss_fn)
  a, b = loss(params, _as_jnp(batch))[0], loss(params, _as_jnp(other))[0]
  assert float(a) == float(b)


def test_score_is_the_sum_of_target_log_probs(arch):
  model = make_model(arch)
  params = init(model)
  batch = lm_batch(arch)
  scores = np.asarray(jax.jit(model.score_batch)(params, _as_jnp(batch)))
  logits = np.asarray(conftest.logits(model, params, batch), np.float64)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  picked = np.take_along_axis(logp, batch["decoder_target_tokens"][..., None], -1)[..., 0]
  np.testing.assert_allclose(scores, (picked * batch["decoder_loss_weights"]).sum(-1), rtol=1e-5)


def _grads(model, params, batch, dropout=False):
  rng = jax.random.key(5) if dropout else None
  return jax.jit(jax.grad(lambda p: model.loss_fn(p, batch, rng)[0]))(params)


def test_gradients_are_finite_and_reach_every_parameter(arch):
  # Every remat policy's gradients equal these: tests/integration/test_remat.py.
  model = make_model(arch, dropout_rate=0.1)
  grads = _grads(model, init(model), _as_jnp(lm_batch(arch)), dropout=True)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  assert all(np.abs(g).max() > 0 for g in jax.tree.leaves(grads))


def test_scanned_and_unrolled_layers_agree(arch):
  scanned, unrolled = make_model(arch), make_model(arch, scan_layers=False)
  params = init(scanned)
  batch = lm_batch(arch)
  np.testing.assert_allclose(
    conftest.logits(unrolled, unstack_layers(params), batch),
    conftest.logits(scanned, params, batch),
    rtol=1e-5,
    atol=1e-5,
  )
  assert jax.tree.structure(unstack_layers(params)) == jax.tree.structure(init(unrolled))


def test_dropout_is_off_without_rng_and_on_with_it():
  model = make_model("redllm", dropout_rate=0.5)
  params = init(model)
  batch = _as_jnp(lm_batch("redllm"))
  logits = jax.jit(model.logits)
  a = logits(params, batch)
  np.testing.assert_array_equal(a, logits(params, batch))
  assert np.abs(a - logits(params, batch, jax.random.key(1))).max() > 1e-3


def test_bfloat16_activations_with_float32_params(arch):
  model = make_model(arch, dtype="bfloat16")
  params = init(model)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
  batch = _as_jnp(lm_batch(arch))
  loss, _ = jax.jit(model.loss_fn)(params, batch)
  f32 = jax.jit(make_model(arch).loss_fn)(params, batch)[0]
  assert np.isfinite(float(loss))
  np.testing.assert_allclose(float(loss), float(f32), rtol=5e-2)


def test_every_parameter_has_logical_axes(arch):
  model = make_model(arch)
  params, axes = init(model), model.param_axes()
  specs = jax.tree.leaves(axes, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
  for param, spec in zip(jax.tree.leaves(params), specs):
    assert len(spec) == param.ndim and all(isinstance(n, str) for n in spec), spec
  assert any("layers" in spec for spec in specs)
