"""The model layer (T5X's `models.py`): losses, scoring and decoding around a network.

Batches use T5X/seqio feature names. DecLLM reads `decoder_input_tokens`,
`decoder_target_tokens`, `decoder_loss_weights` and, when packed,
`decoder_segment_ids` / `decoder_positions`; with BiAttn also
`decoder_causal_attention` (1 on the bidirectional prefix). RedLLM adds
`encoder_input_tokens` and, when packed, `encoder_segment_ids` / `encoder_positions`.
Missing packing features mean "one example per row", with padding where the
tokens are 0.
"""
import abc
from typing import Any, Mapping

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp

from redllm_jax import decoding
from redllm_jax.config import TransformerConfig
from redllm_jax.network import DecLLM, RedLLM

Array = jax.Array
Batch = Mapping[str, Array]
Params = Any


def token_losses(logits: Array, targets: Array, z_loss: float) -> tuple[Array, Array]:
  """Per-token cross-entropy and z-loss `z * log(Z)^2`, both [b, l], in float32."""
  logits = logits.astype(jnp.float32)
  log_z = jax.nn.logsumexp(logits, axis=-1)
  target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  return log_z - target_logit, z_loss * jnp.square(log_z)


def summarize_metrics(sums: Mapping[str, Array]) -> dict[str, Array]:
  """Per-token averages from the sums that `loss_fn` returns (sums add across microbatches)."""
  tokens = jnp.maximum(sums["num_tokens"], 1.0)
  cross_entropy = sums["cross_entropy"] / tokens
  return {
      "loss": (sums["cross_entropy"] + sums["z_loss"]) / tokens,
      "cross_entropy": cross_entropy,
      "perplexity": jnp.exp(cross_entropy),
      "z_loss": sums["z_loss"] / tokens,
      "accuracy": sums["correct"] / tokens,
      "num_tokens": sums["num_tokens"],
      "num_examples": sums["num_examples"],
  }


def _default(batch: Batch, name: str, fallback: Array) -> Array:
  return batch[name] if name in batch else fallback


def _row_index(tokens: Array) -> Array:
  return jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)


def _decoder_features(batch: Batch) -> tuple[Array, Array, Array, Array, Array]:
  """(inputs, targets, weights, segment ids, positions) with unpacked defaults."""
  targets = batch["decoder_target_tokens"]
  real = (targets > 0).astype(jnp.int32)
  weights = _default(batch, "decoder_loss_weights", real).astype(jnp.float32)
  segments = _default(batch, "decoder_segment_ids", real)
  positions = _default(batch, "decoder_positions", _row_index(targets))
  return batch["decoder_input_tokens"], targets, weights, segments, positions


class BaseModel(abc.ABC):
  """Shared losses and scoring; subclasses say how a batch reaches the network."""

  network_class: type[nn.Module]
  architecture: str

  def __init__(self, config: TransformerConfig, z_loss: float = 0.0):
    self.config = config
    self.z_loss = z_loss
    self.network = self.network_class(config)

  def logits(self, params: Params, batch: Batch, dropout_rng: Array | None = None) -> Array:
    """Teacher-forced decoder logits [b, l, vocab]; dropout iff a dropout_rng is given."""
    rngs = {} if dropout_rng is None else {"dropout": dropout_rng}
    return self.network.apply({"params": params}, **self._network_inputs(batch),
                              enable_dropout=dropout_rng is not None, rngs=rngs)

  @abc.abstractmethod
  def dummy_batch(self, batch_size: int, input_length: int, target_length: int) -> Batch:
    """A batch of the right structure, for initialisation and shape inference."""

  @abc.abstractmethod
  def prefill(self, params: Params, tokens: Array, lengths: Array, max_new_tokens: int):
    """(first logits [b, vocab], DecodeState) for right-padded prompts (no BOS)."""

  def _variables(self, rng: Array, batch: Batch) -> Any:
    return self.network.init(rng, **self._network_inputs(batch))

  @abc.abstractmethod
  def _network_inputs(self, batch: Batch) -> dict[str, Array]:
    """Keyword arguments of `network.__call__` for a batch."""

  def init_fn(self, rng: Array) -> Params:
    """Unboxed parameters (logical axis names dropped; see `param_axes`). Jit it."""
    return nn.meta.unbox(self._variables(rng, self.dummy_batch(1, 8, 8))["params"])

  def init_params(self, rng: Array) -> Params:
    # Jitted: an eager init dispatches every op of the scanned layers one by one.
    return jax.jit(self.init_fn)(rng)

  def abstract_variables(self) -> Any:
    """Boxed parameter shapes from `jax.eval_shape`: nothing is allocated."""
    batch = self.dummy_batch(1, 8, 8)
    return jax.eval_shape(lambda: self._variables(jax.random.key(0), batch))["params"]

  def abstract_params(self) -> Any:
    """Unboxed parameter shapes (`jax.ShapeDtypeStruct`s)."""
    return nn.meta.unbox(self.abstract_variables())

  def param_axes(self) -> Any:
    """Logical axis names of every parameter, as PartitionSpecs of logical names."""
    return nn.get_partition_spec(self.abstract_variables())

  def loss_fn(self, params: Params, batch: Batch,
              dropout_rng: Array | None = None) -> tuple[Array, dict[str, Array]]:
    """(sum of weighted token losses incl. z-loss, metric sums for `summarize_metrics`)."""
    sums = self.metric_sums(self.logits(params, batch, dropout_rng), batch)
    return sums["cross_entropy"] + sums["z_loss"], sums

  def metric_sums(self, logits: Array, batch: Batch) -> dict[str, Array]:
    """Weighted sums of cross-entropy, z-loss and correct tokens, plus token counts."""
    _, targets, weights, _, _ = _decoder_features(batch)
    cross_entropy, z_loss = token_losses(logits, targets, self.z_loss)
    correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
    sums = {
        "cross_entropy": jnp.sum(cross_entropy * weights),
        "z_loss": jnp.sum(z_loss * weights),
        "correct": jnp.sum(correct * weights),
        "num_tokens": jnp.sum(weights),
        "num_examples": jnp.sum(jnp.any(weights > 0, axis=-1)).astype(jnp.float32),
    }
    return sums

  def score_batch(self, params: Params, batch: Batch) -> Array:
    """Log-likelihood [b] of each example's weighted target tokens (no z-loss)."""
    logits = self.logits(params, batch)
    _, targets, weights, _, _ = _decoder_features(batch)
    cross_entropy, _ = token_losses(logits, targets, 0.0)
    return -jnp.sum(cross_entropy * weights, axis=-1)

  def predict_batch(self, params: Params, tokens: Array, lengths: Array, rng: Array,
                    cfg: decoding.DecodingConfig,
                    return_logits: bool = False) -> decoding.DecodeOutput:
    """Decodes continuations of right-padded prompts [b, P] with true `lengths` [b].

    Jit it with `cfg` and `return_logits` static; the loop inside compiles once.
    """
    first_logits, state = self.prefill(params, tokens, lengths, cfg.max_new_tokens)
    step = lambda token, s: self.network.apply({"params": params}, token, s,
                                               method=self.network.decode_step)
    return decoding.decode_loop(step, first_logits, state, rng, cfg, return_logits)


@gin.configurable
class DecoderOnlyModel(BaseModel):
  """DecLLM: causal LM; with `inputs_bidirectional_attention`, DecLLM + BiAttn."""

  network_class = DecLLM
  architecture = "decllm"

  def __init__(self, config: TransformerConfig, z_loss: float = 0.0,
               inputs_bidirectional_attention: bool = False):
    super().__init__(config, z_loss)
    self.inputs_bidirectional_attention = inputs_bidirectional_attention

  def _network_inputs(self, batch: Batch) -> dict[str, Array]:
    tokens, _, _, segments, positions = _decoder_features(batch)
    prefix = None
    if self.inputs_bidirectional_attention:
      prefix = batch["decoder_causal_attention"]
    return dict(tokens=tokens, positions=positions, segment_ids=segments, prefix=prefix)

  def dummy_batch(self, batch_size: int, input_length: int, target_length: int) -> Batch:
    shape = (batch_size, input_length + target_length)
    ones = jnp.ones(shape, jnp.int32)
    return {"decoder_input_tokens": ones, "decoder_target_tokens": ones,
            "decoder_causal_attention": ones}

  def prefill(self, params: Params, tokens: Array, lengths: Array, max_new_tokens: int):
    # The decoder's input stream starts with BOS (id 0), as in training.
    tokens = jnp.pad(tokens, ((0, 0), (1, 0)))
    cache_length = tokens.shape[1] + max_new_tokens
    return self.network.apply(
        {"params": params}, tokens, lengths + 1, cache_length,
        bidirectional_prompt=self.inputs_bidirectional_attention,
        method=self.network.prefill)


@gin.configurable
class EncoderDecoderModel(BaseModel):
  """RedLLM: prefix LM with the prefix in the encoder and the loss on the decoder."""

  network_class = RedLLM
  architecture = "redllm"

  def _network_inputs(self, batch: Batch) -> dict[str, Array]:
    encoder_tokens = batch["encoder_input_tokens"]
    decoder_tokens, _, _, decoder_segments, decoder_positions = _decoder_features(batch)
    real = (encoder_tokens > 0).astype(jnp.int32)
    return dict(
        encoder_tokens=encoder_tokens,
        encoder_positions=_default(batch, "encoder_positions", _row_index(encoder_tokens)),
        encoder_segment_ids=_default(batch, "encoder_segment_ids", real),
        decoder_tokens=decoder_tokens, decoder_positions=decoder_positions,
        decoder_segment_ids=decoder_segments)

  def dummy_batch(self, batch_size: int, input_length: int, target_length: int) -> Batch:
    ones = lambda length: jnp.ones((batch_size, length), jnp.int32)
    return {"encoder_input_tokens": ones(input_length),
            "decoder_input_tokens": ones(target_length),
            "decoder_target_tokens": ones(target_length)}

  def prefill(self, params: Params, tokens: Array, lengths: Array, max_new_tokens: int):
    return self.network.apply({"params": params}, tokens, lengths, max_new_tokens,
                              method=self.network.prefill)
