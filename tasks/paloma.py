"""Paloma out-of-domain perplexity: one eval task `paloma_{source}` per source folder.

Reads the `redllm_paloma/{source}` TFDS datasets under the data root (Paloma's
`{source}/val` and `{source}/test` folders; a source outside `PALOMA_SOURCES` builds
with `builders.paloma_config(source)`: docs/data.md).
Text is chunked exactly like pretraining, so in- and out-of-domain PPL compare.
"""

import seqio

from redllm_jax.data import paths
from redllm_jax.data import task_builders
from redllm_jax.data import vocabulary
from redllm_jax.data.datasets import builders


def register_paloma_source(source: str, prefix: str = "") -> seqio.Task:
  """Registers `{prefix}paloma_{source}` ('-' becomes '_', as seqio names allow no '-')
  with the prefix's vocabulary (`vocabulary.REAL_PREFIXES`: "" or "imported_")."""
  return task_builders.register_text_task(
    f"{prefix}paloma_" + source.replace("-", "_"),
    task_builders.built(paths.data_dir, builders.RedllmPaloma, source),
    vocabulary.REAL_PREFIXES[prefix],
    splits=("validation", "test"),
  )


for _prefix in vocabulary.REAL_PREFIXES:
  for _source in builders.PALOMA_SOURCES:
    register_paloma_source(_source, _prefix)
