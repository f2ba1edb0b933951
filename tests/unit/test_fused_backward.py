"""The train step's hand-written backward passes (`models.token_losses`, `layers.dense`)
against JAX autodiff of the same maths (`tools/autodiff_reference.py`) and float64 NumPy."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import init, make_model
from redllm_jax import layers
from redllm_jax.models import token_losses
from redllm_jax.tools import autodiff_reference

Z_LOSS = 1e-2


def _ragged_batch(model):
  """Prompts and answers of different lengths: padding, and DecLLM prompt weights of 0."""
  rng = np.random.RandomState(3)
  prompts = [rng.randint(2, 50, n).tolist() for n in (6, 3, 5)]
  answers = [rng.randint(2, 50, n).tolist() for n in (5, 2, 4)]
  return {k: jnp.asarray(v) for k, v in model.prefix_lm_batch(prompts, answers).items()}


def _loss_and_grads(model, params, batch):
  # A fresh function per call: jit must trace it again inside `autodiff_step`.
  fn = lambda p: model.loss_fn(p, batch)
  return jax.jit(jax.value_and_grad(fn, has_aux=True))(params)


def test_loss_metrics_and_gradients_equal_autodiff(arch):
  model = make_model(arch, z_loss=Z_LOSS, scan_layers=False)
  params, batch = init(model), _ragged_batch(model)
  (loss, sums), grads = _loss_and_grads(model, params, batch)
  with autodiff_reference.autodiff_step():
    (ref_loss, ref_sums), ref_grads = _loss_and_grads(model, params, batch)
  np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-6)
  for key in ref_sums:
    np.testing.assert_allclose(float(sums[key]), float(ref_sums[key]), rtol=1e-6, err_msg=key)
  # Float32 sums in another order: agree to ~1e-6 of each tensor's scale.
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    ref = np.asarray(_leaf(ref_grads, path))
    np.testing.assert_allclose(
      np.asarray(g),
      ref,
      rtol=1e-5,
      atol=1e-5 * np.abs(ref).max(),
      err_msg=jax.tree_util.keystr(path),
    )


def _leaf(tree, path):
  for key in path:
    tree = tree[key.key]
  return tree


def _np_token_stats(logits, targets, z):
  logits = np.asarray(logits, np.float64)
  peak = logits.max(-1, keepdims=True)
  log_z = np.log(np.exp(logits - peak).sum(-1)) + peak[..., 0]
  target = np.take_along_axis(logits, targets[..., None], -1)[..., 0]
  return log_z - target, z * log_z**2, (logits.argmax(-1) == targets).astype(np.float64)


def test_token_losses_and_logit_gradient_equal_float64_numpy():
  rng = np.random.RandomState(0)
  logits = rng.randn(3, 7, 50).astype(np.float32) * 4
  targets = rng.randint(0, 50, (3, 7)).astype(np.int32)
  targets[0, :3] = logits[0, :3].argmax(-1)  # Some correct tokens.
  weights = (rng.rand(3, 7) > 0.3).astype(np.float32)
  ce, z, correct = _np_token_stats(logits, targets, Z_LOSS)
  out = token_losses(jnp.asarray(logits), jnp.asarray(targets), Z_LOSS)
  np.testing.assert_allclose(out.cross_entropy, ce, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out.z_loss, z, rtol=1e-5)
  np.testing.assert_array_equal(out.correct, correct)
  # d/dlogits of sum w * (ce + z log(Z)^2) = w * (softmax * (1 + 2 z log Z) - onehot).
  total = lambda l: jnp.sum(
    (lambda t: (t.cross_entropy + t.z_loss) * weights)(
      token_losses(l, jnp.asarray(targets), Z_LOSS)
    )
  )
  grad = np.asarray(jax.jit(jax.grad(total))(jnp.asarray(logits)))
  x = np.asarray(logits, np.float64)
  log_z = np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1)) + x.max(-1)
  probs = np.exp(x - log_z[..., None])
  onehot = np.arange(50) == targets[..., None]
  expected = weights[..., None] * (probs * (1 + 2 * Z_LOSS * log_z)[..., None] - onehot)
  np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)


def test_correct_is_argmax_on_ties():
  # argmax returns the first maximal index: a target tied with an earlier maximum is wrong.
  logits = np.array(
    [[[1, 3, 3, 0]] * 4 + [[2, 2, 2, 2]] * 2 + [[-np.inf, 5, -np.inf, 1]]], np.float32
  )
  targets = np.array([[1, 2, 0, 3, 0, 3, 1]], np.int32)
  out = token_losses(jnp.asarray(logits), jnp.asarray(targets), 0.0)
  np.testing.assert_array_equal(out.correct, (logits.argmax(-1) == targets).astype(np.float32))
  assert out.correct.tolist() == [[1, 0, 0, 0, 1, 0, 1]]


@pytest.mark.parametrize("out_first", [False, True])
@pytest.mark.parametrize("features_in,features_out", [(8, 24), (24, 8)])
@pytest.mark.parametrize("dtype,out_dtype", [(jnp.float32, None), (jnp.bfloat16, jnp.float32)])
def test_dense_gradients_equal_autodiff_and_numpy(
  out_first, features_in, features_out, dtype, out_dtype
):
  rng = np.random.RandomState(1)
  x = rng.randn(2, 5, features_in)
  kernel = rng.randn(features_in, features_out)
  cotangent = rng.randn(2, 5, features_out)
  stored = kernel.T if out_first else kernel
  loss = lambda f: jax.jit(
    jax.grad(
      lambda x, k: jnp.sum(f(x, k, out_first, out_dtype).astype(jnp.float32) * cotangent),
      argnums=(0, 1),
    )
  )
  args = jnp.asarray(x, dtype), jnp.asarray(stored, dtype)
  dx, dk = loss(layers.dense)(*args)
  ref_dx, ref_dk = loss(autodiff_reference.dense)(*args)
  assert dx.dtype == dk.dtype == dtype and dk.shape == stored.shape
  tol = 1e-6 if dtype == jnp.float32 else 1e-2  # Of each tensor's scale: summation order.
  for ours, ref in ((dk, ref_dk), (dx, ref_dx)):
    ours, ref = np.asarray(ours, np.float32), np.asarray(ref, np.float32)
    np.testing.assert_allclose(ours, ref, rtol=tol, atol=tol * np.abs(ref).max())
  if dtype == jnp.float32:
    np_dk = np.einsum("bli,blo->io", x, cotangent)
    np.testing.assert_allclose(dk, np_dk.T if out_first else np_dk, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, cotangent @ kernel.T, rtol=1e-5, atol=1e-6)


def _compiled_head_gradient(dense, tokens: int, vocab: int, width: int) -> str:
  """Optimised HLO of the tied logits' and loss's gradient at [tokens, vocab]."""

  def loss(x, table, targets):
    logits = dense(x, table, True, jnp.float32)
    return jnp.sum(token_losses(logits, targets, Z_LOSS).cross_entropy)

  args = (
    jax.ShapeDtypeStruct((1, tokens, width), jnp.float32),
    jax.ShapeDtypeStruct((vocab, width), jnp.float32),
    jax.ShapeDtypeStruct((1, tokens), jnp.int32),
  )
  return jax.jit(jax.grad(loss, argnums=(0, 1))).lower(*args).compile().as_text()


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="an XLA:CPU layout")
def test_the_logits_gradient_is_never_written_transposed():
  """The point of `layers.dense`'s backward: no [vocab, tokens] buffer. Autodiff has one
  (if XLA stops writing it, the custom backward is no longer needed)."""
  tokens, vocab, width = 256, 512, 16
  transposed = re.compile(rf"f32\[{vocab},{tokens}\]")
  assert not transposed.search(_compiled_head_gradient(layers.dense, tokens, vocab, width))
  assert transposed.search(_compiled_head_gradient(autodiff_reference.dense, tokens, vocab, width))


@pytest.mark.parametrize("out_first", [False, True])
def test_projection_of_an_empty_sequence_is_empty(out_first):
  """A RedLLM rolling-loglikelihood window with no prefix has an encoder of length 0."""
  module = layers.Projection(
    features=(2, 3), names=("embed", "heads", "kv"), num_in=1, out_first=out_first
  )
  params = module.init(jax.random.PRNGKey(0), jnp.ones((1, 4, 5)))
  empty = jnp.ones((1, 0, 5))
  assert module.apply(params, empty).shape == (1, 0, 2, 3)
  grads = jax.grad(lambda p: jnp.sum(module.apply(p, empty)))(params)
  assert not np.asarray(jax.tree_util.tree_leaves(grads)[0]).any()
