"""TFDS builders of the project's corpora; importing this package registers them
(`tfds build NAME --imports=redllm_jax.data.datasets`)."""

from redllm_jax.data.datasets import builders  # noqa: F401  (registers the builders)
