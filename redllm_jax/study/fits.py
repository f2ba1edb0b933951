"""Power-law fits PPL = a * X^-b and the compute-optimal frontier.

The fit is ordinary least squares of log PPL on log X, the form in which the paper
reports its exponents; `r2` and the slope's standard error are in log space too.
"""

import dataclasses
import math
from typing import Sequence

import numpy as np
from scipy import stats


@dataclasses.dataclass(frozen=True)
class PowerLaw:
  a: float
  b: float
  b_stderr: float  # NaN with fewer than 3 points (no residual degrees of freedom)
  r2: float
  n: int

  def __call__(self, x):
    return self.a * np.asarray(x, np.float64) ** -self.b

  def as_dict(self) -> dict[str, float]:
    return dataclasses.asdict(self)


def fit_power_law(x: Sequence[float], y: Sequence[float]) -> PowerLaw:
  """Least-squares fit of log y = log a - b log x."""
  lx, ly = np.log(np.asarray(x, np.float64)), np.log(np.asarray(y, np.float64))
  if lx.size < 2 or np.ptp(lx) == 0:
    raise ValueError(f"a power law needs 2 or more distinct x values, got {lx.size}")
  fit = stats.linregress(lx, ly)
  # Two points leave no residual degrees of freedom: no standard error (scipy says 0).
  stderr = fit.stderr if lx.size > 2 else float("nan")
  r2 = fit.rvalue**2 if np.ptp(ly) > 0 else 1.0  # a flat y is fitted exactly
  return PowerLaw(
    a=float(np.exp(fit.intercept)),
    b=float(-fit.slope),
    b_stderr=float(stderr),
    r2=float(r2),
    n=int(lx.size),
  )


def frontier(points: Sequence[tuple[float, float]]) -> list[int]:
  """Indices of the compute-optimal frontier: no other point has <= cost and lower PPL.

  `points` are (cost, ppl); the result is ordered by cost.
  """
  order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
  best, keep = math.inf, []
  for i in order:
    if points[i][1] < best:
      keep.append(i)
      best = points[i][1]
  return keep


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
  """Indices not dominated in (lower cost, higher quality); `points` are (cost, quality)."""
  return frontier([(cost, -quality) for cost, quality in points])
