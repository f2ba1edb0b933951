"""Checkpoints: orbax CheckpointManager for the train state, plus each process's input position.

Layout under MODEL_DIR:
  checkpoints/<step>/{params, opt_state, meta}   orbax items (async, keep last K)
  input_positions/<step>/shard_<j>*              tf.data iterator position per input shard

`meta` records the architecture and network config, so a finetune or eval run
refuses a checkpoint of the other architecture with one line. Restoring walks
back from the newest step: a corrupt or partial checkpoint is skipped with a
warning (orbax already ignores uncommitted temporary directories).
"""
import dataclasses
import os
from typing import Any, Optional

from absl import logging
from etils import epath
import jax
import orbax.checkpoint as ocp

from redllm_jax.gin_utils import ConfigError

ITEMS = ("params", "opt_state", "meta")


def describe_model(model) -> dict[str, Any]:
  """The JSON `meta` item: what a checkpoint's parameters are."""
  return {"architecture": model.architecture, "config": dataclasses.asdict(model.config),
          "inputs_bidirectional_attention": getattr(model, "inputs_bidirectional_attention",
                                                    False)}


class Checkpointer:
  """Saves every `save_every` steps (asynchronously), keeps the last `keep`."""

  def __init__(self, model_dir: str, save_every: int, keep: Optional[int] = 3,
               async_save: bool = True):
    self.model_dir = _absolute(model_dir)
    self.manager = ocp.CheckpointManager(
        self.model_dir / "checkpoints", item_names=ITEMS,
        options=ocp.CheckpointManagerOptions(
            save_interval_steps=save_every, max_to_keep=keep,
            enable_async_checkpointing=async_save, create=True))

  def _input_dir(self, step: int) -> str:
    return os.fspath(self.model_dir / "input_positions" / str(step))

  def should_save(self, step: int) -> bool:
    return self.manager.should_save(step)

  def save(self, step: int, params: Any, opt_state: Any, meta: dict[str, Any],
           input_iterator=None, force: bool = False) -> bool:
    """Writes step `step` if due (or forced); the input position is written first."""
    if not force and not self.manager.should_save(step):
      return False
    if input_iterator is not None:
      input_iterator.save(self._input_dir(step))
    saved = self.manager.save(step, force=force, args=ocp.args.Composite(
        params=ocp.args.StandardSave(params), opt_state=ocp.args.StandardSave(opt_state),
        meta=ocp.args.JsonSave(meta)))
    self._drop_stale_input_positions(keep=step)
    return saved

  def _drop_stale_input_positions(self, keep: int) -> None:
    root = self.model_dir / "input_positions"
    live = set(self.manager.all_steps()) | {keep}
    if root.exists():
      for folder in root.iterdir():
        if folder.name.isdigit() and int(folder.name) not in live and jax.process_index() == 0:
          folder.rmtree(missing_ok=True)

  def restore_latest(self, abstract_params: Any, abstract_opt_state: Any,
                     meta: dict[str, Any], input_iterator=None) -> Optional[tuple[Any, Any, int]]:
    """(params, opt_state, step) of the newest readable checkpoint, or None if there is none."""
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            params=ocp.args.StandardRestore(abstract_params),
            opt_state=ocp.args.StandardRestore(abstract_opt_state),
            meta=ocp.args.JsonRestore()))
        _check_meta(restored.meta, meta, f"checkpoint step {step}")
        if input_iterator is not None:
          input_iterator.restore(self._input_dir(step))
        return restored.params, restored.opt_state, step
      except ConfigError:
        raise
      except Exception as e:  # pylint: disable=broad-except
        logging.warning("checkpoint at step %d is unreadable (%s); trying an older one",
                        step, str(e).splitlines()[0][:200] if str(e) else type(e).__name__)
    return None

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


def _check_meta(found: dict[str, Any], expected: dict[str, Any], where: str) -> None:
  if found.get("architecture") != expected["architecture"]:
    raise ConfigError(f"{where} holds a {found.get('architecture')} model, but the gin builds "
                      f"a {expected['architecture']} model")
  if found.get("config") != expected["config"]:
    diff = sorted(k for k in expected["config"]
                  if found.get("config", {}).get(k) != expected["config"][k])
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


def load_params(checkpoint_path: str, model, shardings: Any = None) -> Any:
  """Parameters only, from a training checkpoint (finetuning and evaluation).

  `shardings` (a tree like the parameters) places them on a mesh; by default
  they land on the first local device. A missing path, no checkpoint, or a
  checkpoint of the other architecture is a one-line ConfigError.
  """
  root, step = _locate(checkpoint_path)
  # Orbax warns that a read-only manager's directory is read-only: we asked for it.
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    manager = ocp.CheckpointManager(root, item_names=ITEMS,
                                    options=ocp.CheckpointManagerOptions(read_only=True))
  finally:
    logging.set_verbosity(verbosity)
  step = manager.latest_step() if step is None else step
  if step is None:
    raise ConfigError(f"no checkpoint found under {checkpoint_path}")
  abstract = model.abstract_params()
  if shardings is None:
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    shardings = jax.tree.map(lambda _: device, abstract)
  target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        abstract, shardings)
  meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
  _check_meta(meta, describe_model(model), f"{checkpoint_path} (step {step})")
  try:
    restored = manager.restore(step, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(target)))
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f"cannot restore parameters from {checkpoint_path} (step {step}): "
                      f"{str(e).splitlines()[0][:200] if str(e) else type(e).__name__}") from None
  manager.close()
  return restored.params
