"""FLAN instruction tuning: JSON lines with `inputs` and `targets`, converted to
{data_dir}/flan/{train,validation}/*.tfrecord by `redllm_jax.data.prepare --fields=inputs,targets`."""

from redllm_jax.data import paths
from redllm_jax.data import task_builders
from redllm_jax.data import vocabulary

for _prefix, _vocabulary in vocabulary.REAL_PREFIXES.items():  # flan, imported_flan
  task_builders.register_flan_task(
    f"{_prefix}flan", task_builders.under(paths.data_dir, "flan"), _vocabulary
  )
