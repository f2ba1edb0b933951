"""Synthetic per-seed study outputs with known answers, summarized by the study's own
functions (no training): what `analyses.outputs` returns, for findings and report tests."""

from typing import Optional, Sequence

import numpy as np

from redllm_jax.study import scaling, scores, seed_summaries

SIZES = (("s", 1e5), ("m", 2e5), ("l", 4e5))
BUDGETS = (100, 200, 400)


def runs(
  b: dict[str, float], noise: Sequence[float] = (0.0, 0.0, 0.0), seeds: Sequence[int] = (0, 1, 2)
) -> list[dict]:
  """Pretraining result.json rows on exact power laws PPL = 1e4 X^-b[arch], each seed's
  exponent shifted by noise[seed] (so b over seeds is known exactly)."""
  rows = []
  for seed in seeds:
    for arch, scale in (("decllm", 1.0), ("redllm", 0.5)):
      for size, params in SIZES:
        for steps in BUDGETS:
          flops = 6 * params * steps * 2048 * scale
          ppl = 1e4 * flops ** -(b[arch] + noise[seed])
          point = f"{arch}_{size}_{steps}"
          rows.append(
            {
              "name": f"{point}_s{seed}",
              "point": point,
              "seed": seed,
              "architecture": arch,
              "size": size,
              "steps": steps,
              "params": params,
              "train_flops": flops,
              "target_tokens": steps * 2048,
              "seconds": 10.0,
              "in_domain": ppl,
              "out_of_domain": 2 * ppl,
            }
          )
  return rows


MODELS = (
  "decllm/pretrained",
  "redllm/pretrained",
  "decllm/flan",
  "redllm/flan",
  "decllm_biattn/flan",
)
TASKS = {
  scores.CONTINUATION: ("continuation", 0.25),
  "demo_cloze_mc": ("cloze", 0.1),
  "family_source_mc": ("tuned families", 0.5),
  "family_book_mc": ("held-out families", 0.25),
}


def harness(
  score: dict[str, float],
  spread: float = 0.01,
  items: int = 400,
  seeds: Sequence[int] = (0, 1, 2),
  shots: Sequence[int] = (0, 5),
  floor: float = 0.0,
) -> dict:
  """harness.json: every task scores `score[model]` + seed offsets (-1, 0, +1) * spread; its
  floor is the higher of chance and `floor`."""
  info = {
    name: {
      "chance": chance,
      "chance_from": "manifest",
      "floor": max(chance, floor),
      "group": group,
      "items": items,
    }
    for name, (group, chance) in TASKS.items()
  }
  offsets = np.linspace(-1, 1, len(seeds)) * spread
  per_seed = {
    m: {
      str(s): {f"{t}@{k}shot": score[m] + o for t in TASKS for k in shots}
      for s, o in zip(seeds, offsets)
    }
    for m in score
  }
  summary = scores.summarize(per_seed, info, shots)
  costs = {
    "decllm/pretrained": 2.0,
    "redllm/pretrained": 1.0,
    "decllm/flan": 2.0,
    "redllm/flan": 1.0,
    "decllm_biattn/flan": 2.0,
  }
  return {
    "summary": summary,
    "per_seed": per_seed,
    "inference_flops": costs,
    "shots": list(shots),
    "seeds": list(seeds),
    "tasks": info,
    "model_floors": {},
    "continuation_bar": scores.continuation_bar(summary, list(summary), shots),
  }


def extrapolation_output(dec: Sequence[Sequence[float]], red: Sequence[Sequence[float]]) -> dict:
  """extrapolation.json from per-seed PPL curves at 1, 2, 4, 8x of 256 tokens (the
  second half's first token at 4x, the rest at the curve's PPL)."""
  per_seed = {
    s: {
      arch: {
        "summary": [
          {"length": 256 * f, "ppl": p, "first_token_ppl": 4 * p, "rest_ppl": p}
          for f, p in zip((1, 2, 4, 8), curves[s])
        ]
      }
      for arch, curves in (("decllm", dec), ("redllm", red))
    }
    for s in range(len(dec))
  }
  return {
    "training_length": 256,
    "seeds": [str(s) for s in per_seed],
    "summary": seed_summaries.summarize_extrapolation(per_seed, 256),
    "per_seed": {str(s): r for s, r in per_seed.items()},
  }


def attention_output(
  dec_mass: Sequence[float], red_mass: Sequence[float], concentrated: bool = True
) -> tuple[dict, dict]:
  """(locality.json, cross_attention.json) with these local masses per seed and 16 x 16
  cross-attention maps (top 2 keys: the same 2 keys for every query if concentrated)."""
  per_seed = {}
  rng = np.random.default_rng(0)
  for s, (d, r) in enumerate(zip(dec_mass, red_mass)):
    weights = rng.uniform(0.5, 1.0, (1, 16, 16))
    if concentrated:
      weights[..., :2] += 4.0
    weights /= weights.sum(-1, keepdims=True)
    entropy = [float(-(weights[0] * np.log(weights[0])).sum(-1).mean())]
    sets = [set(np.argsort(row)[-2:]) for row in weights[0]]
    overlap = float(np.mean([len(x) for x in sets]) / len(set().union(*sets)))
    per_seed[s] = {
      "decllm": {
        "locality": {
          "4": {"weights": [d, 1 - d], "query_index": 20, "local_mass": d, "local_span": 2}
        }
      },
      "redllm": {
        "locality": {
          "4": {"weights": [r, 1 - r], "query_index": 4, "local_mass": r, "local_span": 1}
        },
        "cross_attention": {
          "weights": weights.tolist(),
          "entropy": entropy,
          "uniform_entropy": float(np.log(16)),
          "top_keys": 2,
          "top_key_overlap": [overlap],
        },
      },
    }
  summary = seed_summaries.summarize_attention(per_seed)
  return ({k: v for k, v in summary.items() if k != "cross_attention"}, summary["cross_attention"])


def outputs(
  b: Optional[dict] = None, score: Optional[dict] = None, adapt: Sequence[dict] = ()
) -> dict:
  """A whole `analyses.outputs` dict: clear effects in the paper's direction by default."""
  rows = runs(b or {"decllm": 0.20, "redllm": 0.24}, noise=(-0.01, 0.0, 0.01))
  locality, cross = attention_output([0.6, 0.62, 0.64], [0.4, 0.41, 0.43])
  return {
    "scaling": {
      **scaling.summarize(rows),
      "tasks": {"in_domain": "demo_redpajama", "out_of_domain": "demo_paloma"},
    },
    "harness": harness(
      score
      or {
        "decllm/pretrained": 0.6,
        "redllm/pretrained": 0.4,
        "decllm/flan": 0.6,
        "redllm/flan": 0.7,
        "decllm_biattn/flan": 0.65,
      }
    ),
    "extrapolation": extrapolation_output(
      [[10, 12, 40, 90], [10, 12.5, 42, 95], [10, 12.2, 41, 92]],
      [[12, 13, 14, 15], [12, 13.1, 14.2, 15.1], [12, 13.2, 14.1, 15.3]],
    ),
    "locality": locality,
    "cross_attention": cross,
    "finetune": {
      n: {"mean": 5.0, "se": 0.1, "n": 3} for n in ("decllm", "redllm", "decllm_biattn")
    },
    "finetune_task": "demo_flan",
    "vocab_size": 1024,
    "throughput": {
      "flops_per_s": 3e10,
      "runs": 57,
      "workers": 2,
      "ceiling": None,
      "fraction": None,
    },
    "adapt": list(adapt),
  }
