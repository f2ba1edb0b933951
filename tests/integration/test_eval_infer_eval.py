"""infer (decoding from JSON lines) and evaluate (PPL over seqio tasks) on tiny models."""
import json
import os

import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import init, make_model, random_tokens
from redllm_jax import gin_utils
from redllm_jax.evaluation import checkpoint_loading, infer, perplexity
from redllm_jax.data import feature_converters
from redllm_jax.decoding import DecodingConfig


@pytest.mark.parametrize("arch", ["decllm_biattn", "redllm"])
def test_infer_equals_greedy_predict_batch(arch):
  model = make_model(arch)
  params = init(model)
  lengths = [5, 2, 7, 3, 4]
  prompts = [random_tokens(i, (n,)).tolist() for i, n in enumerate(lengths)]
  cfg = DecodingConfig(max_new_tokens=6, eos_id=-1)
  settings = infer.InferSettings(batch_size=4)  # two batches, the last one padded
  outputs, timing = infer.generate(model, params, prompts, cfg, settings)
  tokens = np.zeros((5, 8), np.int32)
  for i, p in enumerate(prompts):
    tokens[i, :len(p)] = p
  expected = jax.jit(model.predict_batch, static_argnums=(4,))(
      params, jnp.asarray(tokens), jnp.asarray(lengths), jax.random.key(0), cfg)
  assert outputs == np.asarray(expected.tokens).tolist()
  report = timing.report()
  assert report["generated_tokens"] == 30 and report["prompt_tokens"] == sum(lengths)
  assert report["prefill_tokens_per_second"] > 0 and report["decode_ms_per_step"] > 0


def test_too_long_prompts_truncated_or_rejected():
  encode = lambda text: [2 + (ord(c) % 50) for c in text]
  ids, cut = infer.encode_prompts(["abc", "abcdefghij"], encode,
                                  infer.InferSettings(max_prompt_length=5))
  assert cut == [False, True] and len(ids[1]) == 5 and ids[1][-1] == infer.EOS_ID
  assert ids[1][:4] == encode("ghij")  # the end of the prompt is kept
  with pytest.raises(infer.PromptError, match="prompt 1 has 11 tokens > max_prompt_length=5"):
    infer.encode_prompts(["abc", "abcdefghij"], encode,
                         infer.InferSettings(max_prompt_length=5, too_long="reject"))


def test_infer_entry_point_through_gin(tmp_path, monkeypatch, demo_root):
  model_holder = {}

  def fake_load(path, model):  # checkpoints are the trainer's business; init instead
    assert path == "CKPT"
    model_holder["model"] = model
    return model.init_params(jax.random.key(0))

  monkeypatch.setattr(checkpoint_loading, "load_params", fake_load)
  prompts = tmp_path / "prompts.jsonl"
  prompts.write_text("\n".join(json.dumps({"inputs": t, "id": i})
                               for i, t in enumerate(["Hello there", "What is a computer?" * 30])))
  out = tmp_path / "out.jsonl"
  gin.clear_config()
  gin_utils.parse_gin(["models/redllm_tiny.gin", "data/demo_finetune_red.gin", "runs/infer.gin"],
                      ["CHECKPOINT_PATH = 'CKPT'", f"INFER_INPUT = '{prompts}'",
                       f"INFER_OUTPUT = '{out}'", "decoding.DecodingConfig.max_new_tokens = 4",
                       "infer.InferSettings.max_prompt_length = 32"])
  try:
    infer.main()
    lines = [json.loads(l) for l in out.read_text().splitlines()]
    assert [l["id"] for l in lines] == [0, 1]
    assert lines[1]["truncated"] and lines[1]["prompt_tokens"] == 32
    assert all(isinstance(l["output"], str) for l in lines)
    # Bad input fails before any checkpoint is loaded.
    model_holder.clear()
    gin.parse_config("infer.InferSettings.too_long = 'reject'")
    with pytest.raises(gin_utils.ConfigError, match="max_prompt_length=32"):
      infer.main()
    gin.parse_config("INFER_INPUT = '/no/such/file.jsonl'")
    with pytest.raises(gin_utils.ConfigError, match="prompt file not found"):
      infer.main()
    assert not model_holder
    gin.parse_config("REQUIRED_MACROS = ['CHECKPOINT_PATH', 'NOT_SET']")
    with pytest.raises(gin_utils.ConfigError, match="missing required gin macro NOT_SET"):
      infer.main()
  finally:
    gin.clear_config()


def test_missing_checkpoint_is_one_line(tmp_path):
  with pytest.raises(gin_utils.ConfigError) as e:
    checkpoint_loading.load_params(str(tmp_path / "nope"), make_model("redllm"))
  assert "does not exist" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("arch", ["decllm", "redllm"])
def test_evaluate_matches_loss_fn_over_the_split(arch, demo_root, tmp_path):
  model = make_model(arch, vocab_size=4096)
  params = init(model)
  converter = feature_converters.make_feature_converter(arch[:3], "pretrain")
  lengths = {"targets": 64}
  settings = perplexity.EvalSettings(batch_size=4, max_batches=2)
  results = perplexity.evaluate(model, params, ["demo_paloma_pydoc"], lengths, converter,
                              settings, str(tmp_path), step=7)
  metrics = results["demo_paloma_pydoc"]
  expected_tokens = 8 * (64 if arch == "decllm" else 32)
  assert metrics["num_tokens"] == expected_tokens and metrics["num_examples"] == 8
  assert metrics["perplexity"] == pytest.approx(np.exp(metrics["cross_entropy"]), rel=1e-6)
  assert 1 < metrics["perplexity"] < 3 * 4096  # random init: near-uniform over the vocabulary
  assert 0 <= metrics["accuracy"] <= 1
  with open(tmp_path / "eval_results.json") as f:
    assert json.load(f)["step"] == 7
  assert any(n.startswith("events.out.tfevents") for n in os.listdir(tmp_path))
  with pytest.raises(gin_utils.ConfigError, match="does not fit"):
    other = feature_converters.make_feature_converter("red" if arch == "decllm" else "dec",
                                                      "pretrain")
    perplexity.evaluate_task(model, params, "demo_paloma_pydoc", lengths, other, settings)


def test_last_partial_batch_is_padded_not_dropped(demo_root):
  converter = feature_converters.make_feature_converter("dec", "pretrain")
  batches = list(perplexity.eval_batches("demo_paloma_pydoc", {"targets": 2048}, converter, 32))
  rows = sum(int((b["decoder_loss_weights"].sum(1) > 0).sum()) for b in batches)
  assert all(b["decoder_target_tokens"].shape == (32, 2048) for b in batches)
  # 154,548 tokens (docs/data.md) = 75 full chunks + the short tail: 3 batches, none dropped.
  assert len(batches) == 3 and rows == -(-154_548 // 2048)
