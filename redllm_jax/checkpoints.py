"""Checkpoints: orbax CheckpointManager for the train state, plus each process's input position.

Layout under MODEL_DIR:
  checkpoints/<step>/{params, opt_state, meta}   orbax items (async, keep last K)
  input_positions/<step>/shard_<j>*              tf.data iterator position per input shard

`meta` records the architecture and network config, so a finetune or eval run
refuses a checkpoint of the other architecture with one line; the vocabulary its
tasks tokenized with (path and sha256, with a copy in MODEL_DIR/vocabulary/, kept
and checked by `data.vocabulary`); and a checksum of
every saved array, computed on device, so changed bytes are caught on restore
(orbax itself verifies nothing). Restoring walks back from the newest step: an
unreadable checkpoint (corrupt, partial, empty; orbax already ignores
uncommitted temporary directories) is named in a one-line warning and moved to
MODEL_DIR/corrupt_checkpoints/, so it never takes a keep slot and its step is
saved again when the run gets there. When checkpoints exist but none is
readable, the run stops with one line (exit 2) unless told to restart, and leaves
MODEL_DIR/UNREADABLE_CHECKPOINTS (the tombstone) holding that line: every later run
stops with it until a good checkpoint is copied back into checkpoints/ or the run
is restarted on purpose.

A save that fails (read-only folder, full disk, no permission) is a
CheckpointSaveError naming the step and the reason, raised where the save is
started or awaited; orbax's own error logs of that save (tracebacks from its
background threads) are held back, as the one line says it all.
"""

import errno
import json
import logging as std_logging
import os
import shutil
import sys
import time
from typing import Any, Optional, Sequence

from absl import logging
from etils import epath
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as preservation

from redllm_jax import models
from redllm_jax.errors import ConfigError
from redllm_jax.models import BaseModel

ITEMS = ("params", "opt_state", "meta")
VOCABULARY_DIR = "vocabulary"  # under MODEL_DIR
TOMBSTONE = "UNREADABLE_CHECKPOINTS"  # under MODEL_DIR, beside corrupt_checkpoints/


ON_UNREADABLE = ("fail", "restart")


class UnreadableCheckpointsError(ConfigError):
  """MODEL_DIR holds checkpoints and none can be restored (or a tombstone says so)."""


class CheckpointSaveError(Exception):
  """A checkpoint could not be written: one line, exit 2 (the run resumes once fixed)."""

  def __init__(self, step: int, directory: str, error: BaseException):
    super().__init__(f"could not save step {step} to {directory}: {_save_reason(error)}")
    self.step = step


# Storage faults as the OS words them; TensorFlow's and TensorStore's errors only
# carry these words inside their own text.
_STORAGE_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EIO)


def _save_reason(error: BaseException) -> str:
  """The OS's words for the first OSError in the chain (e.g. "Read-only file system"),
  or for a storage fault named in the error's text, else the error's first line."""
  seen = error
  while seen is not None:
    if isinstance(seen, OSError) and seen.errno:
      return os.strerror(seen.errno)
    seen = seen.__cause__ or seen.__context__
  text = str(error)
  for code in _STORAGE_ERRNOS:
    if os.strerror(code) in text:
      return os.strerror(code)
  return _first_line(error)


class CorruptCheckpointError(Exception):
  """A restored array differs from the checksum recorded when it was saved."""


def _bits(x: jax.Array) -> jax.Array:
  """The raw bits of every element as uint32 (sub-word types are widened)."""
  width = x.dtype.itemsize * 8
  if x.dtype == jnp.bool_:
    return x.astype(jnp.uint32)
  return jax.lax.bitcast_convert_type(x, jnp.dtype(f"uint{width}")).astype(jnp.uint32)


@jax.jit
def _checksums(tree: Any) -> Any:
  """Per array: (sum of its bits, sum of its bits times odd position weights), mod 2^32.

  Any single flipped bit changes both sums (odd weights keep every bit's
  contribution non-zero mod 2^32); a swap of values changes the weighted one.
  Computed where the (sharded) arrays live, one pass, no host copy.
  """

  def one(x):
    bits = _bits(x).reshape(-1)
    weights = jnp.arange(bits.size, dtype=jnp.uint32) * jnp.uint32(2) + jnp.uint32(1)
    return jnp.stack([jnp.sum(bits, dtype=jnp.uint32), jnp.sum(bits * weights, dtype=jnp.uint32)])

  return jax.tree.map(one, tree)


def checksums(items: dict[str, Any]) -> dict[str, list[int]]:
  """{"params/decoder/...": [sum, weighted sum]} of every array in `items`."""
  flat = jax.tree_util.tree_flatten_with_path(jax.device_get(_checksums(items)))[0]
  return {
    jax.tree_util.keystr(path, simple=True, separator="/"): [int(v) for v in np.asarray(c)]
    for path, c in flat
  }


def verify(items: dict[str, Any], recorded: Optional[dict[str, list[int]]]) -> None:
  """Raises CorruptCheckpointError naming the first array of `items` whose checksum
  differs from `recorded` (which may hold more arrays, e.g. the optimizer state's)."""
  if recorded is None:  # Saved before checksums were recorded: nothing to check.
    return
  for name, value in checksums(items).items():
    if recorded.get(name) != value:
      raise CorruptCheckpointError(f"array {name} does not match its checksum")


class Checkpointer:
  """Saves every `save_every` steps (asynchronously), keeps the last `keep`, and also
  saves and keeps for good each step of `keep_steps` (shorter budgets branch there).

  `on_unreadable` says what to do when checkpoints exist but none is readable:
  "fail" (one line, exit 2) or "restart" (move them aside, start from step 0).
  """

  def __init__(
    self,
    model_dir: str,
    save_every: int,
    keep: Optional[int] = 3,
    async_save: bool = True,
    on_unreadable: str = "fail",
    keep_steps: Sequence[int] = (),
  ):
    if on_unreadable not in ON_UNREADABLE:
      raise ConfigError(f"on_unreadable={on_unreadable!r}: expected one of {ON_UNREADABLE}")
    self.on_unreadable = on_unreadable
    self.model_dir = _absolute(model_dir)
    # Set when restore_latest starts over from step 0 over unreadable checkpoints.
    self.restarted = False
    self._saving: Optional[int] = None  # The step whose save may still be in flight.
    self._failed = False
    self._orbax_errors = _OrbaxErrorLog()
    keeping = [preservation.LatestN(keep)]
    if keep_steps:
      keeping.append(preservation.CustomSteps(list(keep_steps)))
    self.manager = ocp.CheckpointManager(
      self.model_dir / "checkpoints",
      item_names=ITEMS,
      options=ocp.CheckpointManagerOptions(
        # orbax's default saving: these steps, the first and a preemption's.
        save_interval_steps=save_every,
        save_on_steps=frozenset(keep_steps),
        preservation_policy=preservation.AnyPreservationPolicy(keeping),
        enable_async_checkpointing=async_save,
        create=True,
      ),
    )

  def _input_dir(self, step: int) -> str:
    return os.fspath(self.model_dir / "input_positions" / str(step))

  def due(self, step: int, force: bool = False) -> bool:
    """Whether `save(step, ..., force=force)` would write a checkpoint."""
    return force or self.manager.should_save(step)

  def save(
    self,
    step: int,
    params: Any,
    opt_state: Any,
    meta: dict[str, Any],
    input_iterator=None,
    force: bool = False,
  ) -> bool:
    """Writes step `step` if due (or forced); the input position is written first."""
    if not self.due(step, force):
      return False
    self._await_previous_save()
    self._probe_writable(step)
    meta = dict(meta, checksums=checksums({"params": params, "opt_state": opt_state}))
    try:
      if input_iterator is not None:
        input_iterator.save(self._input_dir(step))
      self._saving = step
      saved = self.manager.save(
        step,
        force=force,
        args=ocp.args.Composite(
          params=ocp.args.StandardSave(params),
          opt_state=ocp.args.StandardSave(opt_state),
          meta=ocp.args.JsonSave(meta),
        ),
      )
    except Exception as e:  # pylint: disable=broad-except  # any failure to write
      raise self._failure(step, e) from None
    return saved

  def _failure(self, step: int, error: BaseException) -> CheckpointSaveError:
    self._failed = True
    return CheckpointSaveError(step, os.fspath(self.model_dir / "checkpoints"), error)

  def _await_previous_save(self) -> None:
    """Waits for the save in flight; its failure is a CheckpointSaveError naming its step."""
    if self._saving is None:
      return
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      raise self._failure(self._saving, e) from None
    self._saving = None
    self._drop_stale_input_positions()

  def _probe_writable(self, step: int) -> None:
    """Creates and removes a folder where orbax will create the step's.

    Orbax creates the step folder in a background thread, and when that fails its
    other save threads wait on a signal that never comes (the multihost
    coordination timeout, minutes) before the save reports anything. A read-only
    or unwritable checkpoints/ is caught here first, at once.
    """
    root = self.model_dir / "checkpoints"
    if "://" in os.fspath(root) or jax.process_index() != 0:
      return
    probe = os.path.join(os.fspath(root), f".write_probe.{os.getpid()}")
    try:
      os.makedirs(probe, exist_ok=True)
      os.rmdir(probe)
    except OSError as e:
      raise self._failure(step, e) from None

  def last_saved_step(self) -> Optional[int]:
    """After a failed save: the newest step whose checkpoint is complete on disk, the
    one a rerun resumes from (None if there is none)."""
    self.manager.reload()
    return max((s for s in self.manager.all_steps() if s != self._saving), default=None)

  def _drop_stale_input_positions(self) -> None:
    """Removes the input positions of steps whose checkpoint folder is gone.

    Called with no save in flight. It reads the folder, not orbax's step list: when
    a save starts, orbax drops the step it will replace from `all_steps()` at once but
    deletes its folder only once the new save is committed. Until then (a kill) that
    older checkpoint is the one a rerun resumes from, and it needs its input position.
    """
    root = self.model_dir / "input_positions"
    if jax.process_index() != 0 or not root.exists():
      return
    saved = {p.name for p in (self.model_dir / "checkpoints").iterdir() if p.name.isdigit()}
    for folder in root.iterdir():
      if folder.name.isdigit() and folder.name not in saved:
        folder.rmtree(missing_ok=True)

  def restore_latest(
    self, abstract_params: Any, abstract_opt_state: Any, meta: dict[str, Any], input_iterator=None
  ) -> Optional[tuple[Any, Any, int]]:
    """(params, opt_state, step) of the newest readable checkpoint; None if there is none.

    Unreadable checkpoints are moved aside on the way. If there were checkpoints
    and none was readable: UnreadableCheckpointsError, or with "restart", None.
    """
    tombstone = self.model_dir / TOMBSTONE
    if tombstone.exists() and not self.manager.all_steps():
      # Nothing was copied back since every checkpoint was found unreadable.
      if self.on_unreadable == "fail":
        raise UnreadableCheckpointsError(json.loads(tombstone.read_text())["error"])
      self.restarted = True
      return None
    reasons = []
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        restored = self.manager.restore(
          step,
          args=ocp.args.Composite(
            params=ocp.args.StandardRestore(abstract_params),
            opt_state=ocp.args.StandardRestore(abstract_opt_state),
            meta=ocp.args.JsonRestore(),
          ),
        )
        _check_meta(restored.meta, meta, f"checkpoint step {step}")
        verify(
          {"params": restored.params, "opt_state": restored.opt_state},
          restored.meta.get("checksums"),
        )
        if input_iterator is not None:
          input_iterator.restore(self._input_dir(step))
        self.clear_tombstone()  # A good checkpoint was copied back.
        return restored.params, restored.opt_state, step
      except ConfigError:
        raise
      except Exception as e:  # pylint: disable=broad-except
        _quiet_orphaned_reads()
        reason = _first_line(e)
        logging.warning(
          "checkpoint at step %d is unreadable (%s); moved to %s, trying an older one",
          step,
          reason,
          self._corrupt_dir(),
        )
        reasons.append(f"step {step}: {reason}")
        self._move_aside(step)
    if reasons and self.on_unreadable == "fail":
      message = (
        f"no readable checkpoint in {self.model_dir} ({'; '.join(reasons)}); they were "
        f"moved to {self._corrupt_dir()}. Copy a good one back into "
        f"{self.model_dir / 'checkpoints'}, or start over with "
        '--gin.train.train.on_unreadable="restart" (metrics.jsonl is kept under a '
        "new name)"
      )
      if jax.process_index() == 0:
        tombstone.write_text(json.dumps({"error": message}) + "\n")
      raise UnreadableCheckpointsError(message)
    self.restarted = bool(reasons) or tombstone.exists()
    return None

  def clear_tombstone(self) -> None:
    """Removes MODEL_DIR's tombstone: the run restarted on purpose or resumed again."""
    if jax.process_index() == 0:
      (self.model_dir / TOMBSTONE).unlink(missing_ok=True)

  def _corrupt_dir(self) -> epath.Path:
    return self.model_dir / "corrupt_checkpoints"

  def _move_aside(self, step: int) -> None:
    """Moves checkpoint `step` (and its input positions) out of the manager's sight."""
    if jax.process_index() == 0:
      stamp = time.strftime("%Y%m%d-%H%M%S")
      for kind in ("checkpoints", "input_positions"):
        source = self.model_dir / kind / str(step)
        if source.exists():
          target = self._corrupt_dir() / f"{kind}-{step}-{stamp}"
          target.parent.mkdir(parents=True, exist_ok=True)
          source.rename(target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"moved aside checkpoint {step}")
    self.manager.reload()

  def wait(self) -> None:
    """Waits for the save in flight (CheckpointSaveError if it failed)."""
    if not self._failed:
      self._await_previous_save()

  def close(self) -> None:
    """Waits for the save in flight and closes the manager (not after a failed save: its
    threads may wait minutes for a folder that was never made)."""
    try:
      if not self._failed:
        self._await_previous_save()
        self.manager.close()
    finally:
      self._orbax_errors.release(emit=not self._failed)


class _OrbaxErrorLog(std_logging.Filter):
  """Holds back orbax's error logs (with their tracebacks) while the Checkpointer lives.

  A failed save makes orbax's background threads log one traceback each; the
  CheckpointSaveError raised where the save is awaited says it in one line, so
  they are dropped then. Otherwise they are printed, one line each, on close.
  """

  def __init__(self):
    super().__init__()
    self._held: list[str] = []
    self._handler = logging.get_absl_handler()
    self._handler.addFilter(self)

  def filter(self, record: std_logging.LogRecord) -> bool:
    if record.levelno >= std_logging.ERROR and f"{os.sep}orbax{os.sep}" in record.pathname:
      self._held.append(record.getMessage().splitlines()[0][:300])
      return False
    return True

  def release(self, emit: bool) -> None:
    self._handler.removeFilter(self)
    for message in self._held if emit else ():
      logging.warning("orbax: %s", message)
    self._held = []


def _quiet_orphaned_reads() -> None:
  """Drops the "Event loop is closed" tracebacks of a failed restore's leftover reads.

  When one array of a restore fails, orbax raises while TensorStore still has
  reads of the other arrays in flight; their completion callbacks later find
  the restore's event loop closed, and the abandoned read coroutines raise when
  collected. Both reach sys.unraisablehook, and reads that failed too reach
  asyncio's "exception was never retrieved" log: one traceback each, which bury
  the one-line warning. Any other unraisable exception or asyncio error is still
  reported.
  """
  if getattr(sys.unraisablehook, "quiets_orphaned_reads", False):
    return
  std_logging.getLogger("asyncio").addFilter(
    lambda record: (
      not (
        "was never retrieved" in record.getMessage()
        and "reading array index" in record.getMessage()
      )
    )
  )
  previous = sys.unraisablehook

  def hook(unraisable):
    closed_loop = (
      isinstance(unraisable.exc_value, RuntimeError)
      and str(unraisable.exc_value) == "Event loop is closed"
    )
    abandoned_read = "_read_array_index" in repr(unraisable.object)  # orbax's read coroutine
    if not (closed_loop or abandoned_read):
      previous(unraisable)

  hook.quiets_orphaned_reads = True
  sys.unraisablehook = hook


def _first_line(error: BaseException) -> str:
  """The gist of an error; TensorStore's multi-line spec dump after it is dropped."""
  text = str(error).strip().split(" See full TensorStore details")[0]
  return text.splitlines()[0][:200] if text else type(error).__name__


def check_same_vocabulary(
  found: Optional[dict[str, str]], expected: Optional[dict[str, str]], where: str
) -> None:
  """A ConfigError when both records exist and their files' bytes differ."""
  if found and expected and found["sha256"] != expected["sha256"]:
    raise ConfigError(
      f"{where} was trained with the vocabulary {found['path']}, but this run's tasks use "
      f"{expected['path']} (sha256 differs); use the same vocabulary or a new MODEL_DIR"
    )


def _check_meta(found: dict[str, Any], expected: dict[str, Any], where: str) -> None:
  check_same_vocabulary(found.get("vocabulary"), expected.get("vocabulary"), where)
  if found.get("architecture") != expected["architecture"]:
    raise ConfigError(
      f"{where} holds a {found.get('architecture')} model, but the gin builds "
      f"a {expected['architecture']} model"
    )
  if found.get("config") != expected["config"]:
    diff = sorted(
      k for k in expected["config"] if found.get("config", {}).get(k) != expected["config"][k]
    )
    logging.warning("%s was saved with a different network config (%s)", where, ", ".join(diff))


def _absolute(path: str) -> epath.Path:
  """Orbax wants absolute paths; gs:// and other URLs already are."""
  return epath.Path(path if "://" in str(path) else os.path.abspath(path))


def _locate(path: str) -> tuple[epath.Path, Optional[int]]:
  """MODEL_DIR, MODEL_DIR/checkpoints or MODEL_DIR/checkpoints/<step> -> (root, step)."""
  path = _absolute(path)
  if not path.exists():
    raise ConfigError(f"checkpoint path does not exist: {path}")
  if (path / "checkpoints").is_dir():
    return path / "checkpoints", None
  if path.name.isdigit() and (path / "params").exists():
    return path.parent, int(path.name)
  return path, None


def branch(source_dir: str, step: int, target_dir: str) -> None:
  """Starts the run in `target_dir` from `source_dir`'s checkpoint at `step`.

  Copies that step's parameters, optimizer state and input position, and the
  recorded vocabulary, so that training in `target_dir` resumes at `step` exactly
  where the source run was: with a schedule equal to the source's up to `step`
  (e.g. a shorter `wsd` budget), the branch is the source run with another ending.
  Staged under a temporary name and renamed, so a kill never leaves half a branch;
  a target that already has checkpoints (a branch resumed) is left as it is. Local
  directories only.
  """
  source, target = _absolute(source_dir), _absolute(target_dir)
  if (target / "checkpoints").exists():
    return
  if step not in _read_only_manager(source / "checkpoints").all_steps():
    raise ConfigError(f"{source_dir} has no checkpoint at step {step} to branch from")
  if jax.process_index() == 0:
    staging = target.parent / f"{target.name}.branching"
    shutil.rmtree(staging, ignore_errors=True)
    for kind in ("checkpoints", "input_positions"):
      shutil.copytree(source / kind / str(step), staging / kind / str(step))
    if (source / VOCABULARY_DIR).exists():
      shutil.copytree(source / VOCABULARY_DIR, staging / VOCABULARY_DIR)
    target.mkdir(parents=True, exist_ok=True)
    # Checkpoints last: their presence is what says the branch is complete (what an
    # earlier, killed attempt moved before them is replaced).
    for name in (VOCABULARY_DIR, "input_positions", "checkpoints"):
      if (staging / name).exists():
        shutil.rmtree(target / name, ignore_errors=True)
        (staging / name).rename(target / name)
    staging.rmdir()
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"branched {target_dir}")


def _read_only_manager(root: epath.Path) -> ocp.CheckpointManager:
  # Orbax warns that a read-only manager's directory is read-only: we asked for it.
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    return ocp.CheckpointManager(
      root, item_names=ITEMS, options=ocp.CheckpointManagerOptions(read_only=True)
    )
  finally:
    logging.set_verbosity(verbosity)


def checkpoint_step(checkpoint_path: str) -> int:
  """The step that `load_params(checkpoint_path, ...)` restores (the newest unless named)."""
  root, step = _locate(checkpoint_path)
  if step is None:
    step = _read_only_manager(root).latest_step()
  if step is None:
    raise ConfigError(f"no checkpoint found under {checkpoint_path}")
  return step


def _open(checkpoint_path: str) -> tuple[ocp.CheckpointManager, int, dict[str, Any]]:
  """A read-only manager over the checkpoint, the step to restore and its `meta`."""
  step = checkpoint_step(checkpoint_path)
  manager = _read_only_manager(_locate(checkpoint_path)[0])
  meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
  return manager, step, meta


def load_model(checkpoint_path: str, override: Optional[BaseModel] = None) -> BaseModel:
  """The model a checkpoint describes (its `meta`), or `override` (a model gin's) once
  checked against it: another architecture or config is a one-line ConfigError."""
  manager, step, meta = _open(checkpoint_path)
  manager.close()
  if override is None:
    return models.from_description(meta)
  _check_meta(meta, override.describe(), f"{checkpoint_path} (step {step})")
  return override


def load_model_and_params(
  checkpoint_path: str, device: Optional[jax.Device] = None
) -> tuple[BaseModel, Any]:
  """The model a checkpoint describes (its `meta`), and its parameters on `device`
  (default: the first local device)."""
  manager, step, meta = _open(checkpoint_path)
  model = models.from_description(meta)
  shardings = None
  if device is not None:
    shardings = jax.tree.map(
      lambda _: jax.sharding.SingleDeviceSharding(device), model.abstract_params()
    )
  return model, _restore_params(manager, step, meta, model, checkpoint_path, shardings)


def load_params(checkpoint_path: str, model, shardings: Any = None) -> Any:
  """Parameters only, from a training checkpoint (finetuning and evaluation).

  `shardings` (a tree like the parameters) places them on a mesh; by default
  they land on the first local device. A missing path, no checkpoint, a
  checkpoint of the other architecture, or a corrupt one is a one-line ConfigError.
  """
  return load_params_and_step(checkpoint_path, model, shardings)[0]


def load_params_and_step(checkpoint_path: str, model, shardings: Any = None) -> tuple[Any, int]:
  """`load_params`, and the step of the checkpoint it restored (what results are logged at)."""
  manager, step, meta = _open(checkpoint_path)
  _check_meta(meta, model.describe(), f"{checkpoint_path} (step {step})")
  return _restore_params(manager, step, meta, model, checkpoint_path, shardings), step


def _restore_params(
  manager: ocp.CheckpointManager,
  step: int,
  meta: dict[str, Any],
  model,
  checkpoint_path: str,
  shardings: Any = None,
) -> Any:
  """The verified parameters of `step`, placed by `shardings` (default: the first device)."""
  abstract = model.abstract_params()
  if shardings is None:
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    shardings = jax.tree.map(lambda _: device, abstract)
  target = jax.tree.map(
    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
  )
  try:
    restored = manager.restore(
      step, args=ocp.args.Composite(params=ocp.args.StandardRestore(target))
    )
    verify({"params": restored.params}, meta.get("checksums"))
  except Exception as e:  # pylint: disable=broad-except
    _quiet_orphaned_reads()
    raise ConfigError(
      f"cannot restore parameters from {checkpoint_path} (step {step}): {_first_line(e)}"
    ) from None
  manager.close()
  return restored.params


def read_meta(checkpoint_path: str) -> dict[str, Any]:
  """The `meta` of the checkpoint `load_params` would restore."""
  manager, _, meta = _open(checkpoint_path)
  manager.close()
  return meta


def recorded_vocabulary(checkpoint_path: str) -> tuple[Optional[dict[str, str]], epath.Path]:
  """The `vocabulary` record in the meta of the checkpoint `load_params` would restore
  (None if it records none), and its MODEL_DIR (where the record's copy lives)."""
  manager, _, meta = _open(checkpoint_path)
  manager.close()
  return meta.get("vocabulary"), _locate(checkpoint_path)[0].parent
