"""What the bench sections share: the two architectures, a model from its gins and a batch."""

from typing import Sequence

import gin
import jax
import numpy as np

from redllm_jax import gin_utils, models
from redllm_jax.models import BaseModel

ARCHS = ("decllm", "redllm")


def build_model(arch: str, size: str, bindings: Sequence[str] = ()) -> BaseModel:
  """The model of `gin/models/{arch}.gin` at `gin/models/sizes/{size}.gin`, float32 on CPU."""
  gin.clear_config()
  extra = []
  if jax.default_backend() == "cpu":
    extra.append("ACTIVATION_DTYPE = 'float32'")
  gin_utils.parse_gin([f"models/{arch}.gin", f"models/sizes/{size}.gin"], [*extra, *bindings])
  return models.from_gin()


def synthetic_batch(model: BaseModel, batch: int, tokens: int, seed: int = 0):
  """A full-length (no padding) pretraining batch of random chunks of ids >= 2."""
  rng = np.random.RandomState(seed)
  return model.pretraining_batch(rng.randint(2, model.config.vocab_size, (batch, tokens)))
