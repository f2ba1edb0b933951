"""The plain-autodiff versions of the train step's custom-VJP functions, as references.

`models.token_losses` and `layers.dense` compute the same maths as these with
hand-written backward passes laid out for XLA:CPU; the tests check them against
these, and `bench --sections=study` times the step with these swapped back in
(`autodiff_step`), side by side.
"""

import contextlib
from typing import Iterator
from unittest import mock

import jax
import jax.numpy as jnp

from redllm_jax import layers, models
from redllm_jax.models import TokenLosses


def token_losses(logits: jax.Array, targets: jax.Array, z_loss: float) -> TokenLosses:
  """`models.token_losses` differentiated by JAX: logsumexp, a `take_along_axis`
  gather of the target logit (a scatter-add backward) and an `argmax` compare."""
  logits = logits.astype(jnp.float32)
  log_z = jax.nn.logsumexp(logits, axis=-1)
  target = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
  return TokenLosses(log_z - target, z_loss * jnp.square(log_z), correct)


def dense(x: jax.Array, kernel: jax.Array, out_first: bool, out_dtype=None) -> jax.Array:
  """`layers.dense` differentiated by JAX (its transpose rule lays out the kernel gradient)."""
  return layers._dense(x, kernel, out_first, out_dtype)  # pylint: disable=protected-access


@contextlib.contextmanager
def autodiff_step() -> Iterator[None]:
  """Functions traced inside this context use the autodiff references (jit traces once:
  build and first call the function to compare inside it)."""
  with (
    mock.patch.object(models, "token_losses", token_losses),
    mock.patch.object(layers, "dense", dense),
  ):
    yield
