r"""Runs N local CPU processes as one multi-host job (real jax.distributed, gloo).

  python launch/local_multiprocess.py --num_processes=2 --devices_per_process=4 -- \
      --gin_file=experiments/demo_pretrain_redllm.gin --gin.MODEL_DIR=\"runs/mp\"

Each process gets REDLLM_COORDINATOR / REDLLM_NUM_PROCESSES / REDLLM_PROCESS_ID and
its own fake CPU devices, so 2 x 4 devices form one 8-device mesh. Process 0's
output is shown; the others' goes to MODEL_DIR-independent logs in --log_dir.
If one process fails, it is noticed at once (every process is polled), the rest
are stopped, and the exit code is the first failure's (a process killed by signal
N exits the launcher with 128 + N, as a shell reports it).
"""

import argparse
import os
import socket
import subprocess
import sys
import time


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(
  num_processes: int,
  devices_per_process: int,
  train_args: list[str],
  log_dir: str,
  module: str = "redllm_jax.train",
) -> int:
  """Starts the processes, waits for all; returns the first non-zero exit code (or 0)."""
  os.makedirs(log_dir, exist_ok=True)
  coordinator = f"127.0.0.1:{_free_port()}"
  procs = []
  for pid in range(num_processes):
    env = dict(
      os.environ,
      REDLLM_COORDINATOR=coordinator,
      REDLLM_NUM_PROCESSES=str(num_processes),
      REDLLM_PROCESS_ID=str(pid),
      JAX_PLATFORMS="cpu",
      XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}",
    )
    out = None if pid == 0 else open(os.path.join(log_dir, f"process_{pid}.log"), "w")
    procs.append(
      subprocess.Popen(
        [sys.executable, "-m", module, "--distributed=explicit", *train_args],
        env=env,
        stdout=out,
        stderr=out,
      )
    )
  code = _wait_for_first_failure(procs)
  for p in procs:
    if p.poll() is None:
      p.terminate()
  for p in procs:
    p.wait()
  return code


def _wait_for_first_failure(procs: list[subprocess.Popen]) -> int:
  """0 once every process has exited cleanly, else the first failure's return code.

  Every process is polled each round: a death anywhere is seen within 0.2 s.
  """
  while True:
    codes = [p.poll() for p in procs]  # A list, not a generator: poll them all.
    failed = [c for c in codes if c not in (None, 0)]
    if failed:
      return failed[0]
    if all(c == 0 for c in codes):
      return 0
    time.sleep(0.2)


def exit_status(code: int) -> int:
  """A Popen return code as a shell exit status: -N (killed by signal N) -> 128 + N."""
  return 128 - code if code < 0 else code


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num_processes", type=int, default=2)
  parser.add_argument("--devices_per_process", type=int, default=4)
  parser.add_argument("--log_dir", default="/tmp/redllm_local_multiprocess")
  parser.add_argument(
    "--module", default="redllm_jax.train", help="the module each process runs with -m"
  )
  parser.add_argument(
    "train_args", nargs=argparse.REMAINDER, help="arguments for redllm_jax.train, after --"
  )
  args = parser.parse_args()
  train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
  sys.exit(
    exit_status(
      launch(args.num_processes, args.devices_per_process, train_args, args.log_dir, args.module)
    )
  )


if __name__ == "__main__":
  main()
