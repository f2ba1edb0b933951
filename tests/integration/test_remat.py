"""Rematerialisation changes memory, never gradients: every policy equals none."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ARCHS, init, lm_batch, make_model


def _grads(model, params, batch):
  return jax.jit(jax.grad(lambda p: model.loss_fn(p, batch, jax.random.key(5))[0]))(params)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_remat_policy_gives_the_same_gradients_with_dropout(arch):
  reference = make_model(arch, dropout_rate=0.1)
  params = init(reference)
  batch = {k: jnp.asarray(v) for k, v in lm_batch(arch).items()}
  want = _grads(reference, params, batch)
  for remat in ("full", "dots", "dots_no_batch"):
    grads = _grads(make_model(arch, remat_policy=remat, dropout_rate=0.1), params, batch)
    for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want)):
      np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
