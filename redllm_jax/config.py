"""The network hyperparameters shared by DecLLM and RedLLM.

One frozen dataclass describes both architectures; the model gins in `gin/models/`
bind its fields. DecLLM reads `num_layers`; RedLLM reads `num_encoder_layers` and
`num_decoder_layers` (set them separately for an unbalanced encoder-decoder).
"""

import dataclasses
from typing import Any, Mapping, Optional

import gin
import jax
import jax.numpy as jnp

# Remat policy name -> the `jax.checkpoint` policy of what a layer's forward pass keeps
# for the backward (network.py); "none" (no remat) is the one name without a policy.
REMAT_CHECKPOINT_POLICIES = {
  "full": None,  # Save nothing: recompute the whole layer in the backward pass.
  "dots": jax.checkpoint_policies.checkpoint_dots,
  "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}
REMAT_POLICIES = ("none", *REMAT_CHECKPOINT_POLICIES)
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
  # Grouped-query attention: K/V heads, each shared by num_heads / num_kv_heads query
  # heads (HF's repeat_kv order: query head h reads K/V head h // group). None = num_heads.
  num_kv_heads: Optional[int] = None
  head_dim: int = 128  # Apart from d_model / num_heads (Qwen3: 128 at d 1024, 16 heads).
  num_layers: int = 8  # DecLLM depth.
  num_encoder_layers: int = 3  # RedLLM encoder depth.
  num_decoder_layers: int = 3  # RedLLM decoder depth.
  rope_base: float = 10000.0
  # Per-head RMSNorm on Q, K, V, each its own switch (both architectures, DESIGN.md
  # section 2; Qwen3 norms Q and K only, Llama none).
  query_norm: bool = True
  key_norm: bool = True
  value_norm: bool = True
  # Per-head RMSNorm on the attention output; RedLLM's stabiliser.
  attention_output_norm: bool = False
  # T5 1.0: tied-embedding logits are scaled by 1/sqrt(d_model), with embeddings
  # initialised at stddev 1. False gives unscaled logits (and stddev d^-0.5 init).
  scale_tied_logits: bool = True
  # False: a separate output table [vocab, d_model] (`output_embedding`), logits unscaled.
  tied_embeddings: bool = True
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
      raise ValueError(f"remat_policy={self.remat_policy!r}; choose one of {REMAT_POLICIES}")
    if self.attention_impl not in ATTENTION_IMPLEMENTATIONS:
      raise ValueError(
        f"attention_impl={self.attention_impl!r}; choose one of {ATTENTION_IMPLEMENTATIONS}"
      )
    for name in ("vocab_size", "d_model", "d_ff", "num_heads", "head_dim"):
      if getattr(self, name) <= 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
    if self.head_dim % 2:
      raise ValueError(f"RoPE needs an even head_dim, got {self.head_dim}")
    if self.num_kv_heads is not None and (
      self.num_kv_heads <= 0 or self.num_heads % self.num_kv_heads
    ):
      raise ValueError(f"num_kv_heads={self.num_kv_heads} must divide num_heads={self.num_heads}")

  @property
  def kv_heads(self) -> int:
    """K/V heads: `num_kv_heads`, or one per query head."""
    return self.num_heads if self.num_kv_heads is None else self.num_kv_heads

  @property
  def activation_dtype(self) -> Any:
    return jnp.dtype(self.dtype)

  @property
  def weight_dtype(self) -> Any:
    return jnp.dtype(self.param_dtype)


def config_from_dict(fields: Mapping[str, Any]) -> TransformerConfig:
  """The config a checkpoint's meta or an export's config.json recorded.

  Fields it lacks take their defaults (today's behaviour); records made before the
  three Q/K/V norm switches carry one `qkv_norm` for all three.
  """
  fields = dict(fields)
  if "qkv_norm" in fields:
    legacy = fields.pop("qkv_norm")
    for name in ("query_norm", "key_norm", "value_norm"):
      fields.setdefault(name, legacy)
  known = {f.name for f in dataclasses.fields(TransformerConfig)}
  return TransformerConfig(**{k: v for k, v in fields.items() if k in known})
