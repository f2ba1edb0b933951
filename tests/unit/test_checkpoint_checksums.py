"""Checkpoint checksums: any changed bit of any array is caught and named."""

import jax.numpy as jnp
import numpy as np
import pytest

from redllm_jax import checkpoints


def _tree():
  rng = np.random.RandomState(0)
  return {
    "params": {
      "w": jnp.asarray(rng.randn(64, 48), jnp.float32),
      "b": jnp.asarray(rng.randn(48), jnp.bfloat16),
    },
    "opt_state": {"count": jnp.int32(7), "v": jnp.asarray(rng.rand(3, 5), jnp.float32)},
  }


def test_checksums_are_deterministic_and_named_by_path():
  recorded = checkpoints.checksums(_tree())
  assert set(recorded) == {"params/w", "params/b", "opt_state/count", "opt_state/v"}
  assert recorded == checkpoints.checksums(_tree())
  checkpoints.verify(_tree(), recorded)  # unchanged: passes
  checkpoints.verify(_tree(), None)  # a checkpoint saved without checksums: nothing to check


@pytest.mark.parametrize("name,dtype", [("w", np.uint32), ("b", np.uint16)])
def test_every_single_bit_flip_is_caught(name, dtype):
  tree = _tree()
  recorded = checkpoints.checksums(tree)
  original = np.asarray(tree["params"][name])
  bits = original.view(dtype).reshape(-1)
  for index in (0, bits.size // 2, bits.size - 1):
    for bit in range(8 * np.dtype(dtype).itemsize):
      flipped = bits.copy()
      flipped[index] ^= dtype(1 << bit)
      tree["params"][name] = jnp.asarray(flipped.view(original.dtype).reshape(original.shape))
      with pytest.raises(checkpoints.CorruptCheckpointError, match=f"array params/{name} "):
        checkpoints.verify(tree, recorded)


def test_swapped_values_are_caught():
  tree = _tree()
  recorded = checkpoints.checksums(tree)
  w = np.asarray(tree["params"]["w"]).copy()
  w[0, 0], w[0, 1] = w[0, 1], w[0, 0]
  tree["params"]["w"] = jnp.asarray(w)
  with pytest.raises(checkpoints.CorruptCheckpointError, match="params/w"):
    checkpoints.verify(tree, recorded)
