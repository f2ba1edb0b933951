"""Demo tasks on the corpus built by `python -m redllm_jax.data.demo_corpus`.

Same layout and preprocessing as the real tasks, under {demo_dir} with the
4096-piece demo vocabulary.
"""
import seqio

from redllm_jax.data import paths
from redllm_jax.data import task_builders
from redllm_jax.data import vocabulary

DEMO_SUBSETS = ("wikipedia", "book")

for _subset in DEMO_SUBSETS:
  task_builders.register_text_task(
      f"demo_redpajama_{_subset}",
      task_builders.under(paths.demo_dir, "redpajama_v1", _subset),
      vocabulary.DEMO_VOCABULARY,
  )
# Equal rates: the two subsets are of similar size (see docs/data.md).
seqio.MixtureRegistry.add("demo_redpajama", [f"demo_redpajama_{s}" for s in DEMO_SUBSETS], default_rate=1.0)

task_builders.register_flan_task(
    "demo_flan", task_builders.under(paths.demo_dir, "flan"), vocabulary.DEMO_VOCABULARY
)
task_builders.register_text_task(
    "demo_paloma_pydoc",
    task_builders.under(paths.demo_dir, "paloma", "pydoc"),
    vocabulary.DEMO_VOCABULARY,
    splits=("validation",),
)
