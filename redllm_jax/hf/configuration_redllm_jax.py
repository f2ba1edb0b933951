"""transformers configuration of a redllm_jax export (loaded with `trust_remote_code=True`).

The export's one config.json is both our own (`format`, `architecture`, `config`:
every TransformerConfig field, `inputs_bidirectional_attention`; read by
standalone.py and `export.load_export`) and this class's: transformers passes
its keys here, and the standard attributes are derived from `config`. This file
and modeling_redllm_jax.py import only torch and transformers.
"""

from transformers import PretrainedConfig


class RedLLMJaxConfig(PretrainedConfig):
  """DecLLM (`architecture="decllm"`, a causal LM) or RedLLM (`"redllm"`, a seq2seq LM)."""

  model_type = "redllm_jax"
  architecture: str = "decllm"
  config: dict | None = None
  inputs_bidirectional_attention: bool = False
  pad_token_id: int | None = 0
  bos_token_id: int | None = 0
  eos_token_id: int | None = 1
  decoder_start_token_id: int | None = 0
  use_cache: bool = True

  def __post_init__(self, **kwargs):
    net = self.config or {}
    self.vocab_size = net.get("vocab_size")
    self.hidden_size = net.get("d_model")
    self.num_attention_heads = net.get("num_heads")
    self.head_dim = net.get("head_dim")
    self.num_key_value_heads = net.get("num_kv_heads") or net.get("num_heads")
    self.is_encoder_decoder = self.architecture == "redllm"
    self.num_hidden_layers = net.get(
      "num_decoder_layers" if self.is_encoder_decoder else "num_layers"
    )
    # The output projection is the input embedding itself, inside the model (no lm_head).
    self.tie_word_embeddings = False
    super().__post_init__(**kwargs)
