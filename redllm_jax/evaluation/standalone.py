r"""Standalone loader for exported models: pure jax.numpy, no Flax, TensorFlow, seqio or gin.

  python redllm_jax/evaluation/standalone.py EXPORT_DIR "Who was the 37th President?" [--max_new_tokens=32]

An export directory (written by `python -m redllm_jax.evaluation.export`) holds:
  config.json          architecture, TransformerConfig fields, BiAttn flag, format version
  model.safetensors    parameters under flat names (no pickle), one tensor per layer, e.g.
                       decoder.layers.0.self_attention.query.kernel  [d_model, heads, head_dim]
  spm.model            the SentencePiece vocabulary (pad 0, eos 1, unk 2), when exported

This file imports only jax, numpy, safetensors and sentencepiece (plus the standard
library) and `functional.py`, the flax-free maths the Flax layers are built on,
which the export copies beside it; so the two can be used on their own, next to
an export. It assembles the forward pass of both networks from those shared
functions (the layer wiring of redllm_jax.network, float32 norms and softmax) and
a simple greedy decoder that recomputes the whole sequence at each step (no KV
cache: a reference, not a fast server).

A config.json that does not match the tensors is refused with one line naming the
first mismatching tensor.
"""

import argparse
import json
import os
import sys
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import safetensors.numpy

if __package__:  # Inside the package.
  from redllm_jax import functional as F
else:  # Copied next to an export: the sibling copy, however this file was loaded.
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import functional as F  # pylint: disable=import-error,wrong-import-position

FORMAT = "redllm_jax"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
VOCAB_FILE = "spm.model"
ARCHITECTURES = ("decllm", "redllm")
CONFIG_FIELDS = (
  "vocab_size",
  "d_model",
  "d_ff",
  "num_heads",
  "head_dim",
  "num_layers",
  "num_encoder_layers",
  "num_decoder_layers",
  "rope_base",
  "attention_output_norm",
  "scale_tied_logits",
  "norm_epsilon",
  "dtype",
)
# Fields newer than the format, with the values an export without them implies
# (TransformerConfig's defaults; an older export's one `qkv_norm` sets all three norms).
OPTIONAL_FIELDS = {
  "num_kv_heads": None,
  "query_norm": True,
  "key_norm": True,
  "value_norm": True,
  "tied_embeddings": True,
}
NORMS = ("query", "key", "value")
PAD_ID, EOS_ID = F.PAD_ID, F.EOS_ID
SHARED_MATHS_FILE = "functional.py"


class ExportError(ValueError):
  """An export directory that cannot be loaded; the message is one line."""


# ----------------------------------------------------------------------------- names


def with_optional_fields(cfg: dict) -> dict:
  """`cfg` with every OPTIONAL_FIELDS entry, as its export meant it."""
  cfg = dict(cfg)
  legacy = cfg.pop("qkv_norm", None)
  for name, default in OPTIONAL_FIELDS.items():
    implied = legacy if legacy is not None and name.endswith("_norm") else default
    cfg.setdefault(name, implied)
  return cfg


def kv_heads(cfg: dict) -> int:
  return cfg["num_kv_heads"] or cfg["num_heads"]


def _attention_shapes(prefix: str, cfg: dict) -> dict[str, tuple]:
  d, h, k = cfg["d_model"], cfg["num_heads"], cfg["head_dim"]
  shapes = {f"{prefix}.query.kernel": (d, h, k), f"{prefix}.out.kernel": (h, k, d)}
  shapes.update({f"{prefix}.{n}.kernel": (d, kv_heads(cfg), k) for n in ("key", "value")})
  shapes.update({f"{prefix}.{n}_norm.scale": (k,) for n in NORMS if cfg[f"{n}_norm"]})
  if cfg["attention_output_norm"]:
    shapes[f"{prefix}.output_norm_layer.scale"] = (k,)
  return shapes


def _layer_shapes(prefix: str, cfg: dict, cross: bool) -> dict[str, tuple]:
  d, f = cfg["d_model"], cfg["d_ff"]
  shapes = {
    f"{prefix}.pre_self_attention_norm.scale": (d,),
    f"{prefix}.pre_mlp_norm.scale": (d,),
    f"{prefix}.mlp.wi_gate.kernel": (d, f),
    f"{prefix}.mlp.wi_up.kernel": (d, f),
    f"{prefix}.mlp.wo.kernel": (f, d),
  }
  shapes.update(_attention_shapes(f"{prefix}.self_attention", cfg))
  if cross:
    shapes[f"{prefix}.pre_cross_attention_norm.scale"] = (d,)
    shapes.update(_attention_shapes(f"{prefix}.cross_attention", cfg))
  return shapes


def expected_shapes(architecture: str, cfg: dict) -> dict[str, tuple]:
  """Every tensor name an export of this architecture/config must hold, with its shape."""
  cfg = with_optional_fields(cfg)
  shapes = {
    "embed.embedding": (cfg["vocab_size"], cfg["d_model"]),
    "decoder_norm.scale": (cfg["d_model"],),
  }
  if not cfg["tied_embeddings"]:
    shapes["embed.output_embedding"] = shapes["embed.embedding"]
  if architecture == "decllm":
    for i in range(cfg["num_layers"]):
      shapes.update(_layer_shapes(f"decoder.layers.{i}", cfg, cross=False))
  else:
    shapes["encoder_norm.scale"] = (cfg["d_model"],)
    for i in range(cfg["num_encoder_layers"]):
      shapes.update(_layer_shapes(f"encoder.layers.{i}", cfg, cross=False))
    for i in range(cfg["num_decoder_layers"]):
      shapes.update(_layer_shapes(f"decoder.layers.{i}", cfg, cross=True))
  return shapes


def check_tensors(architecture: str, cfg: dict, shapes: dict[str, tuple]) -> None:
  """Raises ExportError (one line) unless `shapes` is exactly what the config implies."""
  expected = expected_shapes(architecture, cfg)
  missing = sorted(set(expected) - set(shapes))
  extra = sorted(set(shapes) - set(expected))
  where = f"config.json ({architecture}) does not match the tensors"
  if missing:
    raise ExportError(
      f"{where}: missing {missing[0]}"
      + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
    )
  if extra:
    raise ExportError(
      f"{where}: unexpected tensor {extra[0]}"
      + (f" and {len(extra) - 1} more" if len(extra) > 1 else "")
    )
  for name, shape in expected.items():
    if tuple(shapes[name]) != tuple(shape):
      raise ExportError(
        f"{where}: {name} has shape {tuple(shapes[name])}, config implies {tuple(shape)}"
      )


def check_config(config: dict) -> None:
  """Raises ExportError (one line) for an unknown format, architecture or missing field."""
  if config.get("format") != FORMAT or config.get("format_version") != FORMAT_VERSION:
    raise ExportError(
      f"not a {FORMAT} v{FORMAT_VERSION} export: format={config.get('format')!r} "
      f"version={config.get('format_version')!r}"
    )
  if config.get("architecture") not in ARCHITECTURES:
    raise ExportError(
      f"unknown architecture {config.get('architecture')!r}; expected one of {ARCHITECTURES}"
    )
  missing = [f for f in CONFIG_FIELDS if f not in config.get("config", {})]
  if missing:
    raise ExportError(f"config.json lacks config fields {missing}")


def read_config(export_dir: str) -> dict:
  """The checked config.json of an export whose weights file exists; else ExportError."""
  config_path = os.path.join(export_dir, CONFIG_FILE)
  for path in (config_path, os.path.join(export_dir, WEIGHTS_FILE)):
    if not os.path.exists(path):
      raise ExportError(f"export file not found: {path}")
  with open(config_path) as f:
    try:
      meta = json.load(f)
    except json.JSONDecodeError as e:
      raise ExportError(f"{config_path} is not valid JSON: {e}") from None
  check_config(meta)
  return meta


# ----------------------------------------------------------------------------- layers


def rms_norm(x, scale, cfg: dict):
  return F.rms_norm(x, scale, cfg["norm_epsilon"], cfg["dtype"])


def _dense(x, kernel, contract: int, cfg: dict):
  """x's last `contract` axes times kernel's first `contract` axes, in the activation dtype."""
  x, kernel = x.astype(cfg["dtype"]), kernel.astype(cfg["dtype"])
  dims = (tuple(range(x.ndim - contract, x.ndim)), tuple(range(contract)))
  return jax.lax.dot_general(x, kernel, (dims, ((), ())))


def attention_mask(q_segments, k_segments, causal: bool, q_prefix=None) -> F.AttentionMask:
  """The mask for unpacked rows: slot index is position."""
  return F.attention_mask(
    q_segments,
    k_segments,
    F.row_positions(q_segments),
    F.row_positions(k_segments),
    causal,
    q_prefix,
  )


def attention(p: dict, prefix: str, x_q, x_kv, q_positions, kv_positions, mask, cfg: dict):
  """Multi-head (or grouped-query) attention with per-head RMSNorm on Q, K, V (each if
  configured) and the output, RoPE on Q and K."""
  projected = {"query": x_q, "key": x_kv, "value": x_kv}
  for name, x in projected.items():
    projected[name] = _dense(x, p[f"{prefix}.{name}.kernel"], 1, cfg)
    if cfg[f"{name}_norm"]:
      projected[name] = rms_norm(projected[name], p[f"{prefix}.{name}_norm.scale"], cfg)
  q, k, v = projected["query"], projected["key"], projected["value"]
  q = F.apply_rope(q, q_positions, cfg["rope_base"])
  k = F.apply_rope(k, kv_positions, cfg["rope_base"])
  out, _ = F.einsum_attention(q, k, v, mask)
  if cfg["attention_output_norm"]:
    out = rms_norm(out, p[f"{prefix}.output_norm_layer.scale"], cfg)
  return _dense(out, p[f"{prefix}.out.kernel"], 2, cfg)


def layer(p: dict, prefix: str, x, positions, self_mask, cfg: dict, cross=None):
  """Pre-norm layer: self-attention, optional cross-attention (encoded, positions, mask), SwiGLU."""
  h = rms_norm(x, p[f"{prefix}.pre_self_attention_norm.scale"], cfg)
  x = x + attention(p, f"{prefix}.self_attention", h, h, positions, positions, self_mask, cfg)
  if cross is not None:
    encoded, encoder_positions, cross_mask = cross
    h = rms_norm(x, p[f"{prefix}.pre_cross_attention_norm.scale"], cfg)
    x = x + attention(
      p, f"{prefix}.cross_attention", h, encoded, positions, encoder_positions, cross_mask, cfg
    )
  h = rms_norm(x, p[f"{prefix}.pre_mlp_norm.scale"], cfg)
  gate = _dense(h, p[f"{prefix}.mlp.wi_gate.kernel"], 1, cfg)
  up = _dense(h, p[f"{prefix}.mlp.wi_up.kernel"], 1, cfg)
  return x + _dense(jax.nn.silu(gate) * up, p[f"{prefix}.mlp.wo.kernel"], 1, cfg)


def _embed(p, tokens, cfg):
  return jnp.take(p["embed.embedding"], tokens, axis=0).astype(cfg["dtype"])


def _logits(p, x, cfg):
  x = rms_norm(x, p["decoder_norm.scale"], cfg)
  tied = cfg["tied_embeddings"]
  table = p["embed.embedding" if tied else "embed.output_embedding"].astype(cfg["dtype"])
  logits = jnp.einsum("bld,vd->blv", x, table, preferred_element_type=jnp.float32)
  return logits * cfg["d_model"] ** -0.5 if tied and cfg["scale_tied_logits"] else logits


def decllm_logits(p: dict, cfg: dict, tokens, positions=None, segment_ids=None, prefix=None):
  """DecLLM logits [b, l, vocab]; `prefix` (1 = bidirectional) for DecLLM + BiAttn."""
  positions = F.row_positions(tokens) if positions is None else positions
  # Every token is real unless segment ids say otherwise: the BOS is id 0 too.
  segment_ids = jnp.ones_like(tokens) if segment_ids is None else segment_ids
  mask = attention_mask(segment_ids, segment_ids, True, prefix)
  x = _embed(p, tokens, cfg)
  for i in range(cfg["num_layers"]):
    x = layer(p, f"decoder.layers.{i}", x, positions, mask, cfg)
  return _logits(p, x, cfg)


def redllm_encode(p: dict, cfg: dict, tokens, positions=None, segment_ids=None):
  positions = F.row_positions(tokens) if positions is None else positions
  segment_ids = (tokens > 0).astype(jnp.int32) if segment_ids is None else segment_ids
  mask = attention_mask(segment_ids, segment_ids, False)
  x = _embed(p, tokens, cfg)
  for i in range(cfg["num_encoder_layers"]):
    x = layer(p, f"encoder.layers.{i}", x, positions, mask, cfg)
  return rms_norm(x, p["encoder_norm.scale"], cfg)


def redllm_decode(
  p: dict,
  cfg: dict,
  encoded,
  encoder_positions,
  encoder_segment_ids,
  tokens,
  positions=None,
  segment_ids=None,
):
  """Decoder logits; decoder RoPE positions continue after each example's true encoder length."""
  positions = F.row_positions(tokens) if positions is None else positions
  segment_ids = jnp.ones_like(tokens) if segment_ids is None else segment_ids
  cross_mask = attention_mask(segment_ids, encoder_segment_ids, False)
  positions = positions + cross_mask.visible_keys()
  self_mask = attention_mask(segment_ids, segment_ids, True)
  x = _embed(p, tokens, cfg)
  for i in range(cfg["num_decoder_layers"]):
    x = layer(
      p,
      f"decoder.layers.{i}",
      x,
      positions,
      self_mask,
      cfg,
      cross=(encoded, encoder_positions, cross_mask),
    )
  return _logits(p, x, cfg)


def redllm_logits(
  p: dict,
  cfg: dict,
  encoder_tokens,
  decoder_tokens,
  encoder_positions=None,
  encoder_segment_ids=None,
  decoder_positions=None,
  decoder_segment_ids=None,
):
  encoder_positions = (
    F.row_positions(encoder_tokens) if encoder_positions is None else encoder_positions
  )
  if encoder_segment_ids is None:
    encoder_segment_ids = (encoder_tokens > 0).astype(jnp.int32)
  encoded = redllm_encode(p, cfg, encoder_tokens, encoder_positions, encoder_segment_ids)
  return redllm_decode(
    p,
    cfg,
    encoded,
    encoder_positions,
    encoder_segment_ids,
    decoder_tokens,
    decoder_positions,
    decoder_segment_ids,
  )


# ----------------------------------------------------------------------------- loading


class StandaloneModel:
  """An exported model: `architecture`, `config`, `params` (name -> jax array), `tokenizer`."""

  def __init__(self, export_dir: str):
    meta = read_config(export_dir)
    weights_path = os.path.join(export_dir, WEIGHTS_FILE)
    self.meta = meta
    self.architecture = meta["architecture"]
    self.bidirectional_inputs = bool(meta.get("inputs_bidirectional_attention", False))
    self.config = with_optional_fields(meta["config"])
    self.config["dtype"] = jnp.dtype(self.config["dtype"])
    tensors = safetensors.numpy.load_file(weights_path)
    check_tensors(self.architecture, self.config, {k: v.shape for k, v in tensors.items()})
    self.params = {k: jnp.asarray(v) for k, v in tensors.items()}
    vocab = os.path.join(export_dir, VOCAB_FILE)
    self.tokenizer = None
    if os.path.exists(vocab):
      import sentencepiece  # Only needed for text in/out.

      self.tokenizer = sentencepiece.SentencePieceProcessor(model_file=vocab)
    self._jitted = {}

  def _jit(self, name, fn):
    if name not in self._jitted:
      self._jitted[name] = jax.jit(fn)
    return self._jitted[name]

  def greedy_decode(self, prompts: list, max_new_tokens: int, eos_id: int = EOS_ID):
    """Greedy continuations of token-id prompts, as the training stack's `predict_batch`.

    Returns (tokens [b, max_new_tokens] with pad 0 after EOS, lengths [b] including EOS).
    DecLLM reads [BOS=0, prompt, generated...] (the prompt bidirectional with BiAttn);
    RedLLM encodes the prompt and decodes from start token 0.
    """
    p, cfg = self.params, self.config
    lengths = np.array([len(x) for x in prompts], np.int32)
    if lengths.min() < 1:
      raise ValueError("empty prompt")
    batch, width = len(prompts), int(lengths.max())
    out = np.zeros((batch, max_new_tokens), np.int32)
    done = np.zeros(batch, bool)
    rows = np.arange(batch)
    if self.architecture == "decllm":
      total = 1 + width + max_new_tokens
      stream = np.zeros((batch, total), np.int32)
      for b, x in enumerate(prompts):
        stream[b, 1 : 1 + len(x)] = x
      prefix = (np.arange(total)[None] <= lengths[:, None]).astype(np.int32)
      fn = self._jit(
        "dec",
        lambda t, s, pre: decllm_logits(
          p, cfg, t, F.row_positions(t), s, pre if self.bidirectional_inputs else None
        ),
      )
      for t in range(max_new_tokens):
        filled = 1 + lengths + t
        segments = (np.arange(total)[None] < filled[:, None]).astype(np.int32)
        logits = np.asarray(fn(stream, segments, prefix))
        new = np.argmax(logits[rows, filled - 1], axis=-1).astype(np.int32)
        new = np.where(done, PAD_ID, new)
        out[:, t] = new
        stream[rows, filled] = new
        done |= new == eos_id
        if done.all():
          break
    else:
      encoder_tokens = np.zeros((batch, width), np.int32)
      for b, x in enumerate(prompts):
        encoder_tokens[b, : len(x)] = x
      encoder_segments = (np.arange(width)[None] < lengths[:, None]).astype(np.int32)
      encoded = self._jit("enc", lambda t, s: redllm_encode(p, cfg, t, F.row_positions(t), s))(
        encoder_tokens, encoder_segments
      )
      decoder = np.zeros((batch, max_new_tokens), np.int32)  # start token 0, then generated
      fn = self._jit("dec", lambda e, es, t: redllm_decode(p, cfg, e, F.row_positions(es), es, t))
      for t in range(max_new_tokens):
        logits = np.asarray(fn(encoded, encoder_segments, decoder))
        new = np.where(done, PAD_ID, np.argmax(logits[:, t], axis=-1)).astype(np.int32)
        out[:, t] = new
        if t + 1 < max_new_tokens:
          decoder[:, t + 1] = new
        done |= new == eos_id
        if done.all():
          break
    is_eos = out == eos_id
    out_lengths = np.where(is_eos.any(1), is_eos.argmax(1) + 1, max_new_tokens).astype(np.int32)
    return out, out_lengths

  def generate(self, texts: list, max_new_tokens: int = 32, add_eos: bool = True) -> list:
    """Greedy text continuations; `add_eos` ends each prompt with EOS as FLAN inputs do."""
    if self.tokenizer is None:
      raise ExportError("this export has no spm.model: pass token ids to greedy_decode")
    prompts = [self.tokenizer.encode(t) + ([EOS_ID] if add_eos else []) for t in texts]
    tokens, lengths = self.greedy_decode(prompts, max_new_tokens)
    return [
      self.tokenizer.decode([int(i) for i in row[:n] if i != EOS_ID])
      for row, n in zip(tokens, lengths)
    ]


def load(export_dir: str) -> StandaloneModel:
  return StandaloneModel(export_dir)


def main(argv: Optional[list] = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("export_dir")
  parser.add_argument("prompts", nargs="+")
  parser.add_argument("--max_new_tokens", type=int, default=32)
  parser.add_argument("--no_eos", action="store_true", help="do not end prompts with EOS")
  args = parser.parse_args(argv)
  try:
    model = load(args.export_dir)
    for prompt, text in zip(
      args.prompts, model.generate(args.prompts, args.max_new_tokens, not args.no_eos)
    ):
      print(json.dumps({"inputs": prompt, "output": text}))
  except ExportError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  main()
