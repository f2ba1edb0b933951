"""Seed-to-seed statistics: mean and standard error of a figure measured once per seed.

A figure over n seeds is {"mean", "se", "n"}: `se` is the standard error of the mean,
std(ddof=1) / sqrt(n), NaN with one seed (no spread to measure). Differences between
the architectures are paired by seed (`paired`): the design gives each seed index one
run per architecture, so pairing is the natural choice; with independent seeds it
changes the mean not at all and the SE only by the (absent) covariance.
"""

import math
from typing import Mapping, Sequence

import numpy as np

Stat = Mapping[str, float]


def mean_se(values: Sequence[float]) -> dict[str, float]:
  v = np.asarray(values, np.float64)
  if v.size == 0:
    raise ValueError("no values to average")
  se = float(np.std(v, ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan
  return {"mean": float(np.mean(v)), "se": se, "n": int(v.size)}


def paired(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
  """a - b, seed by seed, averaged: its mean and SE."""
  if len(a) != len(b):
    raise ValueError(f"paired values need one each per seed, got {len(a)} and {len(b)}")
  return mean_se(np.asarray(a, np.float64) - np.asarray(b, np.float64))


def z_score(stat: Stat, reference: float = 0.0) -> float:
  """(mean - reference) / se; NaN without an SE, infinite for an exact (zero-SE) figure."""
  diff, se = stat["mean"] - reference, stat["se"]
  if not math.isfinite(se):
    return math.nan
  if se == 0:
    return math.copysign(math.inf, diff) if diff else 0.0
  return diff / se


def binomial_se(p: float, items: int) -> float:
  """Item-level SE of an accuracy p over `items` items (the test set's own noise)."""
  return math.sqrt(max(p * (1 - p), 0.0) / max(items, 1))


def item_se(item_scores: Sequence[Sequence[float]]) -> float:
  """Item-level SE of a seed-averaged score: the SE over items of each item's mean over
  the seeds (rows: seeds, columns: the same items). Every seed answers the same items, so
  an item is one draw from the task whichever seeds answered it; the binomial
  `binomial_se` would count each seed's answers as if one seed had given them all
  (Miller 2024, "Adding error bars to evals": average an item's repeats, then take the SE
  over items). With one seed it is the binomial SE times sqrt(n / (n - 1))."""
  m = np.asarray(item_scores, np.float64)
  if m.ndim != 2 or m.shape[1] < 2:
    raise ValueError(f"item scores need seeds x items (2 items or more), got shape {m.shape}")
  return float(np.std(m.mean(axis=0), ddof=1) / math.sqrt(m.shape[1]))


def seeds_to_decide(stat: Stat, reference: float = 0.0, z: float = 3.0) -> float:
  """Seeds needed for |mean - reference| to reach z SEs, if the seed spread stays as
  measured: n = (z * sd / |effect|)^2 with sd = se * sqrt(n)."""
  effect = abs(stat["mean"] - reference)
  if not math.isfinite(stat["se"]) or effect == 0:
    return math.inf
  return math.ceil((z * stat["se"] * math.sqrt(stat["n"]) / effect) ** 2)


def fmt(stat: Stat, digits: int = 2, scale: float = 1.0) -> str:
  """'12.34 ± 0.56' (the SE over stat's n seeds); 'nan' SE shows as '± n/a'."""
  mean, se = scale * stat["mean"], scale * stat["se"]
  return f"{mean:.{digits}f} ± {se:.{digits}f}" if math.isfinite(se) else f"{mean:.{digits}f} ± n/a"


def fmt_g(stat: Stat, digits: int = 3) -> str:
  """As `fmt` in significant digits, for figures spanning magnitudes (FLOPs, ratios)."""
  se = f"{stat['se']:.{digits}g}" if math.isfinite(stat["se"]) else "n/a"
  return f"{stat['mean']:.{digits}g} ± {se}"
