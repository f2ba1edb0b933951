"""Shared fixtures: small configs and random batches for network and model tests."""

import dataclasses
import functools
import os

# The suite's time is XLA:CPU compiling many small programs, not running them;
# LLVM's cheap pipeline halves it. Set before jax starts its backend; an XLA_FLAGS
# of the caller's own wins.
os.environ.setdefault(
  "XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
)

from absl import logging  # pylint: disable=g-import-not-at-top,wrong-import-position
import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import redllm_jax_tasks  # noqa: F401  pylint: disable=unused-import  # Registers the seqio tasks.
from redllm_jax.config import TransformerConfig
from redllm_jax.data import paths
from redllm_jax.demo import corpus as demo_corpus
from redllm_jax.models import DecoderOnlyModel, EncoderDecoderModel

VOCAB = 101


@pytest.fixture(autouse=True)
def _isolated_global_state():
  """Gin bindings and absl verbosity are process-global: a test that parses a paper
  gin would otherwise hand its bindings (bfloat16, scanned layers, split points)
  to every `TransformerConfig(...)` or converter built later in the same worker."""
  verbosity = logging.get_verbosity()
  gin.clear_config()
  yield
  gin.clear_config()
  logging.set_verbosity(verbosity)


def small_config(**overrides) -> TransformerConfig:
  """Smaller than the tiny gin config, so that exactness tests run in milliseconds."""
  base = TransformerConfig(
    vocab_size=VOCAB,
    d_model=32,
    d_ff=64,
    num_heads=4,
    head_dim=8,
    num_layers=3,
    num_encoder_layers=2,
    num_decoder_layers=2,
  )
  return dataclasses.replace(base, **overrides)


def make_model(arch: str, z_loss: float = 0.0, **overrides):
  """One shared model per arguments (treat it as read-only), so that `init` and
  `logits` below compile once per worker, not once per test."""
  return _make_model(arch, z_loss, tuple(sorted(overrides.items())))


@functools.lru_cache(maxsize=None)
def _make_model(arch: str, z_loss: float, overrides: tuple):
  if arch == "redllm":
    return EncoderDecoderModel(
      small_config(attention_output_norm=True, **dict(overrides)), z_loss=z_loss
    )
  return DecoderOnlyModel(
    small_config(**dict(overrides)),
    z_loss=z_loss,
    inputs_bidirectional_attention=arch == "decllm_biattn",
  )


ARCHS = ("decllm", "decllm_biattn", "redllm")


def random_tokens(seed: int, shape) -> np.ndarray:
  """Token ids avoiding pad (0) and EOS (1)."""
  return np.random.RandomState(seed).randint(2, VOCAB, size=shape).astype(np.int32)


def lm_batch(arch: str, seed: int = 0, batch: int = 2, inputs: int = 6, targets: int = 5):
  """An unpacked prefix-LM batch of random prompts and answers, built by the model.

  DecLLM reads [BOS, inputs, targets] with the loss on the targets; RedLLM encodes the
  inputs and decodes the targets. Tests check the layout itself in test_models.
  """
  x = random_tokens(seed, (batch, inputs))
  y = random_tokens(seed + 1, (batch, targets))
  return make_model(arch).prefix_lm_batch(x.tolist(), y.tolist())


@pytest.fixture(params=ARCHS)
def arch(request):
  return request.param


@functools.lru_cache(maxsize=None)
def init(model, seed: int = 0):
  return model.init_params(jax.random.key(seed))


@functools.lru_cache(maxsize=None)
def _jitted_logits(model):
  return jax.jit(model.logits)


def logits(model, params, batch) -> np.ndarray:
  """The model's teacher-forced logits, through one compiled function per model."""
  return np.asarray(_jitted_logits(model)(params, {k: jnp.asarray(v) for k, v in batch.items()}))


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> str:
  """The real demo corpus, built once per session (per xdist worker) into a temporary
  folder; its location reaches subprocesses through $REDLLM_DEMO_DIR."""
  root = str(tmp_path_factory.getbasetemp() / "demo_corpus")
  demo_corpus.build(root)
  os.environ[paths.DEMO_DIR_ENV] = root  # demo tasks resolve their root lazily
  return root


SMALL_TRAIN_BINDINGS = (
  "TASK_FEATURE_LENGTHS = {'targets': 64}",
  "BATCH_SIZE = 8",
  "EVAL_TASKS = ['demo_redpajama']",
  "train.train.eval_steps = 2",
  "train.train.eval_every = 0",
  "train.train.log_every = 1",
  "optimizers.learning_rate_schedule.warmup_steps = 5",
)


def train_bindings(arch: str, model_dir: str, steps: int, *extra: str) -> list[str]:
  """Gin bindings of a small demo pretraining run (both architectures read 64-token chunks)."""
  return [f"MODEL_DIR = '{model_dir}'", f"TRAIN_STEPS = {steps}", *SMALL_TRAIN_BINDINGS, *extra]


def experiment(arch: str) -> str:
  return f"experiments/demo_pretrain_{arch}.gin"
