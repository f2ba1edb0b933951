# Two commands do all the setup: `make demo` and `make test`. Both create the
# virtualenv in .venv on first use (about 3 GB with TensorFlow; a few minutes).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: demo test

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[demo,test]"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m redllm_jax.demo

test: $(VENV)/.installed
	$(PY) -m pytest -q tests
