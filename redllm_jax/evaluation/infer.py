r"""Batched decoding from a JSON-lines file of prompts to a JSON-lines file of outputs.

  python -m redllm_jax.evaluation.infer --gin_file=models/redllm.gin \
      --gin_file=models/sizes/tiny.gin --gin_file=data/demo_finetune_red.gin \
      --gin_file=runs/infer.gin --gin.CHECKPOINT_PATH=\"/tmp/red/checkpoints/2000\" \
      --gin.INFER_INPUT=\"prompts.jsonl\" --gin.INFER_OUTPUT=\"outputs.jsonl\" \
      [--gin.DecodingConfig.temperature=0.7 --gin.DecodingConfig.top_p=0.9]

Prompts are tokenized with the checkpoint's own vocabulary (`vocabulary.vocabulary_path`:
the SentencePiece file its training run recorded), so no data gin is needed. A
vocabulary bound to `infer.infer.vocabulary` is checked against that record (a
different file is a one-line error), and names the vocabulary of a checkpoint
saved before checkpoints recorded theirs.

Input lines are {"inputs": "..."} (other fields are copied through; an empty or
blank prompt is an error naming its line, as invalid UTF-8 or JSON is); output lines
add "output" (decoded text up to EOS), "output_tokens" and "prompt_tokens" (and
"truncated": true when the prompt was cut). Decoding runs through the cached
decoder (`model.predict_batch`): greedy by default, sampling through the gin-bound
`DecodingConfig`. Prompts longer than `InferSettings.max_prompt_length` are
truncated from the left with a warning (`too_long="truncate"`) or stop the run with
a one-line error (`too_long="reject"`).

Throughput is reported split into prefill (prompt tokens/s, the encoder or the
DecLLM prompt pass plus the cache set-up) and decode (generated tokens/s and ms
per decode step), measured after compiling each batch shape ahead of time.
"""

import dataclasses
import json
import time
from typing import Any, Callable, Optional, Sequence

from absl import logging
import gin
import jax
import jax.numpy as jnp
import numpy as np

import seqio
import tensorflow as tf

from redllm_jax.functional import EOS_ID
from redllm_jax import checkpoints, errors, gin_utils
from redllm_jax.data import vocabulary as vocabulary_lib
from redllm_jax.decoding import DecodingConfig
from redllm_jax.evaluation import windows
from redllm_jax.models import BaseModel, pad_rows

# Below this a timing is clock noise: a rate from it would be meaningless.
_MEASURABLE_SECONDS = 1e-4


@gin.configurable
@dataclasses.dataclass(frozen=True)
class InferSettings:
  batch_size: int = 8
  max_prompt_length: int = 512
  too_long: str = "truncate"  # or "reject"
  add_eos: bool = True  # End prompts with EOS, as FLAN inputs are (False for plain-text LMs).
  seed: int = 0

  def __post_init__(self):
    if self.too_long not in ("truncate", "reject"):
      raise ValueError(f"too_long={self.too_long!r}: choose 'truncate' or 'reject'")


class PromptError(errors.ConfigError):
  """A prompt file problem (or a rejected prompt), reported in one line."""


def read_prompts(path: str) -> list[dict]:
  """JSON lines with a string `inputs`; a bad line is an error naming its line number."""
  if not tf.io.gfile.exists(path):
    raise PromptError(f"prompt file not found: {path}")
  records = []
  with tf.io.gfile.GFile(path, "rb") as f:
    for number, raw in enumerate(f, 1):
      if not raw.strip():
        continue
      try:
        record = json.loads(raw.decode("utf-8"))
      except UnicodeDecodeError:
        raise PromptError(f"{path}:{number}: not valid UTF-8") from None
      except json.JSONDecodeError:
        raise PromptError(f"{path}:{number}: not valid JSON") from None
      if not isinstance(record, dict) or not isinstance(record.get("inputs"), str):
        raise PromptError(f"{path}:{number}: needs a string field 'inputs'")
      if not record["inputs"].strip():
        raise PromptError(f"{path}:{number}: empty prompt (an 'inputs' of no text)")
      records.append(record)
  if not records:
    raise PromptError(f"no prompts in {path}")
  return records


def encode_prompts(
  texts: Sequence[str], encode: Callable[[str], list[int]], settings: InferSettings
) -> tuple[list[list[int]], list[bool]]:
  """Token ids per prompt (+EOS) and whether each was truncated (keeping its end)."""
  ids, truncated = [], []
  for i, text in enumerate(texts):
    row = list(encode(text)) + ([EOS_ID] if settings.add_eos else [])
    if not row:
      row = [EOS_ID]
    cut = len(row) > settings.max_prompt_length
    if cut and settings.too_long == "reject":
      raise PromptError(
        f"prompt {i} has {len(row)} tokens > max_prompt_length="
        f"{settings.max_prompt_length} (set InferSettings.too_long='truncate')"
      )
    if cut:
      logging.warning(
        "prompt %d: %d tokens truncated to the last %d", i, len(row), settings.max_prompt_length
      )
      row = row[-settings.max_prompt_length :]
    ids.append(row)
    truncated.append(cut)
  return ids, truncated


@dataclasses.dataclass
class Timing:
  prompt_tokens: int = 0
  generated_tokens: int = 0
  decode_steps: int = 0
  prefill_seconds: float = 0.0
  total_seconds: float = 0.0
  compile_seconds: float = 0.0

  def report(self) -> dict[str, float]:
    decode = self.total_seconds - self.prefill_seconds
    return {
      "prompt_tokens": self.prompt_tokens,
      "generated_tokens": self.generated_tokens,
      "prefill_tokens_per_second": _rate(self.prompt_tokens, self.prefill_seconds),
      "decode_tokens_per_second": _rate(self.generated_tokens, decode),
      "decode_ms_per_step": 1e3 / _rate(max(self.decode_steps, 1), decode),
      "total_tokens_per_second": _rate(
        self.prompt_tokens + self.generated_tokens, self.total_seconds
      ),
      "prefill_seconds": self.prefill_seconds,
      "total_seconds": self.total_seconds,
      "compile_seconds": self.compile_seconds,
    }


def _rate(count: int, seconds: float) -> float:
  """Per second; NaN when the time is too short to measure (never a huge number)."""
  return count / seconds if seconds >= _MEASURABLE_SECONDS else float("nan")


def generate(
  model, params: Any, prompts: Sequence[Sequence[int]], cfg: DecodingConfig, settings: InferSettings
) -> tuple[list[list[int]], Timing]:
  """Generated ids per prompt (up to and excluding EOS) and the timing of the run.

  Prompts go in batches of `settings.batch_size` (the last one padded), right-padded
  to a power-of-two width, so few shapes compile. Each shape is compiled ahead of
  time; prefill is timed with a separate compiled call of `model.prefill`.
  """
  predict = jax.jit(model.predict_batch, static_argnames=("cfg", "return_logits"))
  prefill = jax.jit(model.prefill, static_argnums=(3,))
  decoding_params = model.decoding_params(params, cfg)
  compiled: dict[tuple, Any] = {}
  timing = Timing()
  outputs: list[list[int]] = []
  rng = jax.random.key(settings.seed)
  b = settings.batch_size
  for start in range(0, len(prompts), b):
    chunk = list(prompts[start : start + b])
    width = windows.bucket_size(max(len(p) for p in chunk))
    tokens, lengths = pad_rows(chunk + [[EOS_ID]] * (b - len(chunk)), width)
    tokens, lengths = jnp.asarray(tokens), jnp.asarray(lengths)
    rng, step_rng = jax.random.split(rng)
    if width not in compiled:
      t0 = time.perf_counter()
      compiled[width] = (
        predict.lower(decoding_params, tokens, lengths, step_rng, cfg).compile(),
        prefill.lower(decoding_params, tokens, lengths, cfg.max_new_tokens).compile(),
      )
      # One warm-up run each: first executions pay one-off allocation costs.
      jax.block_until_ready(compiled[width][1](decoding_params, tokens, lengths))
      jax.block_until_ready(compiled[width][0](decoding_params, tokens, lengths, step_rng))
      timing.compile_seconds += time.perf_counter() - t0
    run_predict, run_prefill = compiled[width]
    t0 = time.perf_counter()
    jax.block_until_ready(run_prefill(decoding_params, tokens, lengths))
    timing.prefill_seconds += time.perf_counter() - t0
    t0 = time.perf_counter()
    out = jax.block_until_ready(run_predict(decoding_params, tokens, lengths, step_rng))
    timing.total_seconds += time.perf_counter() - t0
    out_tokens, out_lengths = np.asarray(out.tokens), np.asarray(out.lengths)
    timing.prompt_tokens += int(sum(len(p) for p in chunk))
    timing.decode_steps += int(out_lengths[: len(chunk)].max()) - 1 if chunk else 0
    for row, n in zip(out_tokens[: len(chunk)], out_lengths[: len(chunk)]):
      ids = [int(t) for t in row[:n]]
      timing.generated_tokens += len(ids)
      outputs.append(ids[:-1] if ids and ids[-1] == cfg.eos_id else ids)
  return outputs, timing


def write_outputs(
  records: Sequence[dict],
  prompts: Sequence[Sequence[int]],
  outputs: Sequence[Sequence[int]],
  truncated: Sequence[bool],
  decode,
  output_path: str,
) -> None:
  with tf.io.gfile.GFile(output_path, "w") as f:
    for record, prompt, out, cut in zip(records, prompts, outputs, truncated):
      line = {
        **record,
        "output": decode(out),
        "output_tokens": len(out),
        "prompt_tokens": len(prompt),
      }
      if cut:
        line["truncated"] = True
      f.write(json.dumps(line) + "\n")


@gin.configurable
def infer(
  model: Optional[BaseModel] = None,
  checkpoint_path: str = gin.REQUIRED,
  input_path: str = gin.REQUIRED,
  output_path: str = gin.REQUIRED,
  decoding: DecodingConfig = gin.REQUIRED,
  settings: InferSettings = gin.REQUIRED,
  vocabulary: Optional[seqio.SentencePieceVocabulary] = None,
) -> dict[str, float]:
  """Decodes every prompt of `input_path` into `output_path`; returns the timing report.

  The model is the one the checkpoint describes; a `model` given (a model gin's) must
  match it (else one line).
  """
  # Prompts are read and checked before the parameters are loaded: bad input fails fast.
  records = read_prompts(input_path)
  vocabulary = vocabulary_lib.checkpoint_vocabulary(checkpoint_path, vocabulary)
  prompts, truncated = encode_prompts([r["inputs"] for r in records], vocabulary.encode, settings)
  model = checkpoints.load_model(checkpoint_path, model)
  params = checkpoints.load_params(checkpoint_path, model)
  outputs, timing = generate(model, params, prompts, decoding, settings)
  write_outputs(records, prompts, outputs, truncated, vocabulary.decode, output_path)
  report = timing.report()
  mode = "greedy" if decoding.temperature == 0 else f"sampling T={decoding.temperature}"
  print(f"{model.name}: {len(records)} prompts, {mode}, {sum(truncated)} truncated")
  print(
    f"prefill {report['prefill_tokens_per_second']:.0f} prompt tok/s | decode "
    f"{report['decode_tokens_per_second']:.0f} tok/s ({report['decode_ms_per_step']:.2f} "
    f"ms/step) | compile {report['compile_seconds']:.1f} s"
  )
  return report


def main() -> None:
  try:
    infer()
  except ValueError as e:  # InferSettings / DecodingConfig validation
    raise errors.ConfigError(errors.first_line(e)) from None


if __name__ == "__main__":
  gin_utils.run(__spec__.name)
