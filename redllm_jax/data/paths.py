"""Where the data lives. Resolved lazily (at read time), so task registration
never touches the file system and gin bindings parsed after import still apply.

Layout under a data root (identical for real data and the demo corpus):
  {root}/redpajama_v1/{subset}/{split}/*.tfrecord
  {root}/flan/{split}/*.tfrecord
  {root}/paloma/{source}/{split}/*.tfrecord
  {root}/vocab/*.model
"""

import os

import gin

DATA_DIR_ENV = "REDLLM_DATA_DIR"
DEMO_DIR_ENV = "REDLLM_DEMO_DIR"
CACHE_ENV = "REDLLM_JAX_CACHE"


@gin.configurable
def data_dir(path: str | None = None) -> str:
  """Root of the real (converted) data: gin `data_dir.path`, else $REDLLM_DATA_DIR."""
  path = path or os.environ.get(DATA_DIR_ENV)
  if not path:
    raise ValueError(
      f"No data root: set ${DATA_DIR_ENV} or bind gin `data_dir.path` (local or gs://)."
    )
  return path


@gin.configurable
def demo_dir(path: str | None = None) -> str:
  """Root of the demo corpus: gin, else $REDLLM_DEMO_DIR, else ${REDLLM_JAX_CACHE:-~/.cache/redllm_jax}/demo."""
  if path:
    return path
  if os.environ.get(DEMO_DIR_ENV):
    return os.environ[DEMO_DIR_ENV]
  return os.path.join(cache_root(), "demo")


def cache_root() -> str:
  """${REDLLM_JAX_CACHE:-~/.cache/redllm_jax}: the demo corpus and converted files tasks."""
  return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "redllm_jax")
