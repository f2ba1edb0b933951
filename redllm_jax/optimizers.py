"""Adafactor and the paper's learning-rate schedules, from optax (gin-configurable).

Pretraining: 2k linear warmup steps to 0.01, cosine decay to 0.1x of the peak.
Finetuning: constant 0.001. The study's budgets use `wsd` (warmup, stable, decay:
the peak held, then a linear cooldown over the last `cooldown_fraction` of the
steps; Hägele et al. 2024, arXiv 2405.18392, find it matches cosine), because a
run's schedule up to its cooldown does not depend on its length: a shorter budget
branches off a longer run's checkpoint and only trains its own cooldown. "Gradient clip 1.0" is global-norm clipping;
Adafactor's own per-update RMS clipping (T5X's choice) is `update_clipping`.
"""
from typing import Optional

import gin
import optax

from redllm_jax.gin_utils import ConfigError

SCHEDULE_KINDS = ("cosine", "wsd", "constant")


@gin.configurable
def learning_rate_schedule(peak: float = 0.01, warmup_steps: int = 2000,
                           decay_steps: int = gin.REQUIRED, kind: str = "cosine",
                           final_fraction: float = 0.1,
                           cooldown_fraction: float = 0.2) -> optax.Schedule:
  """`cosine`: warmup then cosine to final_fraction * peak at decay_steps; `wsd`: warmup,
  the peak until `cooldown_start(decay_steps, cooldown_fraction)`, then linear to
  final_fraction * peak at decay_steps; `constant`."""
  if kind == "constant":
    return optax.constant_schedule(peak)
  if kind == "wsd":
    start = cooldown_start(decay_steps, cooldown_fraction)
    if start < warmup_steps:
      raise ConfigError(f"learning_rate_schedule: the wsd cooldown starts at step {start}, "
                        f"inside the {warmup_steps} warmup steps; train longer or warm up less")
    return optax.join_schedules([
        optax.linear_schedule(0.0, peak, warmup_steps),
        optax.constant_schedule(peak),
        optax.linear_schedule(peak, peak * final_fraction, decay_steps - start)],
        [warmup_steps, start])
  if kind != "cosine":
    raise ConfigError(f"learning_rate_schedule.kind={kind!r}: expected one of "
                      f"{', '.join(SCHEDULE_KINDS)}")
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak, warmup_steps=warmup_steps,
      decay_steps=max(decay_steps, warmup_steps + 1), end_value=peak * final_fraction)


def cooldown_start(steps: int, cooldown_fraction: float) -> int:
  """The step a `wsd` schedule of `steps` starts its cooldown at."""
  return steps - round(cooldown_fraction * steps)


@gin.configurable
def make_optimizer(learning_rate: optax.Schedule = gin.REQUIRED, decay_rate: float = 0.8,
                   global_clip_norm: Optional[float] = 1.0,
                   update_clipping: Optional[float] = None,
                   multiply_by_parameter_scale: bool = True,
                   factored: bool = True) -> optax.GradientTransformation:
  """Global-norm clipping, then Adafactor with factored second moments (decay 0.8)."""
  adafactor = optax.adafactor(
      learning_rate, decay_rate=decay_rate, clipping_threshold=update_clipping,
      multiply_by_parameter_scale=multiply_by_parameter_scale, factored=factored)
  if global_clip_norm is None:
    return adafactor
  return optax.chain(optax.clip_by_global_norm(global_clip_norm), adafactor)
