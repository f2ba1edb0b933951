# Two commands do all the setup: `make demo` and `make test`. Both create the
# virtualenv in .venv on first use (about 3 GB with TensorFlow; a few minutes).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: demo test test-unit test-slow

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[demo,test]"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m redllm_jax.study.demo

# The default suite, unit and integration (well under 15 minutes on 2 cores);
# `test-unit` is the fast loop (no corpus, no subprocess, no training: under a
# minute); `test-slow` adds the multi-process, mesh and kill/resume tests (about
# 15 more minutes). CI runs `test` and `test-slow`.
test: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 -m "not slow" tests

test-unit: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 tests/unit

test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 -m slow tests
