"""redllm-jax: RedLLM (encoder-decoder) and DecLLM (decoder-only) in JAX/Flax."""

import os

from redllm_jax import tf_startup

# Before anything imports TensorFlow (seqio, orbax): keep its C++ start-up chatter quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf_startup.install()
