r"""Attention-weight analysis: decoder self-attention locality and RedLLM cross-attention.

  python -m redllm_jax.evaluation.attention --gin_file=runs/attention.gin \
      --gin.CHECKPOINTS="{'decllm': 'runs/demo/decllm', 'redllm': 'runs/demo/redllm'}" \
      --gin.OUTPUT_DIR=\"/tmp/attention\" [--gin.TRAINING_LENGTH=256]

Each checkpoint says which model it holds (its `meta`): no model gin is needed.

Weights come from the flax `intermediates` collection (`Attention` sows its softmax
weights when applied with `mutable=["intermediates"]`), on windows of real
validation text (as in `extrapolation`). Each window of L tokens is read as in
pretraining: DecLLM over the whole window, RedLLM with the first half in the encoder
and the second half in the decoder. Query positions are offsets j into the second
half (the same predicted tokens for both models); DecLLM's query index is L/2 + j.

Outputs:
  locality.csv / .json   mean decoder self-attention weight by query-key distance, per
                         architecture and query offset (mean over layers, heads,
                         windows), and the attention mass within 1/8 of the span
  locality.png           those curves, one panel per architecture
  cross_attention.json   RedLLM cross-attention [layer][decoder query][encoder key],
                         head-averaged, first window, plus per-layer entropy and the
                         overlap of the top-attended encoder keys across queries
  cross_attention.png    heat maps, one per decoder layer
"""

import csv
import json
import os
from typing import Any, Mapping, Optional, Sequence

import flax
import gin
import jax
import matplotlib
import numpy as np

matplotlib.use("Agg")  # PNG files only: no display needed
from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from redllm_jax import checkpoints as checkpoints_lib
from redllm_jax import gin_utils
from redllm_jax.evaluation import windows


def attention_maps(model, params, batch: dict) -> dict[str, np.ndarray]:
  """{"encoder/self_attention" | "decoder/self_attention" | "decoder/cross_attention":
  weights [layers, batch, heads, queries, keys]} for one forward pass."""
  apply = jax.jit(
    lambda p, b: model.network.apply(
      {"params": p}, **model._network_inputs(b), mutable=["intermediates"]
    )[1]
  )  # pylint: disable=protected-access
  state = apply(params, batch)
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(state["intermediates"]))
  groups: dict[str, list[tuple[int, np.ndarray]]] = {}
  for key, value in flat.items():
    stack = key[0]
    kind = next(k for k in key if k in ("self_attention", "cross_attention"))
    layer_key = key[1]
    value = np.asarray(value[0] if isinstance(value, tuple) else value)
    if layer_key == "layers":  # scanned: leading axis is the layer
      for i in range(value.shape[0]):
        groups.setdefault(f"{stack}/{kind}", []).append((i, value[i]))
    else:
      groups.setdefault(f"{stack}/{kind}", []).append((int(layer_key.split("_")[1]), value))
  return {
    name: np.stack([v for _, v in sorted(items, key=lambda x: x[0])])
    for name, items in groups.items()
  }


def locality(weights: np.ndarray, query_indices: Sequence[int]) -> dict[int, np.ndarray]:
  """{query index: mean weight by distance 0..q} from weights [layers, b, h, q, k]."""
  mean = weights.mean(axis=(0, 1, 2))  # [q, k]
  return {int(q): mean[q, q::-1].copy() for q in query_indices}


def default_query_offsets(length: int) -> list[int]:
  """Four offsets into the second half of a `length`-token window, spread out."""
  half = length // 2
  return sorted({half // 8, half // 4, half // 2, half - 1})


def analyze(
  model, params, token_windows: np.ndarray, query_offsets: Sequence[int]
) -> dict[str, Any]:
  """Locality curves (and for RedLLM, cross-attention) of one model on `token_windows`."""
  half = token_windows.shape[1] // 2
  maps = attention_maps(model, params, model.pretraining_batch(token_windows))
  shift = 0 if model.architecture == "redllm" else half
  curves = locality(maps["decoder/self_attention"], [shift + j for j in query_offsets])
  out: dict[str, Any] = {"locality": {}}
  for j in query_offsets:
    w = curves[shift + j]
    local = max(1, (shift + j + 1) // 8)
    out["locality"][int(j)] = {
      "weights": w.tolist(),
      "query_index": shift + j,
      "local_mass": float(w[:local].sum()),
      "local_span": local,
    }
  if "decoder/cross_attention" in maps:
    cross = maps["decoder/cross_attention"][:, 0].mean(axis=1)  # [layers, q, k], first window
    full = maps["decoder/cross_attention"].mean(axis=2)  # [layers, b, q, k]
    entropy = -(full * np.log(np.maximum(full, 1e-12))).sum(-1).mean(axis=(1, 2))
    top = max(1, cross.shape[-1] // 8)
    overlap = []
    for layer in range(cross.shape[0]):
      sets = [set(np.argsort(row)[-top:]) for row in cross[layer]]
      union = set().union(*sets)
      overlap.append(float(np.mean([len(s) for s in sets]) / max(len(union), 1)))
    out["cross_attention"] = {
      "weights": cross.tolist(),
      "entropy": entropy.tolist(),
      "uniform_entropy": float(np.log(cross.shape[-1])),
      "top_keys": top,
      "top_key_overlap": overlap,
    }
  return out


def write_outputs(results: dict[str, dict[str, Any]], out_dir: str) -> dict[str, str]:

  os.makedirs(out_dir, exist_ok=True)
  files = {
    name: os.path.join(out_dir, name) for name in ("locality.csv", "locality.json", "locality.png")
  }
  with open(files["locality.csv"], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["name", "query_offset", "query_index", "distance", "weight"])
    for name, r in results.items():
      for j, c in r["locality"].items():
        for distance, weight in enumerate(c["weights"]):
          w.writerow([name, j, c["query_index"], distance, f"{weight:.6g}"])
  with open(files["locality.json"], "w") as f:
    json.dump({name: r["locality"] for name, r in results.items()}, f)
  fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
  for ax, (name, r) in zip(axes[0], results.items()):
    for j, c in r["locality"].items():
      ax.plot(
        np.arange(len(c["weights"])), c["weights"], label=f"query {c['query_index']} (target +{j})"
      )
    ax.set_yscale("log")
    ax.set_xlabel("query - key distance")
    ax.set_ylabel("mean attention weight")
    ax.set_title(f"{name}: decoder self-attention")
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(files["locality.png"], dpi=110)
  plt.close(fig)

  for name, r in results.items():
    if "cross_attention" not in r:
      continue
    cross = r["cross_attention"]
    files["cross_attention.json"] = os.path.join(out_dir, "cross_attention.json")
    files["cross_attention.png"] = os.path.join(out_dir, "cross_attention.png")
    with open(files["cross_attention.json"], "w") as f:
      json.dump({"name": name, **cross}, f)
    plot_cross_attention(np.asarray(cross["weights"]), name, files["cross_attention.png"])
  return files


def plot_cross_attention(weights: np.ndarray, name: str, path: str) -> None:
  """Heat maps [layer][decoder query][encoder key], one per decoder layer."""
  fig, axes = plt.subplots(1, weights.shape[0], figsize=(4.5 * weights.shape[0], 4), squeeze=False)
  for layer, ax in enumerate(axes[0]):
    image = ax.imshow(weights[layer], aspect="auto", cmap="viridis")
    ax.set_title(f"{name} cross-attention, layer {layer}")
    ax.set_xlabel("encoder key position")
    ax.set_ylabel("decoder query position")
    fig.colorbar(image, ax=ax)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


@gin.configurable
def compare(
  checkpoints: Mapping[str, str] = gin.REQUIRED,
  output_dir: str = gin.REQUIRED,
  task: str = gin.REQUIRED,
  length: int = gin.REQUIRED,
  num_sequences: int = 8,
  query_offsets: Optional[Sequence[int]] = None,
) -> dict[str, Any]:
  """Every checkpoint (name -> path; each says which model it holds) on the same windows."""
  offsets = list(query_offsets) if query_offsets else default_query_offsets(length)
  texts, vocab = windows.task_texts(task, "validation")
  token_windows = windows.token_windows(texts, vocab.encode, length, num_sequences)
  results = {}
  for name, path in checkpoints.items():
    model, params = checkpoints_lib.load_model_and_params(path)
    results[name] = analyze(model, params, token_windows, offsets)
  files = write_outputs(results, output_dir)
  for name, r in results.items():
    masses = ", ".join(f"+{j}: {c['local_mass']:.3f}" for j, c in r["locality"].items())
    print(f"{name}: attention mass within 1/8 of the span by query offset: {masses}")
    if "cross_attention" in r:
      c = r["cross_attention"]
      print(
        f"{name}: cross-attention entropy per layer {np.round(c['entropy'], 3).tolist()} "
        f"(uniform {c['uniform_entropy']:.3f}); top-{c['top_keys']} key overlap "
        f"{np.round(c['top_key_overlap'], 3).tolist()}"
      )
  print("wrote", ", ".join(files.values()))
  return results


def main() -> None:
  compare()


if __name__ == "__main__":
  gin_utils.run(__spec__.name)
