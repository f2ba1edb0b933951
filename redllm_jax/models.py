"""The model layer (T5X's `models.py`): losses, scoring and decoding around a network.

Batches use T5X/seqio feature names. DecLLM reads `decoder_input_tokens`,
`decoder_target_tokens`, `decoder_loss_weights` and, when packed,
`decoder_segment_ids` / `decoder_positions`; with BiAttn also
`decoder_causal_attention` (1 on the bidirectional prefix). RedLLM adds
`encoder_input_tokens` and, when packed, `encoder_segment_ids` / `encoder_positions`.
Missing packing features mean "one example per row", with padding where the
tokens are 0; a missing `decoder_causal_attention` means no bidirectional prefix,
as on pretraining chunks (where T5X would raise). The batch builders below give
what the feature converters give training (tests/unit/test_batch_contract.py).
"""

import abc
import dataclasses
import functools
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

import flax
import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np

from redllm_jax import decoding
from redllm_jax.config import TransformerConfig, config_from_dict
from redllm_jax.functional import BOS_ID, PAD_ID, row_positions
from redllm_jax.network import DecLLM, RedLLM

Array = jax.Array
Batch = Mapping[str, Array]
Params = Any


def pad_rows(
  rows: Sequence[Sequence[int]], width: Optional[int] = None, num_rows: Optional[int] = None
) -> tuple[np.ndarray, np.ndarray]:
  """Right-padded int32 [num_rows, width] token ids and the true lengths [num_rows]."""
  lengths = np.zeros(num_rows or len(rows), np.int32)
  lengths[: len(rows)] = [len(r) for r in rows]
  out = np.full((len(lengths), width or int(lengths.max())), PAD_ID, np.int32)
  for i, row in enumerate(rows):
    out[i, : len(row)] = row
  return out, lengths


@flax.struct.dataclass
class DecodingParams:
  """Parameters as `BaseModel.decoding_params` laid them out for `predict_batch`."""

  params: Params
  cpu_weight_layout: bool = flax.struct.field(pytree_node=False)


def _unwrap(params: Params | DecodingParams) -> Params:
  return params.params if isinstance(params, DecodingParams) else params


def unstack_layers(params: Params) -> Params:
  """Scanned layer stacks ("layers", leaves [L, ...]) as unrolled ones ("layers_0", ...):
  the parameter layout of the same network built with `scan_layers=False`."""
  if not isinstance(params, Mapping):
    return params
  out = {}
  for name, value in params.items():
    if name == "layers":
      count = jax.tree.leaves(value)[0].shape[0]
      out.update({f"layers_{i}": jax.tree.map(lambda a, i=i: a[i], value) for i in range(count)})
    else:
      out[name] = unstack_layers(value)
  return out


def _shift_right(targets: np.ndarray) -> np.ndarray:
  """Decoder inputs: BOS, then the targets but the last."""
  return np.pad(targets[:, :-1], ((0, 0), (1, 0)), constant_values=BOS_ID)


class TokenLosses(NamedTuple):
  """Per-token [b, l] float32 statistics of teacher-forced logits."""

  cross_entropy: Array  # log(Z) - target logit.
  z_loss: Array  # z * log(Z)^2.
  correct: Array  # 1.0 where the target is `jnp.argmax` (the first maximal logit).


def token_losses(logits: Array, targets: Array, z_loss: float) -> TokenLosses:
  """Cross-entropy, z-loss and greedy correctness of every token, in float32.

  Training, eval and scoring (`score_batch`, lm-eval) all read their losses here.
  """
  cross_entropy, log_z, correct = _cross_entropy(logits.astype(jnp.float32), targets)
  return TokenLosses(cross_entropy, z_loss * jnp.square(log_z), correct)


@jax.custom_vjp
def _cross_entropy(logits: Array, targets: Array) -> tuple[Array, Array, Array]:
  """(log(Z) - target logit, log(Z), target is the argmax as 1.0), each [b, l].

  The backward is one elementwise pass over the logits (`_cross_entropy_bwd`), where
  autodiff's had a scatter-add for the target gather, which XLA:CPU followed with a
  transposed copy of the whole [b, l, V] gradient.
  """
  peak = jnp.max(logits, axis=-1)
  log_z = jnp.log(jnp.sum(jnp.exp(logits - peak[..., None]), axis=-1)) + peak
  # A gather: the custom backward below needs no scatter-add for it.
  target = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  # `argmax == target` without the index reduction: the target holds the maximum and
  # no earlier index does (argmax returns the first maximum). Equal for finite logits.
  before = jnp.arange(logits.shape[-1], dtype=targets.dtype) < targets[..., None]
  earlier_peak = jnp.max(jnp.where(before, logits, -jnp.inf), axis=-1)
  correct = ((target >= peak) & (earlier_peak < target)).astype(jnp.float32)
  return log_z - target, log_z, correct


def _cross_entropy_fwd(logits: Array, targets: Array):
  out = _cross_entropy(logits, targets)
  return out, (logits, targets, out[1])


def _cross_entropy_bwd(residuals, cotangents):
  """d/dlogits of g_ce * (log Z - target) + g_z * log Z:
  softmax * (g_ce + g_z) - g_ce * onehot."""
  logits, targets, log_z = residuals
  g_cross_entropy, g_log_z, _ = cotangents  # `correct` is piecewise constant.
  probs = jnp.exp(logits - log_z[..., None])
  hit = jnp.arange(logits.shape[-1], dtype=targets.dtype) == targets[..., None]
  grad = probs * (g_cross_entropy + g_log_z)[..., None] - jnp.where(
    hit, g_cross_entropy[..., None], 0.0
  )
  return grad, None


_cross_entropy.defvjp(_cross_entropy_fwd, _cross_entropy_bwd)


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


def _decoder_features(batch: Batch) -> tuple[Array, Array, Array, Array, Array]:
  """(inputs, targets, weights, segment ids, positions) with unpacked defaults."""
  targets = batch["decoder_target_tokens"]
  real = (targets > 0).astype(jnp.int32)
  weights = batch.get("decoder_loss_weights", real).astype(jnp.float32)
  segments = batch.get("decoder_segment_ids", real)
  positions = batch.get("decoder_positions", row_positions(targets))
  return batch["decoder_input_tokens"], targets, weights, segments, positions


class BaseModel(abc.ABC):
  """Shared losses and scoring; subclasses say how a batch reaches the network."""

  network_class: type[nn.Module]
  architecture: str
  inputs_bidirectional_attention = False

  def __init__(self, config: TransformerConfig, z_loss: float = 0.0):
    self.config = config
    self.z_loss = z_loss
    self.network = self.network_class(config)
    # Decoding on CPU (`DecodingConfig.cpu_weight_layout`): unrolled layers, so that
    # no step copies a layer's weights out of the stack, and kernels [*out, *in].
    self.cpu_decoding_network = self.network_class(
      dataclasses.replace(config, scan_layers=False, kernels_out_first=True)
    )

  @property
  def name(self) -> str:
    """decllm, decllm_biattn or redllm."""
    return self.architecture + ("_biattn" if self.inputs_bidirectional_attention else "")

  def describe(self) -> dict[str, Any]:
    """The model's identity, as checkpoints (`meta`) and exports (config.json) record it."""
    return {
      "architecture": self.architecture,
      "config": dataclasses.asdict(self.config),
      "inputs_bidirectional_attention": self.inputs_bidirectional_attention,
    }

  def logits(self, params: Params, batch: Batch, dropout_rng: Array | None = None) -> Array:
    """Teacher-forced decoder logits [b, l, vocab]; dropout iff a dropout_rng is given."""
    rngs = {} if dropout_rng is None else {"dropout": dropout_rng}
    return self.network.apply(
      {"params": params},
      **self._network_inputs(batch),
      enable_dropout=dropout_rng is not None,
      rngs=rngs,
    )

  @abc.abstractmethod
  def pretraining_batch(self, windows: np.ndarray) -> dict[str, np.ndarray]:
    """The batch of pretraining chunks `windows` [b, L] (no padding), every target weighted.

    DecLLM predicts every token from the ones before it (BOS first); RedLLM encodes
    the first half and predicts the second, as its pretraining converter splits.
    """

  @abc.abstractmethod
  def prefix_lm_batch(
    self,
    prompts: Sequence[Sequence[int]],
    answers: Sequence[Sequence[int]],
    rows: Optional[int] = None,
    pad_width: Callable[[int], int] = lambda n: n,
  ) -> dict[str, np.ndarray]:
    """A batch scoring each answer after its prompt (the finetuning layout), right-padded.

    `rows` pads with empty rows; `pad_width` rounds each padded width up (few shapes).
    """

  def abstract_batch(
    self, task_feature_lengths: Mapping[str, int], batch_size: int, sharding: Any = None
  ) -> dict[str, jax.ShapeDtypeStruct]:
    """A training batch at these task lengths as (sharded) shapes, for AOT compiles.

    With an "inputs" length it is the finetuning layout (a prompt and an answer);
    otherwise pretraining chunks of the "targets" length (RedLLM splits them).
    """
    if "inputs" in task_feature_lengths:
      row = self.dummy_batch(1, task_feature_lengths["inputs"], task_feature_lengths["targets"])
    else:
      row = self.pretraining_batch(np.ones((1, task_feature_lengths["targets"]), np.int32))
    return {
      k: jax.ShapeDtypeStruct((batch_size, *v.shape[1:]), v.dtype, sharding=sharding)
      for k, v in row.items()
    }

  def dummy_batch(self, batch_size: int, input_length: int, target_length: int) -> Batch:
    """A batch of the right structure, for initialisation and shape inference."""
    ones = [[1] * input_length] * batch_size, [[1] * target_length] * batch_size
    return self.prefix_lm_batch(*ones)

  def prefill(
    self, params: Params | DecodingParams, tokens: Array, lengths: Array, max_new_tokens: int
  ):
    """(first logits [b, vocab], DecodeState) for right-padded prompts (no BOS)."""
    return self._prefill(
      self._decoding_network(params), _unwrap(params), tokens, lengths, max_new_tokens
    )

  def _decoding_network(self, params: Params | DecodingParams) -> nn.Module:
    """The network that reads `params`: `cpu_decoding_network` for the CPU layout."""
    cpu = isinstance(params, DecodingParams) and params.cpu_weight_layout
    return self.cpu_decoding_network if cpu else self.network

  @abc.abstractmethod
  def _prefill(
    self, network: nn.Module, params: Params, tokens: Array, lengths: Array, max_new_tokens: int
  ):
    """`prefill` through `network`: this model's, or `cpu_decoding_network`."""

  def _variables(self, rng: Array, batch: Batch, network: Optional[nn.Module] = None) -> Any:
    return (network or self.network).init(rng, **self._network_inputs(batch))

  @abc.abstractmethod
  def _network_inputs(self, batch: Batch) -> dict[str, Array]:
    """Keyword arguments of `network.__call__` for a batch."""

  def init_fn(self, rng: Array) -> Params:
    """Unboxed parameters (logical axis names dropped; see `param_axes`). Jit it."""
    return nn.meta.unbox(self._variables(rng, self.dummy_batch(1, 8, 8))["params"])

  def init_params(self, rng: Array) -> Params:
    # Jitted: an eager init dispatches every op of the scanned layers one by one.
    return jax.jit(self.init_fn)(rng)

  def abstract_variables(self, network: Optional[nn.Module] = None) -> Any:
    """Boxed parameter shapes from `jax.eval_shape` (of `network`, by default this
    model's): nothing is allocated."""
    batch = self.dummy_batch(1, 8, 8)
    return jax.eval_shape(lambda: self._variables(jax.random.key(0), batch, network))["params"]

  def abstract_params(self) -> Any:
    """Unboxed parameter shapes (`jax.ShapeDtypeStruct`s)."""
    return nn.meta.unbox(self.abstract_variables())

  def param_axes(self, network: Optional[nn.Module] = None) -> Any:
    """Logical axis names of every parameter, as PartitionSpecs of logical names."""
    return nn.get_partition_spec(self.abstract_variables(network))

  @functools.cached_property
  def _to_cpu_layout(self) -> Callable[[Params], Params]:
    """Jitted: training parameters -> `cpu_decoding_network`'s, each kernel transposed
    from its axis order unrolled to its axis order out-first."""
    unrolled = self.network_class(dataclasses.replace(self.config, scan_layers=False))
    source, target = self.param_axes(unrolled), self.param_axes(self.cpu_decoding_network)
    return jax.jit(
      lambda params: jax.tree.map(
        lambda a, s, t: jnp.transpose(a, [s.index(n) for n in t]),
        unstack_layers(params),
        source,
        target,
      )
    )

  def loss_fn(
    self, params: Params, batch: Batch, dropout_rng: Array | None = None
  ) -> tuple[Array, dict[str, Array]]:
    """(sum of weighted token losses incl. z-loss, metric sums for `summarize_metrics`)."""
    sums = self.metric_sums(self.logits(params, batch, dropout_rng), batch)
    return sums["cross_entropy"] + sums["z_loss"], sums

  def metric_sums(self, logits: Array, batch: Batch) -> dict[str, Array]:
    """Weighted sums of cross-entropy, z-loss and correct tokens, plus token counts."""
    _, targets, weights, _, _ = _decoder_features(batch)
    losses = token_losses(logits, targets, self.z_loss)
    sums = {
      "cross_entropy": jnp.sum(losses.cross_entropy * weights),
      "z_loss": jnp.sum(losses.z_loss * weights),
      "correct": jnp.sum(losses.correct * weights),
      "num_tokens": jnp.sum(weights),
      "num_examples": jnp.sum(jnp.any(weights > 0, axis=-1)).astype(jnp.float32),
    }
    return sums

  def eval_metric_sums(self, params: Params, batch: Batch) -> dict[str, dict[str, Array]]:
    """{metric-name prefix: metric sums} of an eval batch; sums add across batches."""
    return {"": self.metric_sums(self.logits(params, batch), batch)}

  def score_batch(
    self, params: Params, batch: Batch, return_greedy: bool = False
  ) -> Array | tuple[Array, Array]:
    """Log-likelihood [b] of each example's weighted target tokens (no z-loss).

    With `return_greedy` (as T5X's `return_intermediates`, a tuple), also [b] bool:
    whether every weighted target is its position's argmax (lm-eval's `is_greedy`).
    """
    logits = self.logits(params, batch)
    _, targets, weights, _, _ = _decoder_features(batch)
    losses = token_losses(logits, targets, 0.0)
    scores = -jnp.sum(losses.cross_entropy * weights, axis=-1)
    if not return_greedy:
      return scores
    missed = (losses.correct == 0.0) & (weights > 0)
    return scores, ~jnp.any(missed, axis=-1)

  def decoding_params(
    self, params: Params | DecodingParams, cfg: decoding.DecodingConfig
  ) -> DecodingParams:
    """`params` laid out as `predict_batch` reads them under `cfg`.

    With `cfg.cpu_weight_layout`, a copy with one tree per layer and every kernel
    transposed to the order of its logical axis names in `cpu_decoding_network`.
    Convert once per checkpoint, outside any jit: the outputs are then plain
    row-major arrays. `predict_batch` converts training parameters itself, inside
    its own trace, where XLA may fold the transposes back into the dots.
    """
    if isinstance(params, DecodingParams):
      if params.cpu_weight_layout != cfg.cpu_weight_layout:
        raise ValueError(
          f"parameters converted with cpu_weight_layout="
          f"{params.cpu_weight_layout}, decoding with {cfg.cpu_weight_layout}"
        )
      return params
    if cfg.cpu_weight_layout:
      params = self._to_cpu_layout(params)
    return DecodingParams(params, cfg.cpu_weight_layout)

  def predict_batch(
    self,
    params: Params | DecodingParams,
    tokens: Array,
    lengths: Array,
    rng: Array,
    cfg: decoding.DecodingConfig,
    return_logits: bool = False,
  ) -> decoding.DecodeOutput:
    """Decodes continuations of right-padded prompts [b, P] with true `lengths` [b].

    Jit it with `cfg` and `return_logits` static; the loop inside compiles once.
    `params` are training parameters or, faster on CPU, `decoding_params(params, cfg)`.
    """
    params = self.decoding_params(params, cfg)
    first_logits, state = self.prefill(params, tokens, lengths, cfg.max_new_tokens)
    network, params = self._decoding_network(params), params.params
    step = lambda token, s: network.apply({"params": params}, token, s, method=network.decode_step)
    return decoding.decode_loop(step, first_logits, state, rng, cfg, return_logits)


@gin.configurable
def from_gin(model: BaseModel = gin.REQUIRED) -> BaseModel:
  """The model the parsed model gin describes (each binds `models.from_gin.model`).

  Entry points take the model as an argument that their run gin binds to
  %MODEL; library code and tools that parse a model gin themselves call this.
  """
  return model


@gin.configurable
class DecoderOnlyModel(BaseModel):
  """DecLLM: causal LM; with `inputs_bidirectional_attention`, DecLLM + BiAttn."""

  network_class = DecLLM
  architecture = "decllm"

  def __init__(
    self,
    config: TransformerConfig,
    z_loss: float = 0.0,
    inputs_bidirectional_attention: bool = False,
  ):
    super().__init__(config, z_loss)
    self.inputs_bidirectional_attention = inputs_bidirectional_attention

  def eval_metric_sums(self, params: Params, batch: Batch) -> dict[str, dict[str, Array]]:
    """Adds `second_half_*`: the loss on the last half of each row only.

    Those are the positions a RedLLM split predicts from the first half as
    context; DecLLM's full-row loss also averages in the poorly conditioned
    early positions. One forward pass serves both weightings.
    """
    logits = self.logits(params, batch)
    _, targets, weights, _, _ = _decoder_features(batch)
    late = jnp.arange(targets.shape[1]) >= targets.shape[1] // 2
    return {
      "": self.metric_sums(logits, batch),
      "second_half_": self.metric_sums(logits, dict(batch, decoder_loss_weights=weights * late)),
    }

  def _network_inputs(self, batch: Batch) -> dict[str, Array]:
    tokens, _, _, segments, positions = _decoder_features(batch)
    prefix = None
    if self.inputs_bidirectional_attention:
      # Pretraining batches (seqio's DecoderFeatureConverter) have no prefix feature.
      prefix = batch.get("decoder_causal_attention")
    return dict(tokens=tokens, positions=positions, segment_ids=segments, prefix=prefix)

  def pretraining_batch(self, windows: np.ndarray) -> dict[str, np.ndarray]:
    windows = np.asarray(windows, np.int32)
    return {
      "decoder_target_tokens": windows,
      "decoder_input_tokens": _shift_right(windows),
      "decoder_loss_weights": np.ones(windows.shape, np.float32),
    }

  def prefix_lm_batch(
    self,
    prompts: Sequence[Sequence[int]],
    answers: Sequence[Sequence[int]],
    rows: Optional[int] = None,
    pad_width: Callable[[int], int] = lambda n: n,
  ) -> dict[str, np.ndarray]:
    """[BOS, prompt, answer] rows, the loss on the answer; `decoder_causal_attention` is 1
    on [BOS, prompt], the part DecLLM + BiAttn reads bidirectionally."""
    joined = [list(p) + list(a) for p, a in zip(prompts, answers)]
    targets, _ = pad_rows(joined, pad_width(max(map(len, joined))), rows)
    weights = np.zeros(targets.shape, np.float32)
    prefix = np.zeros(targets.shape, np.int32)
    for i, (prompt, answer) in enumerate(zip(prompts, answers)):
      weights[i, len(prompt) : len(prompt) + len(answer)] = 1.0
      prefix[i, : len(prompt) + 1] = 1
    return {
      "decoder_input_tokens": _shift_right(targets),
      "decoder_target_tokens": targets,
      "decoder_loss_weights": weights,
      "decoder_causal_attention": prefix,
    }

  def _prefill(
    self, network: nn.Module, params: Params, tokens: Array, lengths: Array, max_new_tokens: int
  ):
    # The decoder's input stream starts with BOS (id 0), as in training.
    tokens = jnp.pad(tokens, ((0, 0), (1, 0)))
    cache_length = tokens.shape[1] + max_new_tokens
    return network.apply(
      {"params": params},
      tokens,
      lengths + 1,
      cache_length,
      bidirectional_prompt=self.inputs_bidirectional_attention,
      method=network.prefill,
    )


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
      encoder_positions=batch.get("encoder_positions", row_positions(encoder_tokens)),
      encoder_segment_ids=batch.get("encoder_segment_ids", real),
      decoder_tokens=decoder_tokens,
      decoder_positions=decoder_positions,
      decoder_segment_ids=decoder_segments,
    )

  def pretraining_batch(self, windows: np.ndarray) -> dict[str, np.ndarray]:
    windows = np.asarray(windows, np.int32)
    half = windows.shape[1] // 2
    targets = windows[:, half:]
    return {
      "encoder_input_tokens": windows[:, :half],
      "decoder_target_tokens": targets,
      "decoder_input_tokens": _shift_right(targets),
      "decoder_loss_weights": np.ones(targets.shape, np.float32),
    }

  def prefix_lm_batch(
    self,
    prompts: Sequence[Sequence[int]],
    answers: Sequence[Sequence[int]],
    rows: Optional[int] = None,
    pad_width: Callable[[int], int] = lambda n: n,
  ) -> dict[str, np.ndarray]:
    """The prompt in the encoder, the answer in the decoder."""
    encoder, _ = pad_rows(prompts, pad_width(max(len(p) for p in prompts)), rows)
    targets, _ = pad_rows(answers, pad_width(max(len(a) for a in answers)), rows)
    return {
      "encoder_input_tokens": encoder,
      "decoder_input_tokens": _shift_right(targets),
      "decoder_target_tokens": targets,
      "decoder_loss_weights": (targets > 0).astype(np.float32),
    }

  def _prefill(
    self, network: nn.Module, params: Params, tokens: Array, lengths: Array, max_new_tokens: int
  ):
    return network.apply(
      {"params": params}, tokens, lengths, max_new_tokens, method=network.prefill
    )


def from_description(description: Mapping[str, Any]) -> BaseModel:
  """The model that `describe()` recorded (a checkpoint's meta, an export's config.json).

  Evaluation needs no model gin for a checkpoint: it says what it holds. The z-loss,
  a training-only setting, is not part of a model's identity.
  """
  config = config_from_dict(description["config"])
  if description["architecture"] == EncoderDecoderModel.architecture:
    return EncoderDecoderModel(config)
  return DecoderOnlyModel(
    config,
    inputs_bidirectional_attention=bool(description.get("inputs_bidirectional_attention", False)),
  )
