r"""Length extrapolation: perplexity at 1x..8x the training length, overall and by position.

  python -m redllm_jax.evaluation.extrapolation --gin_file=runs/extrapolation.gin \
      --gin.CHECKPOINTS="{'decllm': 'runs/demo/decllm', 'redllm': 'runs/demo/redllm'}" \
      --gin.OUTPUT_DIR=\"/tmp/extrap\" [--gin.TRAINING_LENGTH=256 --gin.EVAL_TASK=\"demo_redpajama\"]

Each checkpoint says which model it holds (its `meta`), so no model gin is needed
and models of both architectures compare side by side.

Text: the task's validation documents, longest first, tokenized with the task's
vocabulary and concatenated (EOS between documents) into windows of the longest
evaluated length. Every length L evaluates the first L tokens of the same windows.
- DecLLM reads the whole window [BOS, w_0 .. w_{L-2}] and predicts w_0 .. w_{L-1}.
- RedLLM splits it in the middle as in pretraining: the encoder reads w_0 .. w_{L/2-1},
  the decoder predicts w_{L/2} .. w_{L-1}, its RoPE positions continuing at L/2.
`ppl` is over the second half (the tokens both architectures predict, so the curves
compare like with like), `first_token_ppl` over its first token (RedLLM's first decoder
target) and `rest_ppl` over the others; DecLLM's `ppl_all` covers the whole window. PPL by
position bucket uses absolute positions in the window.

Outputs in output_dir: extrapolation.csv (arch, length, ppl, ...),
extrapolation_buckets.csv (arch, length, bucket start/end, ppl, tokens),
extrapolation.json and extrapolation.png (both curves).
"""

import csv
import json
import os
from typing import Any, Mapping, Optional, Sequence

import gin
import jax
import matplotlib
import numpy as np

matplotlib.use("Agg")  # PNG files only: no display needed
from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from redllm_jax import checkpoints as checkpoints_lib
from redllm_jax import gin_utils
from redllm_jax.evaluation import windows
from redllm_jax.models import token_losses


def position_losses(model, params, token_windows: np.ndarray, batch_size: int = 4) -> np.ndarray:
  """Per-position cross-entropy [n, L] (NaN where the architecture predicts nothing)."""

  @jax.jit
  def losses(params, batch):
    return token_losses(model.logits(params, batch), batch["decoder_target_tokens"], 0.0)[0]

  n, length = token_windows.shape
  out = np.full((n, length), np.nan, np.float32)
  for start in range(0, n, batch_size):
    chunk = token_windows[start : start + batch_size]
    real = len(chunk)
    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - real, 0)])  # one shape
    loss = np.asarray(losses(params, model.pretraining_batch(chunk)))[:real]
    out[start : start + real, length - loss.shape[1] :] = loss
  return out


def evaluate_lengths(
  model, params, token_windows: np.ndarray, lengths: Sequence[int], bucket: int, batch_size: int = 4
) -> dict[str, Any]:
  """PPL at each length (second half, and DecLLM's whole window) and by position bucket."""
  summary, buckets = [], []
  for length in lengths:
    if length > token_windows.shape[1]:
      raise ValueError(f"length {length} exceeds the windows' {token_windows.shape[1]} tokens")
    loss = position_losses(model, params, token_windows[:, :length], batch_size)
    half = loss[:, length // 2 :]
    row = {
      "length": int(length),
      "ppl": float(np.exp(np.mean(half))),
      # The half's first token: RedLLM's first decoder target, which only its
      # cross-attention can tie to the text before it.
      "first_token_ppl": float(np.exp(np.mean(half[:, 0]))),
      "rest_ppl": float(np.exp(np.mean(half[:, 1:]))),
      "tokens": int(half.size),
      "sequences": int(loss.shape[0]),
    }
    if model.architecture != "redllm":
      row["ppl_all"] = float(np.exp(np.mean(loss)))
    summary.append(row)
    for start in range(0, length, bucket):
      part = loss[:, start : start + bucket]
      if np.isnan(part).all():
        continue
      buckets.append(
        {
          "length": int(length),
          "start": start,
          "end": start + part.shape[1],
          "ppl": float(np.exp(np.nanmean(part))),
          "tokens": int(np.sum(~np.isnan(part))),
        }
      )
  return {"summary": summary, "buckets": buckets}


def write_outputs(results: dict[str, dict[str, Any]], training_length: int, out_dir: str) -> dict:
  """CSV, JSON and the PNG plot of every architecture's curves; returns the file paths."""

  os.makedirs(out_dir, exist_ok=True)
  paths = {
    k: os.path.join(out_dir, f"extrapolation{k}") for k in (".csv", "_buckets.csv", ".json", ".png")
  }
  with open(paths[".csv"], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["name", "length", "length_ratio", "ppl", "ppl_all", "tokens", "sequences"])
    for name, r in results.items():
      for s in r["summary"]:
        w.writerow(
          [
            name,
            s["length"],
            s["length"] / training_length,
            f"{s['ppl']:.4f}",
            f"{s['ppl_all']:.4f}" if "ppl_all" in s else "",
            s["tokens"],
            s["sequences"],
          ]
        )
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
    right.plot(
      [(b["start"] + b["end"]) / 2 for b in rows],
      [b["ppl"] for b in rows],
      marker=".",
      label=f"{name} (length {longest})",
    )
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


def run(
  models: dict[str, tuple[Any, Any]],
  token_windows: np.ndarray,
  training_length: int,
  factors: Sequence[int],
  out_dir: str,
  bucket: Optional[int] = None,
  batch_size: int = 4,
) -> dict:
  """Evaluates every (model, params) at training_length * factors and writes the outputs."""
  lengths = [training_length * f for f in factors]
  bucket = bucket or max(training_length // 2, 1)
  results = {
    name: evaluate_lengths(m, p, token_windows, lengths, bucket, batch_size)
    for name, (m, p) in models.items()
  }
  return {"results": results, "files": write_outputs(results, training_length, out_dir)}


@gin.configurable
def compare(
  checkpoints: Mapping[str, str] = gin.REQUIRED,
  output_dir: str = gin.REQUIRED,
  task: str = gin.REQUIRED,
  training_length: int = gin.REQUIRED,
  factors: Sequence[int] = (1, 2, 4, 8),
  split: str = "validation",
  num_sequences: int = 16,
  batch_size: int = 4,
) -> dict:
  """Every checkpoint (name -> path; each says which model it holds) on the same windows."""
  texts, vocab = windows.task_texts(task, split)
  token_windows = windows.token_windows(
    texts, vocab.encode, training_length * max(factors), num_sequences
  )
  models = {name: checkpoints_lib.load_model_and_params(path) for name, path in checkpoints.items()}
  out = run(models, token_windows, training_length, factors, output_dir, batch_size=batch_size)
  print(f"{token_windows.shape[0]} windows of {token_windows.shape[1]} tokens from {task}/{split}")
  print(f"{'name':<16}" + "".join(f"{f'{f}x':>10}" for f in factors))
  for name, r in out["results"].items():
    print(f"{name:<16}" + "".join(f"{s['ppl']:>10.2f}" for s in r["summary"]))
  print("wrote", ", ".join(out["files"].values()))
  return out


def main() -> None:
  compare()


if __name__ == "__main__":
  gin_utils.run(__spec__.name)
