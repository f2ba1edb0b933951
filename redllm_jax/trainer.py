"""The trainer: the sharded train and eval steps, and the loop around them.

One jitted train step accumulates gradients over microbatches (`lax.scan`), so a
global batch of 2048 runs on fewer devices, normalises by the batch's target-token
count, clips and applies Adafactor. The loop feeds host-local batches into global
arrays, logs metrics, evaluates, checkpoints, and stops cleanly on SIGTERM or a
non-finite loss.
"""

import dataclasses
import math
import signal
import time
from typing import Any, Callable, Iterator, Mapping

from absl import logging
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from redllm_jax import flops
from redllm_jax.models import BaseModel, summarize_metrics
from redllm_jax.optimizers import Schedule, learning_rate_schedule
from redllm_jax.errors import TrainingError
from redllm_jax.partitioning import Partitioner, optimizer_state_specs

Batch = Mapping[str, np.ndarray]


def token_features(features: Mapping[str, Any]) -> dict[str, Any]:
  """The features whose tokens a run counts (tokens per step, tok/s): every `*_tokens`
  feature but the decoder inputs, which repeat the targets shifted."""
  return {
    k: v for k, v in features.items() if k.endswith("_tokens") and k != "decoder_input_tokens"
  }


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


def _split_microbatches(batch: Mapping[str, jax.Array], count: int) -> dict[str, jax.Array]:
  """[B, ...] -> [count, B / count, ...], microbatch j = examples j, j + count, ...

  Strided rather than contiguous, so each microbatch spans every data shard.
  """
  return {
    k: jnp.swapaxes(v.reshape(v.shape[0] // count, count, *v.shape[1:]), 0, 1)
    for k, v in batch.items()
  }


OptimizerFor = Callable[[Schedule], optax.GradientTransformation]


def make_train_step(
  model: BaseModel, optimizer_for: OptimizerFor, num_microbatches: int = 1
) -> Callable:
  """(state, batch, rng, schedule) -> (state, metrics). Dropout keys derive from (rng, step).

  The optimizer is built inside the step from its `schedule` argument
  (`optimizers.Schedule`): the run's length is an input of the compiled step, not
  a constant in it.
  """
  grad_fn = jax.value_and_grad(model.loss_fn, has_aux=True)

  def grads_and_sums(params, batch, rng):
    (_, sums), grads = grad_fn(params, batch, rng)
    return grads, sums

  def train_step(state: TrainState, batch, rng, schedule: Schedule):
    rng = jax.random.fold_in(rng, state.step)
    if num_microbatches == 1:
      grads, sums = grads_and_sums(state.params, batch, rng)
    else:

      def accumulate(total, xs):
        micro, index = xs
        step_total = grads_and_sums(state.params, micro, jax.random.fold_in(rng, index))
        return jax.tree.map(jnp.add, total, step_total), None

      zero = jax.eval_shape(
        grads_and_sums,
        state.params,
        jax.tree.map(lambda x: x[0], _split_microbatches(batch, num_microbatches)),
        rng,
      )
      zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zero)
      (grads, sums), _ = jax.lax.scan(
        accumulate,
        zero,
        (_split_microbatches(batch, num_microbatches), jnp.arange(num_microbatches)),
      )
    # Per-token mean over the whole global batch, however it was split.
    grads = jax.tree.map(lambda g: g / jnp.maximum(sums["num_tokens"], 1.0), grads)
    updates, opt_state = optimizer_for(schedule).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = summarize_metrics(sums)
    metrics.update(grad_norm=optax.global_norm(grads), learning_rate=schedule(state.step))
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step


_PLACEHOLDER_SCHEDULE = learning_rate_schedule(peak=0.0, decay_steps=1, kind="constant")


@dataclasses.dataclass
class CompiledSteps:
  """The sharded, jitted steps of one run and what they need to be fed."""

  partitioner: Partitioner
  state_shardings: TrainState
  abstract_state: TrainState
  init: Callable[[jax.Array], TrainState]
  start_from: Callable[[Any], TrainState]  # params -> step 0 with a fresh optimizer state
  train: Callable[[TrainState, Any, jax.Array, Schedule], tuple[TrainState, dict]]
  eval: Callable[[Any, Any], dict]


def compile_steps(
  model: BaseModel, optimizer_for: OptimizerFor, partitioner: Partitioner, num_microbatches: int = 1
) -> CompiledSteps:
  """Shardings from the logical axis names, and jitted init/train/eval steps.

  `optimizer_for(schedule)` is the optimizer of a learning-rate schedule: its state
  does not depend on the schedule, so init builds it with a placeholder one.
  """
  optimizer = optimizer_for(_PLACEHOLDER_SCHEDULE)
  param_specs = model.param_axes()
  abstract_params = model.abstract_params()
  abstract_opt = jax.eval_shape(optimizer.init, abstract_params)
  opt_specs = optimizer_state_specs(abstract_opt, param_specs, abstract_params)
  specs = TrainState(step=jax.sharding.PartitionSpec(), params=param_specs, opt_state=opt_specs)
  shardings = partitioner.shardings(specs)
  abstract = TrainState(
    step=jax.ShapeDtypeStruct((), jnp.int32), params=abstract_params, opt_state=abstract_opt
  )
  abstract = jax.tree.map(
    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
  )

  def start_from(params):
    return TrainState(step=jnp.int32(0), params=params, opt_state=optimizer.init(params))

  def init(rng):
    return start_from(model.init_fn(rng))

  train_step = make_train_step(model, optimizer_for, num_microbatches)
  with partitioner.context():
    jitted_init = jax.jit(init, out_shardings=shardings)
    jitted_start_from = jax.jit(
      start_from, in_shardings=(shardings.params,), out_shardings=shardings
    )
    jitted_train = jax.jit(
      train_step,
      in_shardings=(shardings, None, None, None),
      out_shardings=(shardings, None),
      donate_argnums=0,
    )
  return CompiledSteps(
    partitioner,
    shardings,
    abstract,
    _in(partitioner, jitted_init),
    _in(partitioner, jitted_start_from),
    _in(partitioner, jitted_train),
    compile_eval_step(model, partitioner, shardings.params),
  )


def compile_eval_step(
  model: BaseModel, partitioner: Partitioner, param_shardings: Any
) -> Callable[[Any, Any], dict]:
  """(params, global batch) -> {prefix: metric sums}: the model's eval metrics, sharded.

  Training's periodic eval and the eval command share it.
  """
  with partitioner.context():
    jitted = jax.jit(model.eval_metric_sums, in_shardings=(param_shardings, None))
  return _in(partitioner, jitted)


def _in(partitioner: Partitioner, fn: Callable) -> Callable:
  """Runs `fn` (and its first-call tracing) inside the mesh and rules context."""

  def wrapped(*args):
    with partitioner.context():
      return fn(*args)

  def lower(*args):
    """AOT: `steps.train.lower(*abstract_args).compile()` (e.g. ShapeDtypeStructs)."""
    with partitioner.context():
      return fn.lower(*args)

  wrapped.lower = lower
  return wrapped


def model_flops_per_batch(model: BaseModel, batch: Batch) -> float:
  """Training FLOPs of one global batch, from the FLOPs accounting (no remat credit)."""
  batch_size, targets = batch["decoder_target_tokens"].shape
  inputs = batch["encoder_input_tokens"].shape[1] if "encoder_input_tokens" in batch else 0
  return batch_size * flops.training_flops(model.config, model.architecture, inputs, targets)


class PreemptionGuard:
  """Turns SIGTERM into a flag that the loop checks between steps.

  Processes must stop at the same step. Their flags are OR-ed by a small
  all-reduce on the devices, dispatched after each step and read one step later:
  the host never waits for the step it has just dispatched, and every process
  reads the same answer, so all stop (and save) one step after the signal.
  """

  def __init__(self, mesh: jax.sharding.Mesh):
    self.requested = False
    self._previous = signal.signal(signal.SIGTERM, self._handle)
    self._pending = None
    self._flags = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(mesh.axis_names))
    self._any = jax.jit(
      jnp.any, out_shardings=jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    )

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def should_stop(self) -> bool:
    if jax.process_count() == 1:
      return self.requested
    local = np.full((len(self._flags.addressable_devices),), self.requested)
    current = self._any(jax.make_array_from_process_local_data(self._flags, local))
    previous, self._pending = self._pending, current
    return previous is not None and bool(previous)

  def restore(self) -> None:
    signal.signal(signal.SIGTERM, self._previous)


def check_finite(step: int, metrics: Mapping[str, float]) -> None:
  for name in ("loss", "grad_norm"):
    if not math.isfinite(metrics[name]):
      raise TrainingError(
        f"non-finite {name} ({metrics[name]}) at step {step}; stopping "
        "without saving this step (the last good checkpoint is kept)"
      )


class PendingMetrics:
  """Step metrics left on the device until they are needed, so that steps pipeline.

  Reading a step's loss back every step would make the host wait for each step
  before dispatching the next. They are read together (`drain`) when the loop
  logs, evaluates or saves: every step since the last read is checked for a
  non-finite loss first, so no non-finite state is ever saved or evaluated.
  Times and rates are averages over the steps since the last read.
  """

  def __init__(self):
    self._steps: list[tuple[int, Any, int, float]] = []
    self._since = time.perf_counter()

  def add(self, step: int, metrics: Any, tokens: int, model_flops: float) -> None:
    self._steps.append((step, metrics, tokens, model_flops))

  def drain(self) -> dict[str, float]:
    """The newest step's metrics, after checking every pending step (TrainingError)."""
    values = jax.device_get([metrics for _, metrics, _, _ in self._steps])
    for (step, _, _, _), row in zip(self._steps, values):
      check_finite(step, {k: float(v) for k, v in row.items()})
    now = time.perf_counter()
    seconds = now - self._since
    latest = {k: float(v) for k, v in values[-1].items()}
    latest.update(
      step_time=seconds / len(self._steps),
      tokens_per_second=sum(s[2] for s in self._steps) / seconds,
      model_flops_per_second=sum(s[3] for s in self._steps) / seconds,
    )
    self._steps, self._since = [], now
    return latest


def evaluate(
  eval_step: Callable[[Any, Any], dict],
  partitioner: Partitioner,
  params: Any,
  eval_batches: Mapping[str, Callable[[], Iterator[Batch]]],
) -> dict[str, float]:
  """Per-token metrics of each eval task, as {"<task>/<metric>": value}."""
  results = {}
  for task, make_iterator in eval_batches.items():
    total = None
    for local in make_iterator():
      sums = eval_step(params, partitioner.global_batch(local))
      total = sums if total is None else jax.tree.map(jnp.add, total, sums)
    for prefix, sums in (total or {}).items():
      for name, value in summarize_metrics(sums).items():
        results[f"{task}/{prefix}{name}"] = float(value)
  return results


class Phases:
  """Wall-clock seconds of a run's phases, for one summary line at its end.

  `lap(name)` adds the seconds since the previous lap to `name`: the phases are
  consecutive stretches of the run, so they add up to its whole time.
  """

  def __init__(self):
    self.seconds: dict[str, float] = {}
    self._last = time.perf_counter()

  def lap(self, name: str) -> None:
    now = time.perf_counter()
    self.seconds[name] = self.seconds.get(name, 0.0) + now - self._last
    self._last = now

  def summary(self) -> str:
    return "phases: " + ", ".join(f"{name} {s:.1f} s" for name, s in self.seconds.items())


@dataclasses.dataclass
class LoopConfig:
  train_steps: int
  log_every: int = 10
  eval_every: int = 0  # 0: only at the end.
  seed: int = 0


def train_loop(
  model: BaseModel,
  steps: CompiledSteps,
  state: TrainState,
  train_batches: Iterator[Batch],
  checkpointer,
  meta: dict,
  writer,
  eval_batches: Mapping[str, Callable[[], Iterator[Batch]]],
  cfg: LoopConfig,
  schedule: Schedule,
  phases: Phases,
) -> tuple[TrainState, dict[str, float]]:
  """Runs from `state.step` to `cfg.train_steps`; returns the state and final eval metrics.

  `phases` gets the first batch (the input pipeline's start), the compile, the steps,
  the final evaluation and the wait for the last checkpoint.
  """
  start_step = int(state.step)
  rng = jax.random.key(cfg.seed)
  guard = PreemptionGuard(steps.partitioner.mesh)
  is_chief = jax.process_index() == 0
  bar = tqdm.tqdm(
    total=cfg.train_steps,
    initial=start_step,
    disable=not is_chief,
    dynamic_ncols=True,
    desc="train",
  )
  pending = PendingMetrics()
  try:
    for step in range(start_step + 1, cfg.train_steps + 1):
      local = next(train_batches)
      compiling = step == start_step + 1
      if compiling:
        phases.lap("first batch")
        if is_chief:
          bar.write("compiling the train step...")
      state, metrics = steps.train(state, steps.partitioner.global_batch(local), rng, schedule)
      if compiling:  # The first call returns once compiled (it runs async).
        phases.lap("compile")
        if is_chief:
          bar.write(f"compiled in {phases.seconds['compile']:.1f} s")
      tokens = sum(v.size for v in token_features(local).values()) * jax.process_count()
      pending.add(step, metrics, tokens, model_flops_per_batch(model, local) * jax.process_count())
      bar.update(1)
      preempted = guard.should_stop()
      last = step == cfg.train_steps
      log = step % cfg.log_every == 0 or last
      evaluate_now = cfg.eval_every and step % cfg.eval_every == 0 and not last
      if log or evaluate_now or checkpointer.due(step, force=preempted or last):
        metrics = pending.drain()  # Waits for the step; raises before a non-finite save.
        bar.set_postfix(loss=f"{metrics['loss']:.3f}", tok_s=f"{metrics['tokens_per_second']:.0f}")
        if log:
          writer.write_scalars(step, metrics)
      if evaluate_now:
        writer.write_scalars(
          step, evaluate(steps.eval, steps.partitioner, state.params, eval_batches)
        )
      checkpointer.save(
        step, state.params, state.opt_state, meta, train_batches, force=preempted or last
      )
      if preempted:
        logging.warning("SIGTERM: saved a checkpoint at step %d; exiting", step)
        bar.write(f"preempted: checkpoint saved at step {step}")
        phases.lap("steps")
        return state, {}
    phases.lap("steps")
    results = evaluate(steps.eval, steps.partitioner, state.params, eval_batches)
    if results:
      writer.write_scalars(cfg.train_steps, results)
    phases.lap("eval")
    return state, results
  finally:
    bar.close()
    guard.restore()
    checkpointer.wait()
    writer.flush()
    phases.lap("save")
