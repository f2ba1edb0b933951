"""The harness metrics of the generative tasks here."""

from redllm_jax.evaluation.harness import squad_scores  # noqa: F401
