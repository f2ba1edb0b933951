"""One progress bar across every stage and run of the study, with an ETA.

Work is measured in estimated FLOPs (training runs: their training FLOPs; analysis
stages: the forward passes they make), so the ETA is remaining FLOPs over the
recent FLOP rate (an average weighted toward the latest units: small early runs
are dominated by compilation and would overstate the ETA). Units finished in an
earlier, interrupted invocation count as done from the start and do not skew it.
"""

import time
from typing import Iterable

import tqdm


class Progress:
  def __init__(self, units: dict[str, float], done: Iterable[str]):
    self._units = dict(units)
    self._done = set(done) & set(self._units)
    self._bar = tqdm.tqdm(
      total=sum(self._units.values()),
      initial=sum(self._units[u] for u in self._done),
      unit="FLOP",
      unit_scale=True,
      smoothing=0.3,
      dynamic_ncols=True,
      position=0,
      desc="study",
      bar_format="{desc}: {percentage:3.0f}%|{bar}| "
      "{n_fmt}/{total_fmt} FLOPs (estimated) [{elapsed}<{remaining}]",
    )
    self._started = time.perf_counter()

  def start(self, unit: str) -> None:
    position = len(self._done) + 1
    self._bar.set_description_str(f"study {position}/{len(self._units)} {unit}")

  def finish(self, unit: str) -> None:
    if unit not in self._done:
      self._done.add(unit)
      self._bar.update(self._units[unit])

  def log(self, message: str) -> None:
    """A line above the bar (tqdm keeps the bar at the bottom)."""
    self._bar.write(message)

  def close(self) -> float:
    """Closes the bar; seconds spent in this invocation."""
    self._bar.close()
    return time.perf_counter() - self._started
