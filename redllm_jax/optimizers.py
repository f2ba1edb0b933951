"""Adafactor and the paper's learning-rate schedules, from optax (gin-configurable).

Pretraining: 2k linear warmup steps to 0.01, cosine decay to 0.1x of the peak.
Finetuning: constant 0.001. The study's budgets use `wsd` (warmup, stable, decay:
the peak held, then a linear cooldown over the last `cooldown_fraction` of the
steps; Hägele et al. 2024, arXiv 2405.18392, find it matches cosine), because a
run's schedule up to its cooldown does not depend on its length: a shorter budget
branches off a longer run's checkpoint and only trains its own cooldown. "Gradient clip 1.0" is global-norm clipping;
Adafactor's own per-update RMS clipping (T5X's choice) is `update_clipping`.
"""

import functools
from typing import Optional

import flax
import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax

from redllm_jax.errors import ConfigError

SCHEDULE_KINDS = ("cosine", "wsd", "constant")


@flax.struct.dataclass
class Schedule:
  """A learning-rate schedule whose step boundaries are arrays, not constants.

  The jitted train step takes it as an argument, so one compilation serves every
  `wsd` budget (and seed) of a shape: its boundaries (the cooldown's start and end)
  are traced, its kind and rates are static (part of the jit cache key). `cosine`
  keeps its length static (optax's cosine needs a Python int): one compilation a
  length, as before.
  """

  boundaries: jax.Array  # int32 [cooldown start, cooldown end] (wsd)
  kind: str = flax.struct.field(pytree_node=False)
  peak: float = flax.struct.field(pytree_node=False)
  warmup_steps: int = flax.struct.field(pytree_node=False)
  final_fraction: float = flax.struct.field(pytree_node=False)
  cosine_steps: int = flax.struct.field(pytree_node=False, default=0)

  def __call__(self, count: jax.Array) -> jax.Array:
    if self.kind == "constant":
      return optax.constant_schedule(self.peak)(count)
    if self.kind == "cosine":
      return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=self.peak,
        warmup_steps=self.warmup_steps,
        decay_steps=self.cosine_steps,
        end_value=self.peak * self.final_fraction,
      )(count)
    start, end = self.boundaries[0], self.boundaries[1]
    return optax.join_schedules(
      [
        optax.linear_schedule(0.0, self.peak, self.warmup_steps),
        optax.constant_schedule(self.peak),
        functools.partial(_cooldown, self.peak, self.peak * self.final_fraction, end - start),
      ],
      [self.warmup_steps, start],
    )(count)


def _cooldown(peak: float, end_value: float, steps: jax.Array, count: jax.Array) -> jax.Array:
  """optax.linear_schedule(peak, end_value, steps)(count) for a traced `steps` (optax
  tests `steps <= 0` in Python), term by term: the same float32 operations."""
  fraction = 1 - jnp.clip(count, 0, steps) / jnp.maximum(steps, 1)
  return jnp.where(steps > 0, (peak - end_value) * fraction + end_value, peak)


@gin.configurable
def learning_rate_schedule(
  peak: float = 0.01,
  warmup_steps: int = 2000,
  decay_steps: int = gin.REQUIRED,
  kind: str = "cosine",
  final_fraction: float = 0.1,
  cooldown_fraction: float = 0.2,
) -> Schedule:
  """`cosine`: warmup then cosine to final_fraction * peak at decay_steps; `wsd`: warmup,
  the peak until `cooldown_start(decay_steps, cooldown_fraction)`, then linear to
  final_fraction * peak at decay_steps; `constant`."""
  if kind not in SCHEDULE_KINDS:
    raise ConfigError(
      f"learning_rate_schedule.kind={kind!r}: expected one of {', '.join(SCHEDULE_KINDS)}"
    )
  start = cooldown_start(decay_steps, cooldown_fraction) if kind == "wsd" else 0
  if kind == "wsd" and start < warmup_steps:
    raise ConfigError(
      f"learning_rate_schedule: the wsd cooldown starts at step {start}, "
      f"inside the {warmup_steps} warmup steps; train longer or warm up less"
    )
  return Schedule(
    boundaries=np.array([start, decay_steps], np.int32),
    kind=kind,
    peak=peak,
    warmup_steps=warmup_steps,
    final_fraction=final_fraction,
    cosine_steps=max(decay_steps, warmup_steps + 1) if kind == "cosine" else 0,
  )


def cooldown_start(steps: int, cooldown_fraction: float) -> int:
  """The step a `wsd` schedule of `steps` starts its cooldown at."""
  return steps - round(cooldown_fraction * steps)


@gin.configurable
def make_optimizer(
  learning_rate: Schedule = gin.REQUIRED,
  decay_rate: float = 0.8,
  global_clip_norm: Optional[float] = 1.0,
  update_clipping: Optional[float] = None,
  multiply_by_parameter_scale: bool = True,
  factored: bool = True,
) -> optax.GradientTransformation:
  """Global-norm clipping, then Adafactor with factored second moments (decay 0.8)."""
  adafactor = optax.adafactor(
    learning_rate,
    decay_rate=decay_rate,
    clipping_threshold=update_clipping,
    multiply_by_parameter_scale=multiply_by_parameter_scale,
    factored=factored,
  )
  if global_clip_norm is None:
    return adafactor
  return optax.chain(optax.clip_by_global_norm(global_clip_norm), adafactor)
