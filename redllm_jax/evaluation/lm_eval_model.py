r"""DecLLM, DecLLM + BiAttn and RedLLM as an lm-evaluation-harness model, `redllm_jax`.

  python -m redllm_jax.evaluation.lm_eval_model --model redllm_jax \
      --model_args checkpoint=runs/demo/redllm[,vocab=spm.model,add_eos=True,max_length=256] \
      --include_path tasks/harness --tasks demo_qa_mc --num_fewshot 2 --log_samples \
      --output_path out/

takes exactly `lm_eval`'s flags. lm-eval 0.4.13 finds models only in its own
registry and scans no entry point, so this module registers `redllm_jax` when
imported and then runs lm-eval's own CLI. From Python: `import
redllm_jax.evaluation.lm_eval_model` once, then `lm_eval.simple_evaluate(model="redllm_jax", ...)`.

Model arguments: `checkpoint=` (MODEL_DIR, MODEL_DIR/checkpoints or a step folder:
the checkpoint's `meta` builds the model; `gin_file=` a model gin to build it
instead, e.g. with another attention implementation) or `export_dir=` (an export,
`export.load_export`). Both score through the same model code. The vocabulary is
the checkpoint's own (`vocabulary.vocabulary_path`: SentencePiece, or an imported
checkpoint's tokenizer.json) or the export's spm.model;
`vocab=` overrides it (checked by sha256 against the checkpoint's record or the
export's spm.model). Unknown model args are an error. `add_eos=True` ends contexts and continuations with EOS, the
FLAN format finetuned models read (default False: plain text). `max_length`
(default 2048) bounds what one row reads; `max_gen_toks` (256) the generation
default; `batch_size` (16) rows per batch.

Requests, each through the project's scoring (`model.prefix_lm_batch` +
`model.score_batch`) or cached decoding (`model.predict_batch`):
- `loglikelihood(context, continuation)`: context and continuation tokenized
  separately (so both architectures read the same tokens). RedLLM: the context in
  the encoder, the continuation scored on the decoder. DecLLM: one stream
  [BOS, context, continuation] with the loss on the continuation; BiAttn reads
  [BOS, context] bidirectionally. A context longer than the room that `max_length`
  leaves is cut from the left.
- `loglikelihood_rolling(text)`: every token scored exactly once, in each
  architecture's pretraining layout (`rolling_windows`). DecLLM: consecutive chunks
  of `max_length` tokens, each read as [BOS, chunk] as pretraining reads them.
  RedLLM: chunks of `max_length / 2` tokens on the decoder, each with the previous
  `max_length / 2` tokens in the encoder, as pretraining splits a window; the
  document's first chunk has no earlier text, so its encoder is empty (the decoder
  predicts it from BOS alone, at decoder offset 0).
- `generate_until(context, gen_kwargs)`: greedy cached decoding of `max_gen_toks`
  tokens, cut at EOS and then at the first stop string of `until`.
Requests are sorted by length and padded to power-of-two widths (few compiles).
"""

import functools
import sys
from typing import Any, Iterable, Optional, Sequence

from absl import logging
import jax
import numpy as np
import sentencepiece as spm
from tqdm import tqdm

import lm_eval.models  # noqa: F401  # lm-eval's own models first: its registry loads them only when empty
from lm_eval.api.model import LM
from lm_eval.api.registry import model_registry

from redllm_jax import checkpoints, errors, gin_utils, models
from redllm_jax.data import vocabulary as vocabulary_lib
from redllm_jax.decoding import DecodingConfig
from redllm_jax.evaluation import export, windows
from redllm_jax.functional import EOS_ID
from redllm_jax.models import BaseModel, pad_rows

NAME = "redllm_jax"


def load(
  checkpoint: Optional[str] = None,
  export_dir: Optional[str] = None,
  gin_file: Optional[str] = None,
  vocab: Optional[str] = None,
) -> tuple[BaseModel, Any, str]:
  """(model, parameters, vocabulary path) of a checkpoint or an export."""
  if (checkpoint is None) == (export_dir is None):
    raise errors.ConfigError(
      "redllm_jax needs exactly one of --model_args checkpoint=PATH or export_dir=PATH"
    )
  given = vocab is not None
  if given:  # before loading anything: a bad file is a quick one-line error
    _check_vocab_file(vocab)
  if export_dir is not None:
    model, params, exported = export.load_export(export_dir)
    if (
      vocab is not None
      and exported is not None
      and vocabulary_lib.file_sha256(vocab) != vocabulary_lib.file_sha256(exported)
    ):
      raise errors.ConfigError(
        f"vocab={vocab} is not the export's vocabulary {exported} (sha256 differs)"
      )
    vocab = vocab or exported
    if vocab is None:
      raise errors.ConfigError(f"{export_dir} holds no spm.model: pass vocab=PATH")
  elif gin_file is not None:
    gin_utils.parse_gin([gin_file], [], finalize=False)
    model = models.from_gin()
    params = checkpoints.load_params(checkpoint, model)
  else:
    model, params = checkpoints.load_model_and_params(checkpoint)
  if checkpoint is not None:
    vocab = vocabulary_lib.resolve_vocabulary(checkpoint, vocab, "vocab=")
  if not given:
    _check_vocab_file(vocab)
  return model, params, vocab


def _check_vocab_file(path: str) -> None:
  """`vocabulary_lib.check_vocabulary_file` as a one-line ConfigError."""
  try:
    vocabulary_lib.check_vocabulary_file(path)
  except Exception as e:  # FileNotFoundError, ValueError; tf.io.gfile's errors (a directory)
    raise errors.ConfigError(f"vocab: {errors.first_line(e)}") from None


def rolling_windows(
  tokens: Sequence[int], context_length: int, chunk_length: int
) -> list[tuple[list[int], list[int]]]:
  """(context, chunk) pairs: consecutive chunks of `chunk_length` tokens covering
  `tokens` once, each after the (up to) `context_length` tokens before it."""
  return [
    (
      list(tokens[max(0, start - context_length) : start]),
      list(tokens[start : start + chunk_length]),
    )
    for start in range(0, len(tokens), chunk_length)
  ]


def fit(prompt: list[int], answer: list[int], max_length: int) -> tuple[list[int], list[int]]:
  """(prompt, answer) within `max_length` tokens together: the answer keeps its first
  `max_length` tokens, the prompt its last ones in the room left."""
  answer = answer[:max_length]
  room = max_length - len(answer)
  return (prompt[len(prompt) - room :] if room < len(prompt) else prompt), answer


def cut_at_stop(text: str, until: Iterable[str]) -> str:
  """`text` up to the earliest occurrence of any stop string."""
  for stop in until:
    if stop:
      text = text.split(stop, 1)[0]
  return text


def _shape_key(prompt: Sequence[int], answer: Sequence[int]) -> tuple[int, int, int]:
  """Longest first, grouped by padded widths: each batch shape compiles once."""
  return (
    -windows.bucket_size(len(prompt)),
    -windows.bucket_size(len(answer)),
    -len(prompt) - len(answer),
  )


def _batches(order: Sequence[int], size: int) -> Iterable[list[int]]:
  for start in range(0, len(order), size):
    yield list(order[start : start + size])


class Scorer:
  """Log-likelihoods and greedy continuations of token ids, batched, for one model."""

  def __init__(self, model: BaseModel, params: Any, batch_size: int):
    self.model, self.params, self.batch_size = model, params, batch_size
    self._score = jax.jit(functools.partial(model.score_batch, return_greedy=True))
    self._predict = jax.jit(model.predict_batch, static_argnames=("cfg", "return_logits"))
    self._decoding_params = None  # converted on first use, once per model

  def score(
    self, pairs: Sequence[tuple[list[int], list[int]]], progress: bool = True
  ) -> list[tuple[float, bool]]:
    """(log-likelihood, is_greedy) of each answer after its prompt, in the given order."""
    results: list[Any] = [None] * len(pairs)
    order = sorted(range(len(pairs)), key=lambda i: _shape_key(*pairs[i]))
    bar = tqdm(total=len(pairs), desc="redllm_jax scoring", disable=not progress)
    for rows in _batches(order, self.batch_size):
      prompts, answers = [pairs[i][0] for i in rows], [pairs[i][1] for i in rows]
      batch = self.model.prefix_lm_batch(prompts, answers, self.batch_size, windows.bucket_size)
      scores, greedy = jax.device_get(self._score(self.params, batch))
      for j, i in enumerate(rows):
        results[i] = (float(scores[j]), bool(greedy[j]))
      bar.update(len(rows))
    bar.close()
    return results

  def generate(
    self, prompts: Sequence[list[int]], max_new_tokens: int, progress: bool = True
  ) -> list[list[int]]:
    """Greedy continuations (cached decoding), each cut before its EOS."""
    cfg = DecodingConfig(max_new_tokens=max_new_tokens)
    if self._decoding_params is None:
      self._decoding_params = self.model.decoding_params(self.params, cfg)
    out: list[Any] = [None] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    for rows in tqdm(
      list(_batches(order, self.batch_size)), desc="redllm_jax generating", disable=not progress
    ):
      chunk = [prompts[i] for i in rows]
      filler = [[EOS_ID]] * (self.batch_size - len(chunk))  # whole batches: one shape
      tokens, lengths = pad_rows(chunk + filler, windows.bucket_size(max(map(len, chunk))))
      generated = np.asarray(
        self._predict(self._decoding_params, tokens, lengths, jax.random.key(0), cfg).tokens
      )
      for j, i in enumerate(rows):
        ids = [int(t) for t in generated[j]]
        out[i] = ids[: ids.index(EOS_ID)] if EOS_ID in ids else ids
    return out


class TextCodec:
  """Text <-> ids with a SentencePiece model or (an imported checkpoint's) tokenizer.json."""

  def __init__(self, path: str):
    if path.endswith(".json"):
      vocab = vocabulary_lib.from_file(path)
      self.size = vocab.vocab_size
      self._encode, self._decode, self._first = vocab.encode, vocab.decode, 0
    else:
      try:
        sp = spm.SentencePieceProcessor(model_file=path)
      except (OSError, RuntimeError) as e:
        raise errors.ConfigError(
          f"cannot open the SentencePiece model {path}: {errors.first_line(e)}"
        ) from None
      # SentencePiece's id 0 is pad; a tokenizer.json's id 0 may be a real token.
      self.size, self._encode, self._decode, self._first = (
        sp.get_piece_size(),
        sp.encode,
        sp.decode,
        1,
      )

  def encode(self, text: str) -> list[int]:
    return list(self._encode(text))

  def decode(self, ids: Sequence[int]) -> str:
    # A model's vocabulary may be padded past the tokenizer's: ids without a piece
    # (and SentencePiece's pad) decode to nothing.
    return self._decode([int(t) for t in ids if self._first <= t < self.size])


MODEL_ARGS = (
  "checkpoint",
  "export_dir",
  "gin_file",
  "vocab",
  "add_eos",
  "max_length",
  "max_gen_toks",
  "batch_size",
)
# What lm-eval itself adds to the model args: `simple_evaluate`'s additional_config
# (batch_size, max_batch_size, device) and the CLI's --trust_remote_code.
LM_EVAL_SETTINGS = ("max_batch_size", "device", "trust_remote_code")


class RedLLMJax(LM):
  """lm-eval's `LM` over a checkpoint or export of DecLLM, DecLLM + BiAttn or RedLLM."""

  def __init__(
    self,
    checkpoint: Optional[str] = None,
    export_dir: Optional[str] = None,
    gin_file: Optional[str] = None,
    vocab: Optional[str] = None,
    add_eos: bool = False,
    max_length: int = 2048,
    max_gen_toks: int = 256,
    batch_size: int | str = 16,
    **lm_eval_settings: Any,
  ):
    super().__init__()
    # LM_EVAL_SETTINGS are unused (jax places the arrays itself); anything else is a typo.
    unknown = sorted(set(lm_eval_settings) - set(LM_EVAL_SETTINGS))
    if unknown:
      raise errors.ConfigError(
        f"redllm_jax: unknown model args {', '.join(unknown)}; valid: "
        f"{', '.join(MODEL_ARGS)} (and lm-eval's {', '.join(LM_EVAL_SETTINGS)})"
      )
    model, params, vocab_path = load(checkpoint, export_dir, gin_file, vocab)
    self.vocab_path = vocab_path
    self.codec = TextCodec(vocab_path)
    if self.codec.size > model.config.vocab_size:
      raise errors.ConfigError(
        f"vocabulary {vocab_path} has {self.codec.size} pieces, more than the "
        f"model's {model.config.vocab_size}"
      )
    self.model, self.add_eos = model, bool(add_eos)
    self.max_length, self.max_gen_toks = int(max_length), int(max_gen_toks)
    rows = 16 if str(batch_size).startswith("auto") else int(batch_size)
    self.scorer = Scorer(model, params, rows)

  def _ids(self, text: str) -> list[int]:
    return self.codec.encode(text) + ([EOS_ID] if self.add_eos else [])

  def _text(self, ids: Sequence[int]) -> str:
    return self.codec.decode(ids)

  def _pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
    return fit(self._ids(context), self._ids(continuation), self.max_length)

  def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
    pairs = [self._pair(*req.args) for req in requests]
    return self.scorer.score(pairs, progress=not disable_tqdm)

  def rolling_layout(self) -> tuple[int, int]:
    """(context, chunk) lengths of `loglikelihood_rolling`'s windows, per architecture."""
    if self.model.architecture == models.EncoderDecoderModel.architecture:
      half = max(1, self.max_length // 2)
      return half, half
    return 0, self.max_length

  def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
    context, chunk = self.rolling_layout()
    pairs, owner = [], []
    for index, req in enumerate(requests):
      for pair in rolling_windows(self.codec.encode(req.args[0]), context, chunk):
        pairs.append(pair)
        owner.append(index)
    totals = np.zeros(len(requests))
    for i, (score, _) in zip(owner, self.scorer.score(pairs, progress=not disable_tqdm)):
      totals[i] += score
    return [float(t) for t in totals]

  def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
    by_length: dict[int, list[int]] = {}
    for i, req in enumerate(requests):
      kwargs = req.args[1] or {}
      if kwargs.get("do_sample") or kwargs.get("temperature", 0.0):
        logging.warning("redllm_jax decodes greedily; ignoring %s", kwargs)
      by_length.setdefault(int(kwargs.get("max_gen_toks", self.max_gen_toks)), []).append(i)
    outputs: list[Any] = [None] * len(requests)
    for max_new_tokens, rows in by_length.items():
      prompts = [self._ids(requests[i].args[0])[-self.max_length :] for i in rows]
      generated = self.scorer.generate(prompts, max_new_tokens, progress=not disable_tqdm)
      for i, ids in zip(rows, generated):
        until = (requests[i].args[1] or {}).get("until") or []
        until = [until] if isinstance(until, str) else until
        outputs[i] = cut_at_stop(self._text(ids), until)
    return outputs


# A lazy "module:class" placeholder: `python -m` runs a `__main__` copy of this file, and
# both copies then register the one class of the imported module.
if NAME not in model_registry:
  model_registry.register(NAME, target="redllm_jax.evaluation.lm_eval_model:RedLLMJax")


def main(argv: Optional[Sequence[str]] = None) -> None:
  """lm-eval's command line, with `redllm_jax` registered; a ConfigError is one line."""
  from lm_eval.__main__ import cli_evaluate  # pylint: disable=import-outside-toplevel

  if argv is not None:
    sys.argv = [sys.argv[0], *argv]
  try:
    cli_evaluate()
  except errors.ConfigError as e:
    print(f"error: {e.message}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  main()
