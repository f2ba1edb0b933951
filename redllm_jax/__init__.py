"""redllm-jax: RedLLM (encoder-decoder) and DecLLM (decoder-only) in JAX/Flax."""
