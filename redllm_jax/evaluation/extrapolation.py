r"""Length extrapolation: perplexity at 1x..8x the training length, overall and by position.

  python -m redllm_jax.evaluation.extrapolation \
      --checkpoint=decllm=models/decllm_tiny.gin@/tmp/dec/checkpoints/2000 \
      --checkpoint=redllm=models/redllm_tiny.gin@/tmp/red/checkpoints/2000 \
      --training_length=256 --factors=1,2,4,8 --task=demo_redpajama --output_dir=/tmp/extrap

Text: the task's validation documents, longest first, tokenized with the task's
vocabulary and concatenated (EOS between documents) into windows of the longest
evaluated length. Every length L evaluates the first L tokens of the same windows.
- DecLLM reads the whole window [BOS, w_0 .. w_{L-2}] and predicts w_0 .. w_{L-1}.
- RedLLM splits it in the middle as in pretraining: the encoder reads w_0 .. w_{L/2-1},
  the decoder predicts w_{L/2} .. w_{L-1}, its RoPE positions continuing at L/2.
`ppl` is over the second half (the tokens both architectures predict, so the curves
compare like with like); DecLLM's `ppl_all` covers the whole window. PPL by
position bucket uses absolute positions in the window.

Outputs in output_dir: extrapolation.csv (arch, length, ppl, ...),
extrapolation_buckets.csv (arch, length, bucket start/end, ppl, tokens),
extrapolation.json and extrapolation.png (both curves).
"""
import csv
import json
import os
import sys
from typing import Any, Optional, Sequence

from absl import app, flags, logging
import jax
import jax.numpy as jnp
import numpy as np

from redllm_jax.evaluation import checkpoint_loading
from redllm_jax.models import token_losses

EOS_ID = 1


def token_windows(texts: Sequence[str], encode, length: int, max_windows: int,
                  longest_first: bool = True) -> np.ndarray:
  """[n, length] windows of the concatenated (EOS-separated) token stream."""
  docs = [list(encode(t)) + [EOS_ID] for t in texts]
  if longest_first:
    docs.sort(key=len, reverse=True)
  stream: list[int] = []
  for doc in docs:
    stream.extend(doc)
    if len(stream) >= length * max_windows:
      break
  n = min(max_windows, len(stream) // length)
  if n == 0:
    raise ValueError(f"only {len(stream)} tokens of text: need {length} for one window")
  return np.asarray(stream[:n * length], np.int32).reshape(n, length)


def task_texts(task_name: str, split: str = "validation") -> tuple[list[str], Any]:
  """Raw texts of a seqio task or mixture's split and its `targets` vocabulary."""
  import seqio  # pylint: disable=g-import-not-at-top
  import redllm_jax_tasks  # pylint: disable=g-import-not-at-top,unused-import

  provider = seqio.get_mixture_or_task(task_name)
  tasks = provider.tasks if isinstance(provider, seqio.Mixture) else [provider]
  texts = []
  for task in tasks:
    for ex in task.source.get_dataset(split=split, shuffle=False).as_numpy_iterator():
      texts.append(ex["text"].decode("utf-8"))
  return texts, tasks[0].output_features["targets"].vocabulary


def _batch(architecture: str, windows: np.ndarray) -> dict[str, np.ndarray]:
  length = windows.shape[1]
  if architecture == "redllm":
    half = length // 2
    targets = windows[:, half:]
    return {"encoder_input_tokens": windows[:, :half], "decoder_target_tokens": targets,
            "decoder_input_tokens": np.pad(targets[:, :-1], ((0, 0), (1, 0))),
            "decoder_loss_weights": np.ones_like(targets, np.float32)}
  return {"decoder_target_tokens": windows,
          "decoder_input_tokens": np.pad(windows[:, :-1], ((0, 0), (1, 0))),
          "decoder_loss_weights": np.ones_like(windows, np.float32),
          "decoder_causal_attention": np.zeros_like(windows)}


def position_losses(model, params, windows: np.ndarray, batch_size: int = 4) -> np.ndarray:
  """Per-position cross-entropy [n, L] (NaN where the architecture predicts nothing)."""
  @jax.jit
  def losses(params, batch):
    return token_losses(model.logits(params, batch), batch["decoder_target_tokens"], 0.0)[0]

  n, length = windows.shape
  out = np.full((n, length), np.nan, np.float32)
  for start in range(0, n, batch_size):
    chunk = windows[start:start + batch_size]
    real = len(chunk)
    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - real, 0)])  # one shape
    loss = np.asarray(losses(params, _batch(model.architecture, chunk)))[:real]
    out[start:start + real, length - loss.shape[1]:] = loss
  return out


def evaluate_lengths(model, params, windows: np.ndarray, lengths: Sequence[int],
                     bucket: int, batch_size: int = 4) -> dict[str, Any]:
  """PPL at each length (second half, and DecLLM's whole window) and by position bucket."""
  summary, buckets = [], []
  for length in lengths:
    if length > windows.shape[1]:
      raise ValueError(f"length {length} exceeds the windows' {windows.shape[1]} tokens")
    loss = position_losses(model, params, windows[:, :length], batch_size)
    half = loss[:, length // 2:]
    row = {"length": int(length), "ppl": float(np.exp(np.mean(half))),
           "tokens": int(half.size), "sequences": int(loss.shape[0])}
    if model.architecture != "redllm":
      row["ppl_all"] = float(np.exp(np.mean(loss)))
    summary.append(row)
    for start in range(0, length, bucket):
      part = loss[:, start:start + bucket]
      if np.isnan(part).all():
        continue
      buckets.append({"length": int(length), "start": start, "end": start + part.shape[1],
                      "ppl": float(np.exp(np.nanmean(part))),
                      "tokens": int(np.sum(~np.isnan(part)))})
  return {"summary": summary, "buckets": buckets}


def write_outputs(results: dict[str, dict[str, Any]], training_length: int, out_dir: str) -> dict:
  """CSV, JSON and the PNG plot of every architecture's curves; returns the file paths."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  os.makedirs(out_dir, exist_ok=True)
  paths = {k: os.path.join(out_dir, f"extrapolation{k}") for k in (".csv", "_buckets.csv", ".json", ".png")}
  with open(paths[".csv"], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["name", "length", "length_ratio", "ppl", "ppl_all", "tokens", "sequences"])
    for name, r in results.items():
      for s in r["summary"]:
        w.writerow([name, s["length"], s["length"] / training_length, f"{s['ppl']:.4f}",
                    f"{s['ppl_all']:.4f}" if "ppl_all" in s else "", s["tokens"], s["sequences"]])
  with open(paths["_buckets.csv"], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["name", "length", "start", "end", "ppl", "tokens"])
    for name, r in results.items():
      for b in r["buckets"]:
        w.writerow([name, b["length"], b["start"], b["end"], f"{b['ppl']:.4f}", b["tokens"]])
  with open(paths[".json"], "w") as f:
    json.dump({"training_length": training_length, "results": results}, f, indent=1)

  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
  for name, r in results.items():
    lengths = [s["length"] for s in r["summary"]]
    left.plot(lengths, [s["ppl"] for s in r["summary"]], marker="o", label=name)
    longest = max(lengths)
    rows = [b for b in r["buckets"] if b["length"] == longest]
    right.plot([(b["start"] + b["end"]) / 2 for b in rows], [b["ppl"] for b in rows],
               marker=".", label=f"{name} (length {longest})")
  for ax in (left, right):
    ax.axvline(training_length, color="grey", linestyle="--", linewidth=1)
    ax.set_yscale("log")
    ax.legend()
  left.set_xscale("log", base=2)
  left.set_xlabel("evaluation length (tokens)")
  left.set_ylabel("PPL of the second half")
  left.set_title(f"Length extrapolation (trained at {training_length})")
  right.set_xlabel("position in the sequence")
  right.set_ylabel("PPL per position bucket")
  right.set_title("PPL by position at the longest length")
  fig.tight_layout()
  fig.savefig(paths[".png"], dpi=110)
  plt.close(fig)
  return paths


def run(models: dict[str, tuple[Any, Any]], windows: np.ndarray, training_length: int,
        factors: Sequence[int], out_dir: str, bucket: Optional[int] = None,
        batch_size: int = 4) -> dict:
  """Evaluates every (model, params) at training_length * factors and writes the outputs."""
  lengths = [training_length * f for f in factors]
  bucket = bucket or max(training_length // 2, 1)
  results = {name: evaluate_lengths(m, p, windows, lengths, bucket, batch_size)
             for name, (m, p) in models.items()}
  return {"results": results, "files": write_outputs(results, training_length, out_dir)}


def define_flags() -> None:
  flags.DEFINE_multi_string("checkpoint", [], "NAME=GIN_FILE[,GIN_FILE...]@CHECKPOINT_PATH; repeat.")
  flags.DEFINE_integer("training_length", 256, "The models' pretraining sequence length.")
  flags.DEFINE_list("factors", ["1", "2", "4", "8"], "Evaluation lengths as multiples of it.")
  flags.DEFINE_string("task", "demo_redpajama", "seqio task or mixture with `text` documents.")
  flags.DEFINE_string("split", "validation", "Split to read.")
  flags.DEFINE_integer("num_sequences", 16, "Windows evaluated (same windows for every length).")
  flags.DEFINE_integer("batch_size", 4, "Windows per forward pass.")
  flags.DEFINE_string("output_dir", None, "Where the CSV/JSON/PNG go.")


def main(argv: Sequence[str]) -> None:
  del argv
  from redllm_jax import gin_utils  # pylint: disable=g-import-not-at-top
  F = flags.FLAGS  # pylint: disable=invalid-name
  logging.set_verbosity(logging.WARNING)
  try:
    if not F.checkpoint or not F.output_dir:
      raise gin_utils.ConfigError("give --checkpoint=NAME=GIN_FILE@PATH (repeatable) and --output_dir")
    factors = [int(f) for f in F.factors]
    texts, vocab = task_texts(F.task, F.split)
    windows = token_windows(texts, vocab.encode, F.training_length * max(factors), F.num_sequences)
    models = {}
    for spec in F.checkpoint:
      name, model, params = checkpoint_loading.load_checkpoint_spec(spec)
      models[name] = (model, params)
    out = run(models, windows, F.training_length, factors, F.output_dir, batch_size=F.batch_size)
  except (gin_utils.ConfigError, ValueError) as e:
    print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
    sys.exit(2)
  print(f"{windows.shape[0]} windows of {windows.shape[1]} tokens from {F.task}/{F.split}")
  print(f"{'name':<16}" + "".join(f"{f'{f}x':>10}" for f in factors))
  for name, r in out["results"].items():
    print(f"{name:<16}" + "".join(f"{s['ppl']:>10.2f}" for s in r["summary"]))
  print("wrote", ", ".join(out["files"].values()))


if __name__ == "__main__":
  define_flags()
  app.run(main)
