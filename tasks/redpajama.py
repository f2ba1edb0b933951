"""RedPajama V1 pretraining: `redpajama_v1_{subset}` tasks and the `redpajama_v1` mixture
(and `imported_*` of each, tokenized with an imported checkpoint's tokenizer.json).

Reads the `redllm_redpajama_v1/{subset}` TFDS datasets under the data root, built from
the published JSON-lines shards (docs/data.md).
"""

import functools
from typing import Mapping

import gin
import seqio

from redllm_jax.data import paths
from redllm_jax.data import task_builders
from redllm_jax.data import vocabulary
from redllm_jax.data.datasets import builders

# LLaMA / RedPajama V1 sampling proportions (percent).
LLAMA_RATES = {
  "common_crawl": 67.0,
  "c4": 15.0,
  "github": 4.5,
  "wikipedia": 4.5,
  "book": 4.5,
  "arxiv": 2.5,
  "stackexchange": 2.0,
}
SUBSETS = builders.REDPAJAMA_SUBSETS


@gin.configurable
def redpajama_rates(rates: Mapping[str, float] | None = None) -> dict[str, float]:
  """Mixture rates; gin `redpajama_rates.rates = {"c4": 20.0}` overrides single subsets."""
  return {**LLAMA_RATES, **(rates or {})}


def _rate(subset: str, task: seqio.Task) -> float:
  del task  # seqio passes it; the rate is looked up at read time so gin applies
  return redpajama_rates()[subset]


# Once per vocabulary: `redpajama_v1*` with the project's SentencePiece model,
# `imported_redpajama_v1*` with an imported checkpoint's tokenizer.json.
for _prefix, _vocabulary in vocabulary.REAL_PREFIXES.items():
  for _subset in SUBSETS:
    task_builders.register_text_task(
      f"{_prefix}redpajama_v1_{_subset}",
      task_builders.built(paths.data_dir, builders.RedllmRedpajamaV1, _subset),
      _vocabulary,
    )
  seqio.MixtureRegistry.add(
    f"{_prefix}redpajama_v1",
    [(f"{_prefix}redpajama_v1_{s}", functools.partial(_rate, s)) for s in SUBSETS],
  )
