"""Demo tasks on the corpus built by `python -m redllm_jax.demo.corpus`.

The `redllm_demo` TFDS datasets under {demo_dir}, with the real tasks' preprocessing. Every task and
mixture is registered once per demo vocabulary (`vocabulary.DEMO_PREFIXES`):
`demo_*` with the 4096-piece one, `demo1k_*` with the 1024-piece one,
`demo_imported_*` with an imported checkpoint's tokenizer.json (gin
`imported_vocab_path.model_dir`, `imported_eos_id.eos_id`).
"""

import seqio

from redllm_jax.data import paths
from redllm_jax.data import task_builders
from redllm_jax.demo import task_families
from redllm_jax.data import vocabulary
from redllm_jax.data.datasets import builders

DEMO_SUBSETS = ("wikipedia", "book")
REHEARSAL_SHARE = 0.5  # of the tuning examples that are pretraining text (study tuning)


def _demo(config: str):
  return task_builders.built(paths.demo_dir, builders.RedllmDemo, config)


for _prefix, _vocabulary in vocabulary.DEMO_PREFIXES.items():
  for _subset in DEMO_SUBSETS:
    task_builders.register_text_task(
      f"{_prefix}_redpajama_{_subset}",
      _demo(_subset),
      _vocabulary,
    )
  # Equal rates: the two subsets are of similar size (see docs/data.md).
  seqio.MixtureRegistry.add(
    f"{_prefix}_redpajama", [f"{_prefix}_redpajama_{s}" for s in DEMO_SUBSETS], default_rate=1.0
  )

  task_builders.register_flan_task(f"{_prefix}_flan", _demo("flan"), _vocabulary)
  # The tuned instruction families only (the held-out ones measure zero-shot transfer);
  # equal rates: each family has the same number of items per source.
  for _family in task_families.TUNED_FAMILIES:
    task_builders.register_flan_task(
      f"{_prefix}_flan_{_family}",
      _demo(f"family_{_family}"),
      _vocabulary,
    )
  seqio.MixtureRegistry.add(
    f"{_prefix}_flan_families",
    [f"{_prefix}_flan_{f}" for f in task_families.TUNED_FAMILIES],
    default_rate=1.0,
  )
  # The same with pretraining text rehearsed (`REHEARSAL_SHARE` of the examples), so
  # that tuning adds the families without erasing what pretraining taught.
  for _subset in DEMO_SUBSETS:
    task_builders.register_rehearsal_task(
      f"{_prefix}_rehearsal_{_subset}",
      _demo(_subset),
      _vocabulary,
    )
  _families = len(task_families.TUNED_FAMILIES)
  seqio.MixtureRegistry.add(
    f"{_prefix}_flan_families_rehearsal",
    [(f"{_prefix}_flan_{f}", 1.0) for f in task_families.TUNED_FAMILIES]
    + [
      (
        f"{_prefix}_rehearsal_{s}",
        _families * REHEARSAL_SHARE / (1 - REHEARSAL_SHARE) / len(DEMO_SUBSETS),
      )
      for s in DEMO_SUBSETS
    ],
  )
  task_builders.register_text_task(
    f"{_prefix}_paloma_pydoc",
    _demo("pydoc"),
    _vocabulary,
    splits=("validation",),
  )
