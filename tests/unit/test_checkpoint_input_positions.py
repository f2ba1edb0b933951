"""A checkpoint on disk always has its input position, even while a newer save that
replaces it is in flight (a kill then leaves it as the one to resume from)."""

import os
import pathlib

import jax.numpy as jnp

from redllm_jax import checkpoints


class _Positions:
  """Stands in for the input pipeline: writes a position file where it is told."""

  def save(self, directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    pathlib.Path(directory, "shard_0.json").write_text("{}")


def _steps(folder: pathlib.Path) -> set[int]:
  return {int(p.name) for p in folder.iterdir() if p.name.isdigit()} if folder.exists() else set()


def test_a_replaced_checkpoint_keeps_its_input_position_until_the_new_one_is_committed(tmp_path):
  checkpointer = checkpoints.Checkpointer(os.fspath(tmp_path), save_every=2, keep=1)
  params = {"w": jnp.ones((2048, 2048), jnp.float32)}  # 16 MB: the save takes a while
  opt_state = {"count": jnp.int32(0)}
  saved, positions = tmp_path / "checkpoints", tmp_path / "input_positions"
  checkpointer.save(2, params, opt_state, {}, _Positions())
  checkpointer.wait()
  checkpointer.save(4, params, opt_state, {}, _Positions())
  # Step 4 is in flight: step 2's folder stays until it is committed, with its position.
  assert _steps(saved) <= _steps(positions), (_steps(saved), _steps(positions))
  checkpointer.wait()
  assert _steps(saved) == _steps(positions) == {4}
  checkpointer.close()
