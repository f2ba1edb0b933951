"""DecLLM checkpoint -> RedLLM parameters: the T5Gemma adaptation recipe.

Pure functions over parameter trees (docs/adaptation.md has the mapping table):
- encoder layer j and decoder layer j are copies of the DecLLM layers that the
  layer-selection rule picks for each stack (all of them when the depths match);
- each decoder cross-attention (and its pre-norm) is a copy of the same layer's
  self-attention (and its pre-norm), as T5Gemma initialises it;
- the embedding (and an untied output table) is shared; both final norms are the DecLLM's final norm;
- the attention-output norms, which DecLLM lacks, start at scale 1.

`load_adapted_params` is what `runs/adapt.gin` binds as train's
`load_initial_params`: a RedLLM run then starts from a DecLLM checkpoint.
"""

from typing import Any, Mapping

import gin
import jax
import jax.numpy as jnp
import numpy as np

from redllm_jax import checkpoints
from redllm_jax.config import TransformerConfig
from redllm_jax.errors import ConfigError
from redllm_jax.models import BaseModel, unstack_layers

Params = Mapping[str, Any]
LAYER_SELECTIONS = ("first", "last", "evenly_spaced")
# The cross-attention output projection: T5Gemma's copy of the self-attention's, or zeros.
CROSS_ATTENTION_OUTPUTS = ("copy", "zero")
# Fields that fix a parameter's shape or what a layer computes: source and target
# must agree on them for a copied tensor to mean the same thing.
_SHARED_FIELDS = (
  "vocab_size",
  "d_model",
  "d_ff",
  "num_heads",
  "kv_heads",
  "head_dim",
  "query_norm",
  "key_norm",
  "value_norm",
  "rope_base",
  "scale_tied_logits",
  "tied_embeddings",
  "norm_epsilon",
)


def select_layers(num_source: int, num_target: int, rule: str) -> list[int]:
  """Which of `num_source` DecLLM layers (by index) build a stack of `num_target`.

  'first' and 'last' take a contiguous block from the bottom or the top;
  'evenly_spaced' keeps the first and the last layer and spreads the rest
  (round(i * (num_source - 1) / (num_target - 1))). Equal depths take all layers.
  """
  if rule not in LAYER_SELECTIONS:
    raise ConfigError(f"layer selection {rule!r}: choose one of {LAYER_SELECTIONS}")
  if not 1 <= num_target <= num_source:
    raise ConfigError(
      f"cannot build a stack of {num_target} layers from a DecLLM of "
      f"{num_source}: adaptation keeps or drops layers, never adds them"
    )
  if rule == "first":
    return list(range(num_target))
  if rule == "last":
    return list(range(num_source - num_target, num_source))
  if num_target == 1:
    return [0]
  return [int(i) for i in np.round(np.linspace(0, num_source - 1, num_target))]


def _ones_like_scale(attention: Params) -> Params:
  """The output-norm scale of one attention block: ones over head_dim."""
  head_dim = attention["query"]["kernel"].shape[-1]
  return {"scale": jnp.ones((head_dim,), attention["query"]["kernel"].dtype)}


def _attention(source: Params, output_norm: bool) -> Params:
  out = dict(source)
  if output_norm:
    out["output_norm_layer"] = _ones_like_scale(source)
  return out


def _encoder_layer(layer: Params, output_norm: bool) -> Params:
  return {
    "self_attention": _attention(layer["self_attention"], output_norm),
    "pre_self_attention_norm": layer["pre_self_attention_norm"],
    "mlp": layer["mlp"],
    "pre_mlp_norm": layer["pre_mlp_norm"],
  }


def _decoder_layer(layer: Params, output_norm: bool, cross_attention_output: str) -> Params:
  cross = _attention(layer["self_attention"], output_norm)
  if cross_attention_output == "zero":
    cross["out"] = {"kernel": jnp.zeros_like(cross["out"]["kernel"])}
  return {
    **_encoder_layer(layer, output_norm),
    "cross_attention": cross,
    "pre_cross_attention_norm": layer["pre_self_attention_norm"],
  }


def _stack(layers: list[Params], scanned: bool) -> Params:
  """Per-layer trees as one stack: scanned ("layers", leading axis) or unrolled."""
  if scanned:
    return {"layers": jax.tree.map(lambda *xs: jnp.stack(xs), *layers)}
  return {f"layers_{i}": layer for i, layer in enumerate(layers)}


def adapt_params(
  params: Params,
  source: TransformerConfig,
  target: TransformerConfig,
  encoder_layers: str = "evenly_spaced",
  decoder_layers: str = "evenly_spaced",
  cross_attention_output: str = "copy",
) -> dict[str, Any]:
  """RedLLM parameters (laid out for `target`) from DecLLM `params` (of `source`).

  Copies only: no tensor is changed, except the new output-norm scales (ones) and,
  with `cross_attention_output="zero"`, the cross-attention output projections
  (zeros: without output norms the decoder then starts as the DecLLM of its layers).
  """
  if cross_attention_output not in CROSS_ATTENTION_OUTPUTS:
    raise ConfigError(
      f"cross_attention_output {cross_attention_output!r}: choose one of {CROSS_ATTENTION_OUTPUTS}"
    )
  dec = unstack_layers(params)
  layers = [dec["decoder"][f"layers_{i}"] for i in range(source.num_layers)]
  norm = target.attention_output_norm
  enc_pick = select_layers(source.num_layers, target.num_encoder_layers, encoder_layers)
  dec_pick = select_layers(source.num_layers, target.num_decoder_layers, decoder_layers)
  return {
    "embed": dec["embed"],
    "encoder": _stack([_encoder_layer(layers[i], norm) for i in enc_pick], target.scan_layers),
    "encoder_norm": dec["decoder_norm"],
    "decoder": _stack(
      [_decoder_layer(layers[i], norm, cross_attention_output) for i in dec_pick],
      target.scan_layers,
    ),
    "decoder_norm": dec["decoder_norm"],
  }


def check_compatible(source: BaseModel, target: BaseModel, where: str) -> None:
  """One-line errors unless `source` is a DecLLM whose shapes the RedLLM `target` shares."""
  if target.architecture != "redllm":
    raise ConfigError(f"adaptation builds a redllm model, but the model gin gives a {target.name}")
  if source.architecture != "decllm":
    raise ConfigError(
      f"{where} holds a {source.name} checkpoint; adaptation starts from a decllm one"
    )
  for name in _SHARED_FIELDS:
    found, wanted = getattr(source.config, name), getattr(target.config, name)
    if found != wanted:
      raise ConfigError(
        f"{where} has {name}={found}, the RedLLM to build has {wanted}: "
        "adaptation copies tensors, so these must match"
      )


def _check_shapes(adapted: Params, abstract: Params) -> None:
  """The adapted tree has exactly the target model's parameters and shapes."""
  got = {jax.tree_util.keystr(p): x.shape for p, x in jax.tree_util.tree_leaves_with_path(adapted)}
  want = {
    jax.tree_util.keystr(p): x.shape for p, x in jax.tree_util.tree_leaves_with_path(abstract)
  }
  if got != want:
    wrong = sorted(set(got.items()) ^ set(want.items()))[0][0]
    raise ConfigError(f"the adapted parameters do not match the RedLLM's at {wrong}")


@gin.configurable
def load_adapted_params(
  checkpoint_path: str,
  model: BaseModel,
  shardings: Any = None,
  encoder_layers: str = "evenly_spaced",
  decoder_layers: str = "evenly_spaced",
  cross_attention_output: str = "copy",
) -> Any:
  """A RedLLM's initial parameters from the DecLLM checkpoint at `checkpoint_path`.

  The signature of `checkpoints.load_params`, so train binds either one as
  `load_initial_params`. `shardings` (a tree like the parameters) places them.
  """
  # The mapping runs in host memory: on a pod the first local device is one chip,
  # which holds neither a large DecLLM nor its adapted copy.
  host = jax.devices("cpu")[0]
  source, params = checkpoints.load_model_and_params(checkpoint_path, device=host)
  check_compatible(source, model, checkpoint_path)
  abstract = model.abstract_params()
  with jax.default_device(host):
    adapted = adapt_params(
      params, source.config, model.config, encoder_layers, decoder_layers, cross_attention_output
    )
    _check_shapes(adapted, abstract)
    adapted = jax.tree.map(lambda x, a: x.astype(a.dtype), adapted, abstract)
  return adapted if shardings is None else jax.device_put(adapted, shardings)
