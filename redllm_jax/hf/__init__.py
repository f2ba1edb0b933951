"""The Hugging Face side of an export: config.json fields, modeling code, tokenizer.

`redllm_jax.evaluation.export` calls `hf_fields` (what config.json gains for
transformers: `model_type`, `architectures`, `auto_map`, the conventions),
`write_tokenizer` (tokenizer.json converted from the SentencePiece model by
tokenizers' own converter) and `copy_code` (the torch-only configuration and
modeling files, beside the weights). torch is not imported here, and
transformers only to write the tokenizer: the export runs without the `hf`
extra (and then writes no tokenizer.json). docs/huggingface.md has the rest.
"""

import os
import shutil

MODEL_TYPE = "redllm_jax"  # configuration_redllm_jax.RedLLMJaxConfig.model_type

CODE_FILES = ("configuration_redllm_jax.py", "modeling_redllm_jax.py")
CONFIG_CLASS = "configuration_redllm_jax.RedLLMJaxConfig"
MODEL_CLASSES = {
  "decllm": ("AutoModelForCausalLM", "DecLLMForCausalLM"),
  "redllm": ("AutoModelForSeq2SeqLM", "RedLLMForConditionalGeneration"),
}
# What a third-party loader would otherwise have to guess (checked by the tests
# against functional.py and the Flax layers).
CONVENTIONS = {
  "rope": "rotate_half: head_dim's first and second halves pair up; "
  "inv_freq = rope_base ** (-arange(head_dim / 2) / (head_dim / 2))",
  "qkv_norm_before_rope": True,
  "norms": "RMSNorm with a learned scale, in float32; per head over head_dim for Q, K, V "
  "(and the attention output when attention_output_norm)",
  "input_embeddings_scaled": False,
  "tied_embeddings": "unless config.tied_embeddings is false: then logits read "
  "embed.output_embedding [vocab, d_model]",
  "logit_scale": "d_model ** -0.5 if tied_embeddings and scale_tied_logits else 1",
  "grouped_query_attention": "key/value have num_kv_heads heads (null: num_heads); query "
  "head h reads K/V head h // (num_heads / num_kv_heads)",
  "qkv_norms": "config.query_norm, key_norm, value_norm each switch one",
  "kernel_layout": "[*in, *out]",
  "decllm_input": "BOS = id 0 (the padding id) first; attention_mask marks it",
  "decllm_biattn_prefix": "prefix_mask = 1 on [BOS, prompt]; forward without it is causal; "
  "generate without it: the whole prompt",
  "redllm_decoder_positions": "decoder position 0 = the example's true encoder length; "
  "cross-attention keys rotated at their encoder positions",
  "redllm_decoder_start_token_id": 0,
}


def hf_fields(meta: dict) -> dict:
  """The keys config.json gains for transformers (the rest is ours, shared)."""
  auto_class, model_class = MODEL_CLASSES[meta["architecture"]]
  return {
    "model_type": MODEL_TYPE,
    "architectures": [model_class],
    "auto_map": {"AutoConfig": CONFIG_CLASS, auto_class: f"modeling_redllm_jax.{model_class}"},
    "is_encoder_decoder": meta["architecture"] == "redllm",
    "pad_token_id": meta["special_ids"]["pad"],
    "eos_token_id": meta["special_ids"]["eos"],
    "bos_token_id": meta["decoder_start_token_id"],
    "decoder_start_token_id": meta["decoder_start_token_id"],
    "dtype": meta["config"]["param_dtype"],  # The weights' dtype, as transformers reads it.
    "conventions": CONVENTIONS,
  }


def write_tokenizer(vocab_path: str, out_dir: str, architecture: str) -> bool:
  """tokenizer.json (+ tokenizer_config.json) that encodes as the SentencePiece model does.

  DecLLM's tokenizer prepends BOS (id 0) and pads on the left, ready for
  `generate`; RedLLM's adds nothing (the encoder reads the text as it is) and pads
  on the right. `add_special_tokens=False` gives SentencePiece's ids for both.
  Returns False (nothing written) without transformers.
  """
  # pylint: disable=import-outside-toplevel
  try:
    from tokenizers import decoders, processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import SentencePieceExtractor, SpmConverter
  except ImportError:
    return False

  proto = SentencePieceExtractor(vocab_path).proto
  pieces = [p.piece for p in proto.pieces]
  tokenizer = SpmConverter.build_tokenizer_from_spm_proto(
    proto, {piece: i for i, piece in enumerate(pieces)}
  )
  pad, eos, unk = (
    pieces[i]
    for i in (proto.trainer_spec.pad_id, proto.trainer_spec.eos_id, proto.trainer_spec.unk_id)
  )
  # SentencePiece decodes an unknown piece as its `unk_surface` (" \u2047 "), not "<unk>".
  tokenizer.decoder = decoders.Sequence(
    [decoders.Replace(unk, proto.trainer_spec.unk_surface), tokenizer.decoder]
  )
  if architecture == "decllm":
    tokenizer.post_processor = processors.TemplateProcessing(
      single=f"{pad} $A", pair=f"{pad} $A $B", special_tokens=[(pad, proto.trainer_spec.pad_id)]
    )
  fast = PreTrainedTokenizerFast(
    tokenizer_object=tokenizer,
    pad_token=pad,
    eos_token=eos,
    unk_token=unk,
    bos_token=pad if architecture == "decllm" else None,
    padding_side="left" if architecture == "decllm" else "right",
    # Text is text: a literal "</s>" is encoded as SentencePiece encodes it, not as EOS.
    split_special_tokens=True,
  )
  fast.save_pretrained(out_dir)
  return True


def copy_tokenizer(tokenizer_file: str, out_dir: str) -> str:
  """An imported checkpoint's tokenizer.json, as it is, with the tokenizer_config.json
  that AutoTokenizer needs (written by transformers when installed); returns its name."""
  name = "tokenizer.json"
  shutil.copyfile(tokenizer_file, os.path.join(out_dir, name))
  try:
    from transformers import PreTrainedTokenizerFast  # pylint: disable=import-outside-toplevel
  except ImportError:
    return name
  PreTrainedTokenizerFast(tokenizer_file=tokenizer_file).save_pretrained(out_dir)
  return name


def copy_code(out_dir: str) -> None:
  here = os.path.dirname(os.path.abspath(__file__))
  for name in CODE_FILES:
    shutil.copyfile(os.path.join(here, name), os.path.join(out_dir, name))  # Umask modes.
