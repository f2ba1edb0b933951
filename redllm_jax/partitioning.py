"""The partitioner: a named (data, fsdp, tensor) mesh and logical-axis rules.

Networks name their parameter and activation axes ("batch", "embed", "heads",
...); `logical_axis_rules` map those names onto mesh axes, so one set of gin
bindings chooses data parallelism, FSDP, tensor parallelism or a mix.
"""

import contextlib
import math
from typing import Any, Mapping, Sequence

import flax.linen as nn
import gin
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from redllm_jax.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")

# A mesh axis serves at most one logical axis per array: activations shard their
# batch over (data, fsdp), while parameters shard "embed" over fsdp.
DEFAULT_RULES = (
  ("batch", ("data", "fsdp")),
  ("vocab", "tensor"),
  ("heads", "tensor"),
  ("mlp", "tensor"),
  ("embed", "fsdp"),
  ("kv", None),
  ("length", None),
  ("layers", None),
)


def resolve_mesh_shape(mesh_shape: Sequence[int], num_devices: int) -> tuple[int, ...]:
  """Fills one -1 entry so that the product is `num_devices`; a one-line error otherwise."""
  shape = list(mesh_shape)
  if len(shape) != len(MESH_AXES) or shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
    raise ConfigError(
      f"mesh_shape {tuple(mesh_shape)} must give (data, fsdp, tensor) sizes with at most one -1"
    )
  known = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    if num_devices % known:
      raise ConfigError(f"mesh_shape {tuple(mesh_shape)} does not divide {num_devices} devices")
    shape[shape.index(-1)] = num_devices // known
  if math.prod(shape) != num_devices:
    raise ConfigError(
      f"mesh_shape {tuple(shape)} has {math.prod(shape)} devices; this run has {num_devices}"
    )
  return tuple(shape)


@gin.configurable
class Partitioner:
  """Builds the mesh and turns logical axis names into shardings."""

  def __init__(
    self,
    mesh_shape: Sequence[int] = (-1, 1, 1),
    logical_axis_rules: Sequence[tuple[str, Any]] = DEFAULT_RULES,
    devices: Sequence[jax.Device] | None = None,
  ):
    devices = list(devices if devices is not None else jax.devices())
    shape = resolve_mesh_shape(mesh_shape, len(devices))
    self.mesh = Mesh(
      np.asarray(devices).reshape(shape), MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES)
    )
    self.rules = tuple(
      (name, tuple(axes) if isinstance(axes, list) else axes) for name, axes in logical_axis_rules
    )

  @property
  def data_parallel_size(self) -> int:
    return self.mesh.shape["data"] * self.mesh.shape["fsdp"]

  def sharding(self, logical_spec: P) -> NamedSharding:
    return nn.logical_to_mesh_sharding(logical_spec, self.mesh, self.rules)

  def shardings(self, logical_specs: Any) -> Any:
    return jax.tree.map(self.sharding, logical_specs, is_leaf=lambda x: isinstance(x, P))

  def batch_sharding(self) -> NamedSharding:
    return self.sharding(P("batch", None))

  def global_batch(self, local: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
    """This process's rows of a batch -> global arrays sharded over (data, fsdp)."""
    sharding = self.batch_sharding()
    return {
      k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()
    }

  def context(self) -> contextlib.ExitStack:
    """Mesh and rules for tracing: activation constraints resolve inside it."""
    stack = contextlib.ExitStack()
    stack.enter_context(jax.set_mesh(self.mesh))
    stack.enter_context(nn.logical_axis_rules(self.rules))
    return stack


def optimizer_state_specs(abstract_state: Any, params_specs: Any, abstract_params: Any) -> Any:
  """Logical specs for optimizer state, derived from the parameter each leaf belongs to.

  Leaves shaped like their parameter take its spec; Adafactor's factored row/column
  statistics (the parameter's shape with one axis dropped) take the spec with that
  axis dropped; anything else (counts, unfactored placeholders) is replicated.
  """
  by_path = {}
  for (path, spec), param in zip(
    jax.tree_util.tree_leaves_with_path(params_specs, is_leaf=lambda x: isinstance(x, P)),
    jax.tree.leaves(abstract_params),
  ):
    by_path[_keys(path)] = (tuple(param.shape), tuple(spec))

  def spec_for(path, leaf):
    keys, shape = _keys(path), tuple(leaf.shape)
    for start in range(len(keys)):
      if keys[start:] in by_path:
        param_shape, spec = by_path[keys[start:]]
        if shape == param_shape:
          return P(*spec)
        for axis in range(len(param_shape)):
          if param_shape[:axis] + param_shape[axis + 1 :] == shape:
            return P(*(spec[:axis] + spec[axis + 1 :]))
    return P()

  return jax.tree_util.tree_map_with_path(spec_for, abstract_state)


def _keys(path) -> tuple[str, ...]:
  return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)
