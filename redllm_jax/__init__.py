"""redllm-jax: RedLLM (encoder-decoder) and DecLLM (decoder-only) in JAX/Flax."""
import os

# Before anything imports TensorFlow (seqio, orbax): keep its C++ start-up chatter quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
