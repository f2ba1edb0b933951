"""Multi-process start-up: `jax.distributed.initialize` from flags or the environment.

On TPU pods and SLURM, `jax.distributed.initialize()` finds its peers itself
(`--distributed=auto`). Elsewhere, pass the coordinator address, process count and
process id (flags, or REDLLM_COORDINATOR / REDLLM_NUM_PROCESSES / REDLLM_PROCESS_ID,
which `launch/local_multiprocess.py` sets). CPU processes talk over gloo.
"""

import os

from absl import flags
import jax


def define_flags() -> None:
  """The start-up flags, defined when a command starts (`gin_utils.run_flags`), not at
  import: a module that imports this one defines no flags."""
  if "distributed" in flags.FLAGS:
    return
  flags.DEFINE_enum(
    "distributed",
    "off",
    ["off", "auto", "explicit"],
    "How to start jax.distributed; 'explicit' reads the flags below or "
    "their REDLLM_* environment variables.",
  )
  flags.DEFINE_string(
    "coordinator_address", os.environ.get("REDLLM_COORDINATOR"), "host:port of process 0."
  )
  flags.DEFINE_integer(
    "num_processes", int(os.environ.get("REDLLM_NUM_PROCESSES", "1")), "Number of processes."
  )
  # A survivor of a dead peer learns of it from the coordinator's missed heartbeats;
  # 30 s (jax's default is 100 s) makes it exit within a minute on a pod.
  flags.DEFINE_integer(
    "heartbeat_timeout_seconds",
    30,
    "Seconds without a peer's heartbeat before a process gives up on the job.",
  )
  flags.DEFINE_integer(
    "process_id", int(os.environ.get("REDLLM_PROCESS_ID", "0")), "This process's index."
  )


def initialize() -> None:
  """Starts jax.distributed as the flags say; a no-op for single-process runs."""
  f = flags.FLAGS
  mode = f.distributed
  if mode == "off" and f.coordinator_address:
    mode = "explicit"
  if mode == "off":
    return
  if jax.config.jax_platforms in (None, "", "cpu"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  timeout = {"heartbeat_timeout_seconds": f.heartbeat_timeout_seconds}
  if mode == "auto":
    jax.distributed.initialize(**timeout)
  else:
    jax.distributed.initialize(
      coordinator_address=f.coordinator_address,
      num_processes=f.num_processes,
      process_id=f.process_id,
      **timeout,
    )
