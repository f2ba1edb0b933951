"""TensorFlow (the data pipeline's) starts without its C++ chatter and without GPUs.

TensorFlow 2.19+ logs "Could not find cuda drivers" (cudart_stub) when imported and
"failed call to cuInit", at error level, when it first looks for GPUs on a CPU
host: its C++ logging writes before absl is initialised, so TF_CPP_MIN_LOG_LEVEL
does not reach those lines. `install()` (run by `redllm_jax/__init__`) makes the
first `import tensorflow` run with those known lines filtered out of stderr
(every other line still gets through), and hides GPUs from TensorFlow in the same
step: it only feeds host batches, so it must not claim accelerator memory, while
jax still sees every accelerator.
"""

import contextlib
import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile
from typing import Iterator

# TensorFlow's start-up lines that say nothing about our run.
_CHATTER = re.compile(
  r"All log messages before absl::InitializeLog\(\) is called are written to STDERR"
  r"|cudart_stub\.cc.*Could not find cuda drivers"
  r"|cuda_platform\.cc.*failed call to cuInit"
  r"|port\.cc.*oneDNN custom operations are on"
  r"|Unable to register cu(DNN|FFT|BLAS) factory"
  r"|TF-TRT Warning: Could not find TensorRT"
)


@contextlib.contextmanager
def _stderr_without_chatter() -> Iterator[None]:
  """Captures file descriptor 2 (C++ writes there directly), then passes on every
  line but TensorFlow's known start-up chatter."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True):
        if not _CHATTER.search(line):
          sys.stderr.write(line)
      sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
  """TensorFlow's own loader, run inside the filter; then GPUs hidden from it."""

  def __init__(self, loader: importlib.abc.Loader):
    self._loader = loader

  def create_module(self, spec):
    return self._loader.create_module(spec)

  def exec_module(self, module) -> None:
    with _stderr_without_chatter():
      self._loader.exec_module(module)
      module.config.set_visible_devices([], "GPU")  # looks for GPUs: the cuInit line

  def __getattr__(self, name):  # resource readers and the like: the real loader's
    return getattr(self._loader, name)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
  """Finds `tensorflow` once, the normal way, and hands it to _QuietLoader."""

  def find_spec(self, fullname, path, target=None):
    if fullname != "tensorflow":
      return None
    sys.meta_path.remove(self)
    spec = importlib.machinery.PathFinder.find_spec(fullname, path)
    if spec is not None and spec.loader is not None:
      spec.loader = _QuietLoader(spec.loader)
    return spec


def install() -> None:
  """Quiets the first `import tensorflow` of this process (a no-op once it is imported)."""
  if "tensorflow" not in sys.modules and not any(
    isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path
  ):
    sys.meta_path.insert(0, _QuietTensorFlowFinder())
