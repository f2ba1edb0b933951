"""Memory pre-flight of a training run: does one train step fit, before anything compiles?

Per device, in bytes:
- state: parameters and optimizer state, each array's shard on one device (its
  sharding's shard shape), exact;
- gradients: one float32 copy of the parameter shards (two with microbatches: the
  running sum and the microbatch's own);
- activations kept for the backward pass of one microbatch's rows on one device,
  per token and layer (`_per_token_layer_bytes`: the projections, norms and FFN
  values of a pre-norm layer; float32 attention scores and probabilities unless the
  attention implementation never materialises them), as the remat policy keeps
  them, plus float32 logits, their softmax and gradient.

The figure is a planning estimate, not XLA's buffer assignment: on the tiny demo
config it is within a factor of two of `memory_analysis()` of the compiled step
(tests/integration/test_memory_check.py). The limit is the device's memory (on
CPU, the host's RAM shared by its local devices, lowered by a cgroup memory limit
or RLIMIT_AS when set). A step past it is a one-line ConfigError; bind
`train.train.ignore_memory_check=True` to go on anyway.
"""

import os
import resource
from typing import Any, Mapping

import jax
import numpy as np

from redllm_jax.config import TransformerConfig
from redllm_jax.errors import ConfigError

_F32 = 4
# Attention that never holds a [queries, keys] matrix per head in memory.
_FUSED_ATTENTION = ("cudnn", "pallas_flash")
_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def _shard_elements(leaf: Any) -> int:
  """Elements of one device's shard of a (sharded) ShapeDtypeStruct."""
  sharding = getattr(leaf, "sharding", None)
  shape = sharding.shard_shape(leaf.shape) if sharding is not None else leaf.shape
  return int(np.prod(shape, dtype=np.int64))


def _shard_bytes(tree: Any) -> int:
  return sum(
    _shard_elements(leaf) * np.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(tree)
  )


def _per_token_layer_bytes(cfg: TransformerConfig, keys: int, cross_keys: int = 0) -> float:
  """Activations one token keeps for one layer's backward pass, without remat.

  Pre-norm self-attention: the layer input and its norm (2 d_model), Q, K, V before
  and after their norms and RoPE (8 heads x head_dim), the attention output and its
  norm (2 heads x head_dim), the output projection and residual (2 d_model); FFN:
  norm (2 d_model), gate, up, activation and product (4 d_ff). Cross-attention adds
  its own norms, Q and output (6 heads x head_dim, 2 d_model) and scores.
  """
  width = cfg.num_heads * cfg.head_dim
  values = 6 * cfg.d_model + 10 * width + 4 * cfg.d_ff
  if cross_keys:
    values += 2 * cfg.d_model + 6 * width
  scores = (
    0 if cfg.attention_impl in _FUSED_ATTENTION else 2 * cfg.num_heads * (keys + cross_keys) * _F32
  )
  return values * cfg.activation_dtype.itemsize + scores


def _kept_per_token_layer(cfg: TransformerConfig, full: float) -> float:
  """What the remat policy keeps of a layer's activations between forward and backward."""
  if cfg.remat_policy == "full":
    return cfg.d_model * cfg.activation_dtype.itemsize  # the layer's input only
  if cfg.remat_policy in ("dots", "dots_no_batch"):
    width = cfg.num_heads * cfg.head_dim
    return (3 * width + 2 * cfg.d_model + 2 * cfg.d_ff) * cfg.activation_dtype.itemsize
  return full


def activation_bytes(
  cfg: TransformerConfig, architecture: str, rows: int, lengths: Mapping[str, int]
) -> float:
  """Activations of `rows` rows of `lengths` ({"encoder_input_tokens": n,
  "decoder_target_tokens": m}) kept for one backward pass, plus the logits'."""
  targets = lengths["decoder_target_tokens"]
  inputs = lengths.get("encoder_input_tokens", 0)
  stacks = (
    [
      (inputs, cfg.num_encoder_layers, inputs, 0),
      (targets, cfg.num_decoder_layers, targets, inputs),
    ]
    if architecture == "redllm"
    else [(targets, cfg.num_layers, targets, 0)]
  )
  kept, largest_layer = 0.0, 0.0
  for tokens, layers, keys, cross_keys in stacks:
    full = _per_token_layer_bytes(cfg, keys, cross_keys)
    kept += tokens * layers * _kept_per_token_layer(cfg, full)
    largest_layer = max(largest_layer, tokens * full)  # recomputed layer during backward
  if cfg.remat_policy == "none":
    largest_layer = 0.0
  logits = 3 * targets * cfg.vocab_size * _F32  # logits, log-softmax, their gradient
  return rows * (kept + largest_layer + logits)


def estimate(
  model,
  abstract_state: Any,
  rows_per_device: int,
  lengths: Mapping[str, int],
  num_microbatches: int,
) -> dict[str, float]:
  """Per-device bytes of one train step: state, gradients, activations and their total."""
  parameter_count = sum(map(_shard_elements, jax.tree.leaves(abstract_state.params)))
  figures = {
    "parameters": _shard_bytes(abstract_state.params),
    "optimizer_state": _shard_bytes(abstract_state.opt_state),
    "gradients": parameter_count * _F32 * (2 if num_microbatches > 1 else 1),
    "activations": activation_bytes(model.config, model.architecture, rows_per_device, lengths),
  }
  figures["total"] = sum(figures.values())
  return figures


def _host_memory() -> int:
  """Host RAM, lowered by a cgroup memory limit or RLIMIT_AS when one is set."""
  limits = [os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")]
  for path in _CGROUP_LIMITS:
    try:
      with open(path, encoding="utf-8") as f:
        text = f.read().strip()
    except OSError:
      continue
    if text.isdigit():
      limits.append(int(text))
  address_space = resource.getrlimit(resource.RLIMIT_AS)[0]
  if address_space != resource.RLIM_INFINITY:
    limits.append(address_space)
  return min(limits)


def device_memory(device: jax.Device) -> tuple[int, str]:
  """(bytes one device may use, where that figure comes from)."""
  stats = device.memory_stats() if device.platform != "cpu" else None
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"]), f"{device.device_kind} memory"
  local = len(jax.local_devices())
  share = f" / {local} local devices" if local > 1 else ""
  return _host_memory() // local, f"host RAM{share}"


def check(figures: Mapping[str, float], limit: int, where: str) -> None:
  """A one-line ConfigError when the step's estimate exceeds `limit`."""
  if figures["total"] <= limit:
    return
  parts = ", ".join(
    f"{name.replace('_', ' ')} {figures[name] / 2**30:.2f}"
    for name in ("parameters", "optimizer_state", "gradients", "activations")
  )
  raise ConfigError(
    f"the train step needs about {figures['total'] / 2**30:.2f} GiB per device ({parts} GiB), "
    f"more than the {limit / 2**30:.2f} GiB of {where}; use a smaller model or batch, more "
    "microbatches or remat, or bind train.train.ignore_memory_check=True to try anyway"
  )
