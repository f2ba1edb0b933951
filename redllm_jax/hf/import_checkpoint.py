r"""Imports a Hugging Face Llama or Qwen3 checkpoint as a DecLLM orbax checkpoint.

  python -m redllm_jax.hf.import_checkpoint --hf_dir=DIR [--gguf_file=F] --model_dir=OUT

DIR is what `from_pretrained` reads (config.json + safetensors, or a GGUF file
named by --gguf_file, which transformers dequantizes). OUT/checkpoints/0 is then a
checkpoint like a training run's: `meta` (architecture, every TransformerConfig
field, checksums) and the tokenizer, copied to OUT/vocabulary/tokenizer.json and
recorded by sha256, which eval, infer, export and lm-eval read like a SentencePiece
vocabulary (`data.hf_vocabulary`). It has no optimizer state: start runs from it
(`CHECKPOINT_PATH`, `runs/adapt.gin`), do not resume one in OUT.

The mapping is by flags, not a copy of the architecture: `config_from_hf` reads
each Hugging Face field into a TransformerConfig field and refuses (one line,
exit 2) an architecture or a field value the network does not compute. Gemma 3
does not fit: it scales input embeddings by sqrt(d), norms with (1 + scale), has
extra norms after attention and the MLP, a GELU-tanh MLP, sliding-window layers
with their own RoPE base, and query_pre_attn_scalar; none is a flag here.
"""

import os
from typing import Any, Optional

from absl import flags
import numpy as np

from redllm_jax import checkpoints, errors, gin_utils, models
from redllm_jax.config import TransformerConfig
from redllm_jax.data import hf_vocabulary, vocabulary
from redllm_jax.errors import ConfigError

SUPPORTED = {"llama": "LlamaForCausalLM", "qwen3": "Qwen3ForCausalLM"}
# Hugging Face fields that must hold these values (anything else is computed differently).
_REQUIRED = {
  "hidden_act": "silu",
  "attention_bias": False,
  "mlp_bias": False,
  "use_sliding_window": False,
  "pretraining_tp": 1,
}


def _rope_base(hf: Any) -> float:
  """rope_theta of a default (unscaled) RoPE; a scaled one is refused."""
  rope = getattr(hf, "rope_parameters", None) or {}
  scaling = getattr(hf, "rope_scaling", None)
  kind = rope.get("rope_type", "default")
  if kind != "default" or (scaling and scaling.get("rope_type", "default") != "default"):
    raise ConfigError(f"rope type {kind!r} (scaled RoPE) is not supported; only plain RoPE")
  return float(rope.get("rope_theta", getattr(hf, "rope_theta", 10000.0)))


def _float32_decimal(value: float) -> float:
  """The shortest decimal with `value`'s float32 (GGUF's 1e-5 arrives as 9.9999997e-06):
  both sides add epsilon in float32, and a gin can then write it as 1e-5."""
  return float(str(np.float32(value)))


def config_from_hf(hf: Any) -> TransformerConfig:
  """The DecLLM TransformerConfig computing what the Hugging Face config describes."""
  if hf.model_type not in SUPPORTED:
    raise ConfigError(
      f"model_type {hf.model_type!r} is not supported; import one of {sorted(SUPPORTED.values())}"
    )
  for name, wanted in _REQUIRED.items():
    found = getattr(hf, name, wanted)
    if found != wanted:
      raise ConfigError(
        f"{hf.model_type} config field {name}={found!r} is not supported (needs {wanted!r})"
      )
  layer_types = set(getattr(hf, "layer_types", None) or ["full_attention"])
  if layer_types != {"full_attention"}:
    raise ConfigError(f"layer_types {sorted(layer_types)} are not supported: full attention only")
  heads = hf.num_attention_heads
  kv_heads = getattr(hf, "num_key_value_heads", None) or heads
  qk_norm = hf.model_type == "qwen3"
  return TransformerConfig(
    vocab_size=hf.vocab_size,
    d_model=hf.hidden_size,
    d_ff=hf.intermediate_size,
    num_heads=heads,
    num_kv_heads=None if kv_heads == heads else kv_heads,
    head_dim=getattr(hf, "head_dim", None) or hf.hidden_size // heads,
    num_layers=hf.num_hidden_layers,
    num_encoder_layers=hf.num_hidden_layers,
    num_decoder_layers=hf.num_hidden_layers,
    rope_base=_rope_base(hf),
    query_norm=qk_norm,
    key_norm=qk_norm,
    value_norm=False,
    scale_tied_logits=False,
    tied_embeddings=bool(hf.tie_word_embeddings),
    norm_epsilon=_float32_decimal(hf.rms_norm_eps),
    dtype="float32",
    param_dtype="float32",
  )


def _attention(sd: dict, hf_prefix: str, cfg: TransformerConfig) -> dict[str, np.ndarray]:
  """q/k/v/o_proj [out, in] as kernels [d, heads, head_dim] and [heads, head_dim, d]."""
  d, hd = cfg.d_model, cfg.head_dim
  heads = {
    "query": ("q_proj", cfg.num_heads),
    "key": ("k_proj", cfg.kv_heads),
    "value": ("v_proj", cfg.kv_heads),
  }
  out = {
    f"{ours}.kernel": sd.pop(f"{hf_prefix}.{theirs}.weight").T.reshape(d, n, hd)
    for ours, (theirs, n) in heads.items()
  }
  out["out.kernel"] = sd.pop(f"{hf_prefix}.o_proj.weight").T.reshape(cfg.num_heads, hd, d)
  for ours, theirs in (("query", "q_norm"), ("key", "k_norm")):
    if getattr(cfg, f"{ours}_norm"):
      out[f"{ours}_norm.scale"] = sd.pop(f"{hf_prefix}.{theirs}.weight")
  return out


def tensors_from_hf(
  state_dict: dict[str, np.ndarray], cfg: TransformerConfig
) -> dict[str, np.ndarray]:
  """Hugging Face Llama/Qwen3 tensors under the export's flat names (`export.flatten_params`).

  Every Hugging Face tensor must be used: a left-over one is a ConfigError naming it.
  """
  sd = {k: v for k, v in state_dict.items() if not k.endswith("rotary_emb.inv_freq")}
  flat = {
    "embed.embedding": sd.pop("model.embed_tokens.weight"),
    "decoder_norm.scale": sd.pop("model.norm.weight"),
  }
  head = sd.pop("lm_head.weight", None)
  if not cfg.tied_embeddings:
    flat["embed.output_embedding"] = head
  for i in range(cfg.num_layers):
    hf, ours = f"model.layers.{i}", f"decoder.layers.{i}"
    flat[f"{ours}.pre_self_attention_norm.scale"] = sd.pop(f"{hf}.input_layernorm.weight")
    flat[f"{ours}.pre_mlp_norm.scale"] = sd.pop(f"{hf}.post_attention_layernorm.weight")
    for name, value in _attention(sd, f"{hf}.self_attn", cfg).items():
      flat[f"{ours}.self_attention.{name}"] = value
    for ours_name, theirs in (("wi_gate", "gate_proj"), ("wi_up", "up_proj"), ("wo", "down_proj")):
      flat[f"{ours}.mlp.{ours_name}.kernel"] = sd.pop(f"{hf}.mlp.{theirs}.weight").T
  if sd:
    raise ConfigError(f"unsupported tensor {sorted(sd)[0]} ({len(sd)} left unmapped)")
  return {k: np.ascontiguousarray(v, np.float32) for k, v in flat.items()}


def load_hf(hf_dir: str, gguf_file: Optional[str] = None) -> tuple[TransformerConfig, Any, Any]:
  """(our config, the transformers model in float32, its tokenizer), offline; a
  ConfigError (one line) for an unreadable directory or what `config_from_hf` refuses."""
  # pylint: disable=import-outside-toplevel
  try:
    import torch
    import transformers
  except ImportError:
    raise ConfigError("importing needs the `hf` extra (torch, transformers)") from None
  kwargs = {"gguf_file": gguf_file} if gguf_file else {}
  if gguf_file and not os.path.exists(os.path.join(hf_dir, gguf_file)):
    raise ConfigError(f"GGUF file not found: {os.path.join(hf_dir, gguf_file)}")
  try:
    hf_config = transformers.AutoConfig.from_pretrained(hf_dir, **kwargs)
  except Exception as e:  # pylint: disable=broad-except  # OSError, ValueError, KeyError, ...
    raise ConfigError(
      f"cannot read a Hugging Face config from {hf_dir}: {errors.first_line(e)}"
    ) from None
  config = config_from_hf(hf_config)  # Refuses before the (slow) weights are read.
  try:
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32, **kwargs)
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir, **kwargs)
  except (OSError, ValueError, ImportError) as e:  # No weights or tokenizer; GGUF's packages.
    raise ConfigError(f"cannot load {hf_dir}: {errors.first_line(e)}") from None
  return config, model.eval(), tokenizer


def write_checkpoint(
  config: TransformerConfig, hf_model: Any, tokenizer: Any, model_dir: str, source: dict[str, Any]
) -> dict:
  """Writes MODEL_DIR/checkpoints/0 and MODEL_DIR/vocabulary/tokenizer.json; returns meta."""
  from redllm_jax.evaluation import export  # pylint: disable=import-outside-toplevel

  state_dict = {k: v.detach().numpy() for k, v in hf_model.state_dict().items()}
  model = models.DecoderOnlyModel(config)
  params = export.unflatten_params(tensors_from_hf(state_dict, config), model)
  vocab_file = os.path.join(os.path.abspath(model_dir), hf_vocabulary.IMPORTED_TOKENIZER)
  os.makedirs(os.path.dirname(vocab_file), exist_ok=True)
  tokenizer.backend_tokenizer.save(vocab_file)
  meta = dict(
    model.describe(),
    vocabulary=vocabulary.record_vocabulary(model_dir, vocab_file),
    imported_from=dict(
      source,
      model_type=hf_model.config.model_type,
      bos_token_id=tokenizer.bos_token_id,
      eos_token_id=tokenizer.eos_token_id,
    ),
  )
  checkpointer = checkpoints.Checkpointer(model_dir, save_every=1, async_save=False)
  # Orbax refuses an empty item: the optimizer state is a marker that there is none.
  no_optimizer_state = {"imported": np.zeros((), np.int32)}
  checkpointer.save(0, params, no_optimizer_state, meta, force=True)
  checkpointer.wait()
  checkpointer.close()
  return meta


def import_checkpoint(hf_dir: str, model_dir: str, gguf_file: Optional[str] = None) -> dict:
  """`load_hf`, then `write_checkpoint`; returns the checkpoint's meta."""
  config, hf_model, tokenizer = load_hf(hf_dir, gguf_file)
  source = {"hf_dir": os.path.abspath(hf_dir), "gguf_file": gguf_file}
  return write_checkpoint(config, hf_model, tokenizer, model_dir, source)


def main() -> None:
  f = flags.FLAGS
  meta = import_checkpoint(f.hf_dir, f.model_dir, f.gguf_file)
  config = meta["config"]
  print(
    f"imported {meta['imported_from']['model_type']} as decllm ({config['num_layers']} layers, "
    f"d {config['d_model']}, {config['num_heads']} heads / {config['num_kv_heads'] or config['num_heads']} "
    f"KV) to {f.model_dir}"
  )


if __name__ == "__main__":
  flags.DEFINE_string("hf_dir", None, "Hugging Face model directory.", required=True)
  flags.DEFINE_string("gguf_file", None, "A GGUF file in --hf_dir to read instead of safetensors.")
  flags.DEFINE_string("model_dir", None, "Where to write the orbax checkpoint.", required=True)
  gin_utils.run_flags(main)
