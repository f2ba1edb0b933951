"""The network hyperparameters shared by DecLLM and RedLLM.

One frozen dataclass describes both architectures; the model gins in `gin/models/`
bind its fields. DecLLM reads `num_layers`; RedLLM reads `num_encoder_layers` and
`num_decoder_layers` (set them separately for an unbalanced encoder-decoder).
"""
import dataclasses
from typing import Any

import gin
import jax.numpy as jnp

REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch")
# 'einsum': explicit softmax (any backend; the only one that returns attention
# weights). 'xla' / 'cudnn': `jax.nn.dot_product_attention` (cudnn needs a GPU).
# 'pallas_flash': our Pallas flash kernel (flash_attention.py): Mosaic on TPU,
# interpret mode elsewhere (slow; for tests).
ATTENTION_IMPLEMENTATIONS = ("einsum", "xla", "cudnn", "pallas_flash")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """Shapes, numerics and scaling knobs of one network."""

  vocab_size: int = 32768
  d_model: int = 1024
  d_ff: int = 4096
  num_heads: int = 8
  head_dim: int = 128
  num_layers: int = 8  # DecLLM depth.
  num_encoder_layers: int = 3  # RedLLM encoder depth.
  num_decoder_layers: int = 3  # RedLLM decoder depth.
  rope_base: float = 10000.0
  # Per-head RMSNorm on Q, K, V (both architectures, DESIGN.md section 2).
  qkv_norm: bool = True
  # Per-head RMSNorm on the attention output; RedLLM's stabiliser.
  attention_output_norm: bool = False
  # T5 1.0: tied-embedding logits are scaled by 1/sqrt(d_model), with embeddings
  # initialised at stddev 1. False gives unscaled logits (and stddev d^-0.5 init).
  scale_tied_logits: bool = True
  dropout_rate: float = 0.0
  norm_epsilon: float = 1e-6
  dtype: str = "float32"  # Activations: float32 on CPU, bfloat16 on TPU/GPU.
  param_dtype: str = "float32"
  scan_layers: bool = True
  # Projection kernels stored [*out, *in] instead of [*in, *out]: the operand layout
  # XLA:CPU's matrix-vector products read fastest (docs/perf_notes.md). CPU decoding
  # converts to it once per checkpoint (`DecodingConfig.cpu_weight_layout`); training,
  # checkpoints and exports keep [*in, *out].
  kernels_out_first: bool = False
  remat_policy: str = "none"
  attention_impl: str = "einsum"

  def __post_init__(self):
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(
          f"remat_policy={self.remat_policy!r}; choose one of {REMAT_POLICIES}")
    if self.attention_impl not in ATTENTION_IMPLEMENTATIONS:
      raise ValueError(f"attention_impl={self.attention_impl!r}; choose one of "
                       f"{ATTENTION_IMPLEMENTATIONS}")
    for name in ("vocab_size", "d_model", "d_ff", "num_heads", "head_dim"):
      if getattr(self, name) <= 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
    if self.head_dim % 2:
      raise ValueError(f"RoPE needs an even head_dim, got {self.head_dim}")

  @property
  def activation_dtype(self) -> Any:
    return jnp.dtype(self.dtype)

  @property
  def weight_dtype(self) -> Any:
    return jnp.dtype(self.param_dtype)
