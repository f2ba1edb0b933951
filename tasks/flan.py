"""FLAN instruction tuning: `inputs`/`targets` strings from the `redllm_flan` TFDS dataset
under the data root (built from JSON lines: docs/data.md)."""

from redllm_jax.data import paths
from redllm_jax.data import task_builders
from redllm_jax.data import vocabulary
from redllm_jax.data.datasets import builders

for _prefix, _vocabulary in vocabulary.REAL_PREFIXES.items():  # flan, imported_flan
  task_builders.register_flan_task(
    f"{_prefix}flan",
    task_builders.built(paths.data_dir, builders.RedllmFlan, "default"),
    _vocabulary,
  )
