r"""Attention-weight analysis: decoder self-attention locality and RedLLM cross-attention.

  python -m redllm_jax.evaluation.attention \
      --checkpoint=decllm=models/decllm_tiny.gin@/tmp/dec/checkpoints/2000 \
      --checkpoint=redllm=models/redllm_tiny.gin@/tmp/red/checkpoints/2000 \
      --length=256 --num_sequences=8 --output_dir=/tmp/attention

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
import sys
from typing import Any, Sequence

from absl import app, flags, logging
import flax
import jax
import numpy as np

from redllm_jax.evaluation import checkpoint_loading


def attention_maps(model, params, batch: dict) -> dict[str, np.ndarray]:
  """{"encoder/self_attention" | "decoder/self_attention" | "decoder/cross_attention":
  weights [layers, batch, heads, queries, keys]} for one forward pass."""
  apply = jax.jit(lambda p, b: model.network.apply(
      {"params": p}, **model._network_inputs(b), mutable=["intermediates"])[1])  # pylint: disable=protected-access
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
  return {name: np.stack([v for _, v in sorted(items, key=lambda x: x[0])])
          for name, items in groups.items()}


def _batch(architecture: str, windows: np.ndarray) -> dict[str, np.ndarray]:
  half = windows.shape[1] // 2
  if architecture == "redllm":
    targets = windows[:, half:]
    return {"encoder_input_tokens": windows[:, :half], "decoder_target_tokens": targets,
            "decoder_input_tokens": np.pad(targets[:, :-1], ((0, 0), (1, 0)))}
  return {"decoder_target_tokens": windows,
          "decoder_input_tokens": np.pad(windows[:, :-1], ((0, 0), (1, 0))),
          "decoder_causal_attention": np.zeros_like(windows)}


def locality(weights: np.ndarray, query_indices: Sequence[int]) -> dict[int, np.ndarray]:
  """{query index: mean weight by distance 0..q} from weights [layers, b, h, q, k]."""
  mean = weights.mean(axis=(0, 1, 2))  # [q, k]
  return {int(q): mean[q, q::-1].copy() for q in query_indices}


def default_query_offsets(length: int) -> list[int]:
  """Four offsets into the second half of a `length`-token window, spread out."""
  half = length // 2
  return sorted({half // 8, half // 4, half // 2, half - 1})


def analyze(model, params, windows: np.ndarray, query_offsets: Sequence[int]) -> dict[str, Any]:
  """Locality curves (and for RedLLM, cross-attention) of one model on `windows`."""
  half = windows.shape[1] // 2
  maps = attention_maps(model, params, _batch(model.architecture, windows))
  shift = 0 if model.architecture == "redllm" else half
  curves = locality(maps["decoder/self_attention"], [shift + j for j in query_offsets])
  out: dict[str, Any] = {"locality": {}}
  for j in query_offsets:
    w = curves[shift + j]
    local = max(1, (shift + j + 1) // 8)
    out["locality"][int(j)] = {"weights": w.tolist(), "query_index": shift + j,
                               "local_mass": float(w[:local].sum()), "local_span": local}
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
        "weights": cross.tolist(), "entropy": entropy.tolist(),
        "uniform_entropy": float(np.log(cross.shape[-1])),
        "top_keys": top, "top_key_overlap": overlap}
  return out


def write_outputs(results: dict[str, dict[str, Any]], out_dir: str) -> dict[str, str]:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  os.makedirs(out_dir, exist_ok=True)
  files = {name: os.path.join(out_dir, name) for name in
           ("locality.csv", "locality.json", "locality.png")}
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
      ax.plot(np.arange(len(c["weights"])), c["weights"],
              label=f"query {c['query_index']} (target +{j})")
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
    weights = np.asarray(cross["weights"])
    fig, axes = plt.subplots(1, weights.shape[0], figsize=(4.5 * weights.shape[0], 4),
                             squeeze=False)
    for layer, ax in enumerate(axes[0]):
      image = ax.imshow(weights[layer], aspect="auto", cmap="viridis")
      ax.set_title(f"{name} cross-attention, layer {layer}")
      ax.set_xlabel("encoder key position")
      ax.set_ylabel("decoder query position")
      fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(files["cross_attention.png"], dpi=110)
    plt.close(fig)
  return files


def define_flags() -> None:
  flags.DEFINE_multi_string("checkpoint", [], "NAME=GIN_FILE[,GIN_FILE...]@CHECKPOINT_PATH; repeat.")
  flags.DEFINE_integer("length", 256, "Window length (RedLLM: half encoder, half decoder).")
  flags.DEFINE_integer("num_sequences", 8, "Windows averaged over.")
  flags.DEFINE_list("query_offsets", None, "Offsets into the second half (default: 4 spread out).")
  flags.DEFINE_string("task", "demo_redpajama", "seqio task or mixture with `text` documents.")
  flags.DEFINE_string("output_dir", None, "Where the PNG/JSON/CSV go.")


def main(argv: Sequence[str]) -> None:
  del argv
  from redllm_jax import gin_utils
  from redllm_jax.evaluation import extrapolation  # pylint: disable=g-import-not-at-top
  F = flags.FLAGS  # pylint: disable=invalid-name
  logging.set_verbosity(logging.WARNING)
  try:
    if not F.checkpoint or not F.output_dir:
      raise gin_utils.ConfigError("give --checkpoint=NAME=GIN_FILE@PATH (repeatable) and --output_dir")
    offsets = ([int(x) for x in F.query_offsets] if F.query_offsets
               else default_query_offsets(F.length))
    texts, vocab = extrapolation.task_texts(F.task, "validation")
    windows = extrapolation.token_windows(texts, vocab.encode, F.length, F.num_sequences)
    results = {}
    for spec in F.checkpoint:
      name, model, params = checkpoint_loading.load_checkpoint_spec(spec)
      results[name] = analyze(model, params, windows, offsets)
    files = write_outputs(results, F.output_dir)
  except (gin_utils.ConfigError, ValueError) as e:
    print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
    sys.exit(2)
  for name, r in results.items():
    masses = ", ".join(f"+{j}: {c['local_mass']:.3f}" for j, c in r["locality"].items())
    print(f"{name}: attention mass within 1/8 of the span by query offset: {masses}")
    if "cross_attention" in r:
      c = r["cross_attention"]
      print(f"{name}: cross-attention entropy per layer {np.round(c['entropy'], 3).tolist()} "
            f"(uniform {c['uniform_entropy']:.3f}); top-{c['top_keys']} key overlap "
            f"{np.round(c['top_key_overlap'], 3).tolist()}")
  print("wrote", ", ".join(files.values()))


if __name__ == "__main__":
  define_flags()
  app.run(main)
