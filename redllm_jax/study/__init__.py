"""The paper in miniature: the scaling ladder, fits, findings and report behind `redllm_jax.study.reproduce`."""
