"""pytest fixture shared by tests/test_data_*.py: the real demo corpus, built once.

Import it into a test module (`from redllm_jax.data.testing import demo_root`).
Each module gets its own fixture instance, but they share one directory and
`demo_corpus.build` is idempotent, so the corpus is built once per session.
"""
import os

import pytest

from redllm_jax.data import demo_corpus
from redllm_jax.data import paths


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> str:
  root = str(tmp_path_factory.getbasetemp() / "demo_corpus")
  demo_corpus.build(root)
  os.environ[paths.DEMO_DIR_ENV] = root  # demo tasks resolve their root lazily
  return root
