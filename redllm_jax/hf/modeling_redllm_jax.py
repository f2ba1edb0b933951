"""PyTorch DecLLM and RedLLM for transformers, loaded from an export with `trust_remote_code=True`.

  model = AutoModelForCausalLM.from_pretrained(export_dir, trust_remote_code=True)    # DecLLM
  model = AutoModelForSeq2SeqLM.from_pretrained(export_dir, trust_remote_code=True)   # RedLLM

The same maths as redllm_jax.network (and standalone.py), in float32 norms and
softmax: pre-RMSNorm layers; multi-head or grouped-query attention with per-head
RMSNorm on Q, K and V (each if configured; normed before RoPE) and, for RedLLM, on
the attention output; rotate-half RoPE
at arbitrary integer positions; SwiGLU; unscaled input embeddings and tied
logits scaled by 1/sqrt(d_model) (or an untied, unscaled output table). Parameter names and layouts are the export's
own (`decoder.layers.0.self_attention.query.kernel`, kernels [*in, *out]), so
model.safetensors loads as it is.

Conventions a caller must know:
- DecLLM's input starts with BOS = id 0, which is also the padding id: pass the
  tokenizer's `attention_mask` (it marks the BOS), and pad on the left to generate
  (without a mask, generate() takes each row's last leading 0 as its BOS).
- DecLLM + BiAttn reads `prefix_mask` [b, l] (1 = the bidirectional prefix,
  [BOS, prompt]). Without it, `forward` is causal (a plain `model(input_ids)` never
  reads later tokens); `generate` alone defaults the prefix to the whole prompt
  (its `attention_mask`), as predict_batch does. Teacher-forced scoring of
  [BOS, prompt, answer] as the model was trained must pass it.
- `labels` give `loss`, the mean cross-entropy over labels != -100: DecLLM shifts
  inside (logits[:, :-1] against labels[:, 1:]); RedLLM, given no
  `decoder_input_ids`, decodes the labels shifted right after start token 0 (T5).
- RedLLM's decoder position 0 is each example's true encoder length (the sum of
  its `attention_mask`); cross-attention keys are rotated at their encoder positions.
- Unknown keyword arguments are a TypeError, not silently ignored.

Imports only torch and transformers.
"""

import torch
from torch import nn
from torch.nn import functional as F
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput, CausalLMOutputWithPast, Seq2SeqLMOutput

from .configuration_redllm_jax import RedLLMJaxConfig


def apply_rope(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
  """Rotate-half RoPE of x [b, l, heads, head_dim] at integer positions [b, l] (functional.py)."""
  half = x.shape[-1] // 2
  inv_freq = base ** (-torch.arange(half, dtype=torch.float32, device=x.device) / half)
  angles = positions.float()[..., None] * inv_freq
  sin, cos = angles.sin()[:, :, None], angles.cos()[:, :, None]
  x1, x2 = x.float().chunk(2, dim=-1)
  return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
  """Each real token's index among the real tokens of its row (left or right padding)."""
  return (mask.long().cumsum(-1) - 1).clamp(min=0)


class RMSNorm(nn.Module):
  def __init__(self, dim: int, eps: float):
    super().__init__()
    self.scale = nn.Parameter(torch.ones(dim))
    self.eps = eps

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x32 = x.float()
    normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
    return (normed * self.scale.float()).to(x.dtype)


class Projection(nn.Module):
  """x's last len(in_shape) axes times `kernel` [*in_shape, *out_shape], as exported."""

  def __init__(self, in_shape: tuple, out_shape: tuple):
    super().__init__()
    self.kernel = nn.Parameter(torch.empty(*in_shape, *out_shape))
    self.contract = len(in_shape)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return torch.tensordot(x, self.kernel, dims=self.contract)


# config fields newer than the export format, with the values an export without them
# implies (an older export's one `qkv_norm` sets all three norms); standalone.py's too.
OPTIONAL_FIELDS = {
  "num_kv_heads": None,
  "query_norm": True,
  "key_norm": True,
  "value_norm": True,
  "tied_embeddings": True,
}


def with_optional_fields(net: dict) -> dict:
  net = dict(net)
  legacy = net.pop("qkv_norm", None)
  for name, default in OPTIONAL_FIELDS.items():
    net.setdefault(name, legacy if legacy is not None and name.endswith("_norm") else default)
  return net


class Attention(nn.Module):
  """Multi-head (or grouped-query) attention with optional per-head Q/K/V (and output)
  RMSNorm, RoPE on Q and K."""

  def __init__(self, net: dict, layer_idx: int):
    super().__init__()
    d, h, k = net["d_model"], net["num_heads"], net["head_dim"]
    kv = net["num_kv_heads"] or h
    self.layer_idx, self.net = layer_idx, net
    self.query = Projection((d,), (h, k))
    self.key, self.value = Projection((d,), (kv, k)), Projection((d,), (kv, k))
    self.out = Projection((h, k), (d,))
    for name in ("query", "key", "value"):
      if net[f"{name}_norm"]:
        setattr(self, f"{name}_norm", RMSNorm(k, net["norm_epsilon"]))
    if net["attention_output_norm"]:
      self.output_norm_layer = RMSNorm(k, net["norm_epsilon"])

  def keys_values(
    self, x: torch.Tensor, positions: torch.Tensor
  ) -> tuple[torch.Tensor, torch.Tensor]:
    """K (normed, then rotated) and V, both [b, kv_heads, l, head_dim] as the caches hold them."""
    k, v = self.key(x), self.value(x)
    if self.net["key_norm"]:
      k = self.key_norm(k)
    if self.net["value_norm"]:
      v = self.value_norm(v)
    k = apply_rope(k, positions, self.net["rope_base"])
    return k.transpose(1, 2), v.transpose(1, 2)

  def forward(
    self,
    x: torch.Tensor,
    positions: torch.Tensor,
    mask: torch.Tensor,
    keys_values: tuple[torch.Tensor, torch.Tensor],
  ) -> torch.Tensor:
    """x [b, q, d] at `positions` [b, q] over `keys_values`, under a boolean mask [b, 1, q, k]."""
    q = self.query(x)
    if self.net["query_norm"]:
      q = self.query_norm(q)
    q = apply_rope(q, positions, self.net["rope_base"]).transpose(1, 2)
    k, v = keys_values
    groups = q.shape[1] // k.shape[1]  # Query head h reads K/V head h // groups.
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * q.shape[-1] ** -0.5
    scores = scores.masked_fill(~mask, torch.finfo(torch.float32).min)
    probs = scores.softmax(-1)
    # Queries that see no key (padding) output zeros, never NaN or a uniform average.
    out = torch.matmul(probs.to(v.dtype), v) * mask.any(-1, keepdim=True).to(v.dtype)
    out = out.transpose(1, 2)  # [b, q, heads, head_dim]
    if self.net["attention_output_norm"]:
      out = self.output_norm_layer(out)
    return self.out(out)


class MLP(nn.Module):
  def __init__(self, net: dict):
    super().__init__()
    d, f = net["d_model"], net["d_ff"]
    self.wi_gate, self.wi_up, self.wo = (
      Projection((d,), (f,)),
      Projection((d,), (f,)),
      Projection((f,), (d,)),
    )

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.wo(F.silu(self.wi_gate(x)) * self.wi_up(x))


class Layer(nn.Module):
  """Pre-norm layer: self-attention, optional cross-attention, SwiGLU."""

  def __init__(self, net: dict, layer_idx: int, cross: bool):
    super().__init__()
    eps = net["norm_epsilon"]
    self.pre_self_attention_norm = RMSNorm(net["d_model"], eps)
    self.self_attention = Attention(net, layer_idx)
    if cross:
      self.pre_cross_attention_norm = RMSNorm(net["d_model"], eps)
      self.cross_attention = Attention(net, layer_idx)
    self.pre_mlp_norm = RMSNorm(net["d_model"], eps)
    self.mlp = MLP(net)

  def forward(self, x, positions, mask, self_cache: Cache | None, cross=None) -> torch.Tensor:
    """`cross` = (keys_values_fn, cross mask); the function returns the (cached) cross K/V."""
    h = self.pre_self_attention_norm(x)
    k, v = self.self_attention.keys_values(h, positions)
    if self_cache is not None:
      k, v = self_cache.update(k, v, self.self_attention.layer_idx)
    x = x + self.self_attention(h, positions, mask, (k, v))
    if cross is not None:
      cross_keys_values, cross_mask = cross
      h = self.pre_cross_attention_norm(x)
      x = x + self.cross_attention(
        h, positions, cross_mask, cross_keys_values(self.cross_attention)
      )
    return x + self.mlp(self.pre_mlp_norm(x))


class Stack(nn.Module):
  """The layers of the encoder or the decoder (parameter names `encoder.layers.N...`)."""

  main_input_name = "input_ids"  # generate() asks the model's `encoder` attribute.

  def __init__(self, net: dict, num_layers: int, cross: bool):
    super().__init__()
    self.layers = nn.ModuleList(Layer(net, i, cross) for i in range(num_layers))


class TiedEmbedding(nn.Module):
  """Unscaled input embeddings; logits against the same table, times 1/sqrt(d) (T5 1.0),
  or, untied, against `output_embedding`, unscaled."""

  def __init__(self, net: dict):
    super().__init__()
    self.embedding = nn.Parameter(torch.empty(net["vocab_size"], net["d_model"]))
    self.tied = net["tied_embeddings"]
    if not self.tied:
      self.output_embedding = nn.Parameter(torch.empty(net["vocab_size"], net["d_model"]))
    self.logit_scale = net["d_model"] ** -0.5 if net["scale_tied_logits"] and self.tied else 1.0

  def forward(self, tokens: torch.Tensor) -> torch.Tensor:
    return self.embedding[tokens]

  def attend(self, x: torch.Tensor) -> torch.Tensor:
    table = self.embedding if self.tied else self.output_embedding
    return torch.matmul(x.float(), table.float().t()) * self.logit_scale


class RedLLMJaxPreTrainedModel(PreTrainedModel):
  config_class = RedLLMJaxConfig
  base_model_prefix = "redllm_jax"
  main_input_name = "input_ids"
  _no_split_modules = ["Layer"]
  _supports_cache_class = True

  def __init__(self, config: RedLLMJaxConfig):
    super().__init__(config)
    self.net = with_optional_fields(config.config)
    self.embed = TiedEmbedding(self.net)
    self.decoder_norm = RMSNorm(self.net["d_model"], self.net["norm_epsilon"])

  def _init_weights(self, module: nn.Module) -> None:
    """Fresh weights (an export always overwrites them): the Flax initialisers' scales."""
    if isinstance(module, Projection):
      fan_in = module.kernel.shape[: module.contract].numel()
      nn.init.normal_(module.kernel, std=fan_in**-0.5)
    elif isinstance(module, TiedEmbedding):  # stddev 1 with scaled logits, else d ** -0.5
      nn.init.normal_(
        module.embedding, std=module.logit_scale**-1 * module.embedding.shape[1] ** -0.5
      )
      if not module.tied:
        nn.init.normal_(module.output_embedding, std=module.embedding.shape[1] ** -0.5)
    elif isinstance(module, RMSNorm):
      nn.init.ones_(module.scale)

  def get_input_embeddings(self) -> nn.Module:
    return self.embed

  def _logits(self, x: torch.Tensor) -> torch.Tensor:
    return self.embed.attend(self.decoder_norm(x))


def _visible(q_slots, k_slots, k_valid, causal: bool, q_prefix=None, k_prefix=None) -> torch.Tensor:
  """Boolean mask [b, 1, q, k]: valid keys, causal over slots, and a bidirectional prefix."""
  mask = k_valid[:, None, :].bool().expand(-1, q_slots.shape[-1], -1)
  if causal:
    seen = k_slots[None, None, :] <= q_slots[None, :, None]
    if q_prefix is not None:
      seen = seen | (q_prefix[:, :, None].bool() & k_prefix[:, None, :].bool())
    mask = mask & seen
  return mask[:, None]


# What generate() (or a caller) may pass that changes nothing while falsy.
_IGNORED_WHEN_FALSE = ("output_attentions", "output_hidden_states")


def _check_kwargs(name: str, kwargs: dict) -> None:
  """A TypeError for any argument forward() would otherwise drop (a misspelt `prefix_mask`)."""
  unknown = sorted(k for k, v in kwargs.items() if k not in _IGNORED_WHEN_FALSE or v)
  if unknown:
    raise TypeError(f"{name}.forward() got unsupported arguments: {', '.join(unknown)}")


def _output(output, return_dict: bool | None):
  return output if return_dict is None or return_dict else output.to_tuple()


class DecLLMForCausalLM(RedLLMJaxPreTrainedModel, GenerationMixin):
  """DecLLM (and DecLLM + BiAttn): a causal LM over [BOS=0, tokens...]."""

  def __init__(self, config: RedLLMJaxConfig):
    super().__init__(config)
    self.decoder = Stack(self.net, self.net["num_layers"], cross=False)
    self.post_init()

  def forward(
    self,
    input_ids: torch.LongTensor,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.LongTensor | None = None,
    prefix_mask: torch.Tensor | None = None,
    cache: Cache | None = None,
    use_cache: bool | None = None,
    labels: torch.LongTensor | None = None,
    return_dict: bool | None = None,
    **kwargs,
  ) -> CausalLMOutputWithPast:
    """Logits [b, l, vocab]. `attention_mask` [b, past + l] covers the cached tokens too.

    `prefix_mask` [b, >= 1] (BiAttn): 1 on the bidirectional prefix; None is causal.
    `labels` [b, l]: `loss` = mean cross-entropy of logits[:, :-1] against labels[:, 1:]
    over labels != -100 (the transformers convention: labels may be the input_ids).
    """
    _check_kwargs(type(self).__name__, kwargs)
    use_cache = self.config.use_cache if use_cache is None else use_cache
    if use_cache and cache is None:
      cache = DynamicCache()
    past = cache.get_seq_length() if cache is not None else 0
    length = input_ids.shape[1]
    total = past + length
    if attention_mask is None:
      attention_mask = torch.ones(
        input_ids.shape[0], total, dtype=torch.long, device=input_ids.device
      )
    if position_ids is None:
      position_ids = positions_from_mask(attention_mask)[:, past:total]
    slots = torch.arange(total, device=input_ids.device)
    q_prefix = k_prefix = None
    if self.config.inputs_bidirectional_attention and prefix_mask is not None:
      # Over the whole sequence: tokens past the mask's end (generated ones) are never prefix.
      k_prefix = F.pad(prefix_mask[:, :total], (0, total - min(prefix_mask.shape[1], total)))
      q_prefix = k_prefix[:, past:total]
    mask = _visible(slots[past:], slots, attention_mask, True, q_prefix, k_prefix)
    x = self.embed(input_ids)
    for layer in self.decoder.layers:
      x = layer(x, position_ids, mask, cache)
    logits = self._logits(x)
    loss = None
    if labels is not None:
      labels = labels.to(logits.device)
      loss = F.cross_entropy(
        logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100
      )
    return _output(CausalLMOutputWithPast(loss=loss, logits=logits, cache=cache), return_dict)

  def prepare_inputs_for_generation(
    self,
    input_ids: torch.LongTensor,
    next_sequence_length: int | None = None,
    cache: Cache | None = None,
    attention_mask: torch.Tensor | None = None,
    **kwargs,
  ) -> dict:
    """BiAttn, no `prefix_mask` given to generate(): the whole prompt is the prefix."""
    inputs = super().prepare_inputs_for_generation(
      input_ids,
      next_sequence_length=next_sequence_length,
      cache=cache,
      attention_mask=attention_mask,
      **kwargs,
    )
    if (
      self.config.inputs_bidirectional_attention
      and inputs.get("prefix_mask") is None
      and attention_mask is not None
      and (cache is None or cache.get_seq_length() == 0)
    ):
      inputs["prefix_mask"] = attention_mask  # The prompt's forward: [pad.., BOS, prompt].
    return inputs

  def _update_model_kwargs_for_generation(
    self, outputs, model_kwargs: dict, *args, **kwargs
  ) -> dict:
    """Keeps the prompt's prefix for later steps (read again without a cache); new tokens are not in it."""
    if (
      self.config.inputs_bidirectional_attention
      and model_kwargs.get("prefix_mask") is None
      and model_kwargs.get("attention_mask") is not None
    ):
      model_kwargs["prefix_mask"] = model_kwargs["attention_mask"]  # Before this step's token.
    return super()._update_model_kwargs_for_generation(outputs, model_kwargs, *args, **kwargs)

  def _prepare_attention_mask_for_generation(
    self, inputs_tensor: torch.Tensor, generation_config, model_kwargs: dict
  ) -> torch.LongTensor:
    """generate() without an attention_mask: transformers would mask every id 0, the BOS
    too. Rows are [pad.., BOS, prompt]: the mask starts at the id 0 before the first other id."""
    ids = model_kwargs.get("input_ids", inputs_tensor)
    first_real = (ids != self.config.pad_token_id).long().argmax(-1)
    start = (first_real - 1).clamp(min=0)
    return (torch.arange(ids.shape[1], device=ids.device)[None] >= start[:, None]).long()


class _Encoder:
  """What `generate` calls as the encoder: RedLLM's embedding, encoder layers and final norm."""

  def __init__(self, model: "RedLLMForConditionalGeneration"):
    self.model = model

  def forward(
    self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None, **kwargs
  ) -> BaseModelOutput:
    return self.model.encode(input_ids, attention_mask)

  __call__ = forward


class RedLLMForConditionalGeneration(RedLLMJaxPreTrainedModel, GenerationMixin):
  """RedLLM: the prompt in the encoder, the continuation from the decoder (start token 0)."""

  def __init__(self, config: RedLLMJaxConfig):
    super().__init__(config)
    self.encoder = Stack(self.net, self.net["num_encoder_layers"], cross=False)
    self.decoder = Stack(self.net, self.net["num_decoder_layers"], cross=True)
    self.encoder_norm = RMSNorm(self.net["d_model"], self.net["norm_epsilon"])
    self.post_init()

  def get_encoder(self, modality: str | None = None) -> _Encoder:
    return _Encoder(self)

  def _encoder_mask(self, input_ids, attention_mask):
    return (
      (input_ids != self.config.pad_token_id).long() if attention_mask is None else attention_mask
    )

  def encode(
    self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None
  ) -> BaseModelOutput:
    """Bidirectional encoder over the real tokens (padding: `attention_mask`, else id 0)."""
    attention_mask = self._encoder_mask(input_ids, attention_mask)
    slots = torch.arange(input_ids.shape[1], device=input_ids.device)
    mask = _visible(slots, slots, attention_mask, False) & attention_mask[:, None, :, None].bool()
    positions = positions_from_mask(attention_mask)
    x = self.embed(input_ids)
    for layer in self.encoder.layers:
      x = layer(x, positions, mask, None)
    return BaseModelOutput(last_hidden_state=self.encoder_norm(x))

  def forward(
    self,
    input_ids: torch.LongTensor | None = None,
    attention_mask: torch.Tensor | None = None,
    decoder_input_ids: torch.LongTensor | None = None,
    decoder_attention_mask: torch.Tensor | None = None,
    encoder_outputs: BaseModelOutput | tuple | None = None,
    cache: Cache | None = None,
    use_cache: bool | None = None,
    labels: torch.LongTensor | None = None,
    return_dict: bool | None = None,
    **kwargs,
  ) -> Seq2SeqLMOutput:
    """Decoder logits [b, l, vocab]; decoder positions continue after each true encoder length.

    `labels` [b, l]: `loss` = mean cross-entropy over labels != -100; without
    `decoder_input_ids`, the decoder reads the labels shifted right after start token
    0 (-100 read as pad 0), as T5 does (lm-eval's `hf` model calls it so).
    """
    _check_kwargs(type(self).__name__, kwargs)
    if decoder_input_ids is None:
      if labels is None:
        raise ValueError("RedLLM's forward needs decoder_input_ids or labels")
      decoder_input_ids = self._shift_right(labels)
    if encoder_outputs is None:
      encoder_outputs = self.encode(input_ids, attention_mask)
    encoded = encoder_outputs[0]
    if attention_mask is None:
      attention_mask = (
        self._encoder_mask(input_ids, None)
        if input_ids is not None
        else torch.ones(encoded.shape[:2], dtype=torch.long, device=encoded.device)
      )
    use_cache = self.config.use_cache if use_cache is None else use_cache
    if use_cache and cache is None:
      cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    past = cache.self_attention_cache.get_seq_length() if cache is not None else 0
    total = past + decoder_input_ids.shape[1]
    if decoder_attention_mask is None:
      decoder_attention_mask = torch.ones(
        decoder_input_ids.shape[0], total, dtype=torch.long, device=decoder_input_ids.device
      )
    slots = torch.arange(total, device=decoder_input_ids.device)
    self_mask = _visible(slots[past:], slots, decoder_attention_mask, True)
    encoder_slots = torch.arange(encoded.shape[1], device=encoded.device)
    cross_mask = (
      _visible(slots[past:], encoder_slots, attention_mask, False)
      & decoder_attention_mask[:, past:total, None].bool()[:, None]
    )
    positions = attention_mask.sum(-1, keepdim=True) + slots[None, past:]
    encoder_positions = positions_from_mask(attention_mask)

    def cross_keys_values(attention: Attention):
      """Projected from the encoder output once per generation, then read from the cache."""
      if cache is None:
        return attention.keys_values(encoded, encoder_positions)
      idx = attention.layer_idx
      if not cache.is_updated.get(idx):
        k, v = attention.keys_values(encoded, encoder_positions)
        cache.cross_attention_cache.update(k, v, idx)
        cache.is_updated[idx] = True
      layer = cache.cross_attention_cache.layers[idx]
      return layer.keys, layer.values

    x = self.embed(decoder_input_ids)
    self_cache = cache.self_attention_cache if cache is not None else None
    for layer in self.decoder.layers:
      x = layer(x, positions, self_mask, self_cache, cross=(cross_keys_values, cross_mask))
    logits = self._logits(x)
    loss = None
    if labels is not None:
      loss = F.cross_entropy(
        logits.flatten(0, 1), labels.to(logits.device).flatten(), ignore_index=-100
      )
    return _output(
      Seq2SeqLMOutput(loss=loss, logits=logits, cache=cache, encoder_last_hidden_state=encoded),
      return_dict,
    )

  def _shift_right(self, labels: torch.LongTensor) -> torch.LongTensor:
    """Decoder inputs from labels: start token 0, then the labels but the last; -100 -> pad."""
    start = torch.full_like(labels[:, :1], self.config.decoder_start_token_id)
    shifted = torch.cat([start, labels[:, :-1]], dim=1)
    return shifted.masked_fill(shifted == -100, self.config.pad_token_id)

  def prepare_decoder_input_ids_from_labels(self, labels: torch.LongTensor) -> torch.LongTensor:
    return self._shift_right(labels)
