"""Parameter and FLOPs accounting for both architectures.

Conventions (one multiply-add = 2 FLOPs; embedding lookups are free):
- Training FLOPs per sequence = 3 x forward (backward is twice the forward).
  Attention scores count the full length x length matrix, which is what dense
  attention computes (PaLM's MFU convention), causal or not.
- Inference FLOPs per sequence, prompt I and output O, with caches: DecLLM runs all
  its parameters on I + O tokens; RedLLM runs its encoder on I tokens, projects the
  cross-attention K/V once over I, and runs the rest of its decoder on O tokens.
  Each generated token attends to the keys cached so far (no padding slots), and a
  RedLLM decoder token also attends to the I encoder outputs. Logits are computed
  for the O generated tokens only.
"""

import dataclasses

import jax
import numpy as np

from redllm_jax.config import TransformerConfig

EMBEDDING_TABLES = ("embedding", "output_embedding")


def _attention_width(cfg: TransformerConfig) -> int:
  return cfg.num_heads * cfg.head_dim


def _kv_width(cfg: TransformerConfig) -> int:
  return cfg.kv_heads * cfg.head_dim


def _attention_projection_params(cfg: TransformerConfig) -> int:
  """Q, K, V and output matrices of one attention block (K, V narrower with GQA)."""
  return 2 * cfg.d_model * _attention_width(cfg) + 2 * cfg.d_model * _kv_width(cfg)


def _ffn_params(cfg: TransformerConfig) -> int:
  return 3 * cfg.d_model * cfg.d_ff  # SwiGLU: gate, up, down.


def _attention_flops(cfg: TransformerConfig, queries: float, keys: float) -> float:
  """QK^T and PV for one layer."""
  return 4.0 * queries * keys * _attention_width(cfg)


@dataclasses.dataclass(frozen=True)
class ParamCount:
  embedding: int
  non_embedding: int

  @property
  def total(self) -> int:
    return self.embedding + self.non_embedding


def count_params(abstract_params) -> ParamCount:
  """Counts a (boxed or plain) parameter tree of shapes; norms count as non-embedding,
  an untied output table as embedding."""
  leaves = jax.tree_util.tree_leaves_with_path(abstract_params)
  embedding = non_embedding = 0
  for path, leaf in leaves:
    size = int(np.prod(leaf.shape))
    if any(getattr(key, "key", None) in EMBEDDING_TABLES for key in path):
      embedding += size
    else:
      non_embedding += size
  return ParamCount(embedding, non_embedding)


def forward_flops(cfg: TransformerConfig, architecture: str, inputs: int, targets: int) -> float:
  """One teacher-forced forward pass. DecLLM sees inputs + targets as one sequence."""
  logits = 2.0 * cfg.d_model * cfg.vocab_size
  layer = 2.0 * (_attention_projection_params(cfg) + _ffn_params(cfg))
  if architecture == "decllm":
    length = inputs + targets
    return (
      cfg.num_layers * (layer * length + _attention_flops(cfg, length, length)) + logits * length
    )
  encoder = cfg.num_encoder_layers * (layer * inputs + _attention_flops(cfg, inputs, inputs))
  cross_kv = 2.0 * (2 * cfg.d_model * _kv_width(cfg)) * inputs
  cross_qo = 2.0 * (2 * cfg.d_model * _attention_width(cfg)) * targets
  decoder = cfg.num_decoder_layers * (
    layer * targets
    + cross_qo
    + cross_kv
    + _attention_flops(cfg, targets, targets)
    + _attention_flops(cfg, targets, inputs)
  )
  return encoder + decoder + logits * targets


def training_flops(cfg: TransformerConfig, architecture: str, inputs: int, targets: int) -> float:
  return 3.0 * forward_flops(cfg, architecture, inputs, targets)


def _cached_keys(steps: int, context: int) -> float:
  """Keys summed over `steps` cached steps after `context` keys: step t sees context + t + 1."""
  return steps * context + steps * (steps + 1) / 2.0


def inference_flops(cfg: TransformerConfig, architecture: str, prompt: int, output: int) -> float:
  """Prefill of `prompt` tokens, then `output` generated tokens through caches."""
  logits = 2.0 * cfg.d_model * cfg.vocab_size * output
  layer = 2.0 * (_attention_projection_params(cfg) + _ffn_params(cfg))
  if architecture == "decllm":
    prefill = cfg.num_layers * (layer * prompt + _attention_flops(cfg, prompt, prompt))
    fed = max(output - 1, 0)  # The last generated token is never fed back.
    steps = cfg.num_layers * (layer * fed + _attention_flops(cfg, 1, _cached_keys(fed, prompt)))
    return prefill + steps + logits
  encoder = cfg.num_encoder_layers * (layer * prompt + _attention_flops(cfg, prompt, prompt))
  cross_kv = 2.0 * (2 * cfg.d_model * _kv_width(cfg)) * prompt
  cross_qo = 2.0 * (2 * cfg.d_model * _attention_width(cfg)) * output
  # The decoder is fed its start token plus output - 1 generated tokens.
  decoder = cfg.num_decoder_layers * (
    layer * output
    + cross_kv
    + cross_qo
    + _attention_flops(cfg, 1, _cached_keys(output, 0))
    + _attention_flops(cfg, output, prompt)
  )
  return encoder + decoder + logits
