"""The data gin snippets parse and give the documented lengths and converters."""

import os

import gin
import pytest
import seqio

from redllm_jax.data import feature_converters
from redllm_jax.data import vocabulary

GIN_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "gin", "data")


@pytest.mark.parametrize(
  "name,lengths,converter,model_lengths",
  [
    (
      "pretrain_dec",
      {"targets": 2048},
      seqio.DecoderFeatureConverter,
      {"decoder_target_tokens": 2048},
    ),
    (
      "pretrain_red",
      {"targets": 2048},
      feature_converters.RedPretrainFeatureConverter,
      {"encoder_input_tokens": 1024, "decoder_target_tokens": 1024},
    ),
    (
      "finetune_dec",
      {"inputs": 2048, "targets": 512},
      seqio.PrefixLMFeatureConverter,
      {"decoder_target_tokens": 2560},
    ),
    (
      "finetune_red",
      {"inputs": 2048, "targets": 512},
      seqio.EncDecFeatureConverter,
      {"encoder_input_tokens": 2048, "decoder_target_tokens": 512},
    ),
    (
      "demo_pretrain_red",
      {"targets": 256},
      feature_converters.RedPretrainFeatureConverter,
      {"encoder_input_tokens": 128, "decoder_target_tokens": 128},
    ),
  ],
)
def test_gin_snippets(name, lengths, converter, model_lengths) -> None:
  gin.add_config_file_search_path(os.path.dirname(GIN_DIR))
  gin.parse_config_file(os.path.join(GIN_DIR, name + ".gin"))
  assert gin.query_parameter("%TASK_FEATURE_LENGTHS") == lengths
  fc = feature_converters.make_feature_converter()
  assert type(fc) is converter  # noqa: E721  # exact class, not a subclass
  assert model_lengths.items() <= dict(fc.get_model_feature_lengths(lengths)).items()
  expected = vocabulary.DEMO_VOCABULARY if name.startswith("demo") else vocabulary.REAL_VOCABULARY
  assert vocabulary.get_vocabulary() is expected
