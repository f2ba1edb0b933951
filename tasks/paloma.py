"""Paloma out-of-domain perplexity: one eval task `paloma_{source}` per source folder.

Reads {data_dir}/paloma/{source}/{validation,test}/*.tfrecord (convert Paloma's
`{source}/val` and `{source}/test` folders with `prepare --force_split=...`).
Text is chunked exactly like pretraining, so in- and out-of-domain PPL compare.
"""

import seqio

from redllm_jax.data import paths
from redllm_jax.data import task_builders
from redllm_jax.data import vocabulary

# Source folders of Paloma v1 (allenai/paloma).
PALOMA_SOURCES = (
  "4chan_meta_sep",
  "c4_100_domains",
  "c4_en",
  "dolma-v1_5",
  "dolma_100_programing_languages",
  "dolma_100_subreddits",
  "falcon-refinedweb",
  "gab",
  "m2d2_s2orc_unsplit",
  "m2d2_wikipedia_unsplit",
  "manosphere_meta_sep",
  "mc4",
  "ptb",
  "redpajama",
  "twitterAAE_HELM_fixed",
  "wikitext_103",
)


def register_paloma_source(source: str, prefix: str = "") -> seqio.Task:
  """Registers `{prefix}paloma_{source}` ('-' becomes '_', as seqio names allow no '-')
  with the prefix's vocabulary (`vocabulary.REAL_PREFIXES`: "" or "imported_")."""
  return task_builders.register_text_task(
    f"{prefix}paloma_" + source.replace("-", "_"),
    task_builders.under(paths.data_dir, "paloma", source),
    vocabulary.REAL_PREFIXES[prefix],
    splits=("validation", "test"),
  )


for _prefix in vocabulary.REAL_PREFIXES:
  for _source in PALOMA_SOURCES:
    register_paloma_source(_source, _prefix)
