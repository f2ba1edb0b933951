"""XLA:CPU settings for child processes that each get one core: the study's workers
and the benchmark that measures them (`tools/bench_workers`)."""

import os
from typing import Mapping

SINGLE_THREADED_XLA = "--xla_cpu_multi_thread_eigen=false"


def single_threaded_env(base: Mapping[str, str] = os.environ) -> dict[str, str]:
  """`base` with XLA single-threaded (after any XLA_FLAGS it has) and TensorFlow quiet."""
  flags = f"{base.get('XLA_FLAGS', '')} {SINGLE_THREADED_XLA}".strip()
  return {**base, "TF_CPP_MIN_LOG_LEVEL": "3", "XLA_FLAGS": flags}
