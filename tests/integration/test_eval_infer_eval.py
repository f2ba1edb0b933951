"""infer (decoding from JSON lines) and evaluate (PPL over seqio tasks) on tiny models."""

import json
import math
import os

import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import seqio

from conftest import init, make_model, random_tokens
from redllm_jax import checkpoints, errors, gin_utils
from redllm_jax.data import feature_converters, input_pipeline, vocabulary
from redllm_jax.decoding import DecodingConfig
from redllm_jax.evaluation import infer, perplexity
from redllm_jax.models import summarize_metrics


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
    tokens[i, : len(p)] = p
  expected = jax.jit(model.predict_batch, static_argnums=(4,))(
    params, jnp.asarray(tokens), jnp.asarray(lengths), jax.random.key(0), cfg
  )
  assert outputs == np.asarray(expected.tokens).tolist()
  report = timing.report()
  assert report["generated_tokens"] == 30 and report["prompt_tokens"] == sum(lengths)
  # A rate is positive, or NaN when the time was too short to measure (never absurd).
  assert all(
    v > 0 or math.isnan(v)
    for v in (report["prefill_tokens_per_second"], report["decode_ms_per_step"])
  )


def test_too_long_prompts_truncated_or_rejected():
  encode = lambda text: [2 + (ord(c) % 50) for c in text]
  ids, cut = infer.encode_prompts(
    ["abc", "abcdefghij"], encode, infer.InferSettings(max_prompt_length=5)
  )
  assert cut == [False, True] and len(ids[1]) == 5 and ids[1][-1] == infer.EOS_ID
  assert ids[1][:4] == encode("ghij")  # the end of the prompt is kept
  with pytest.raises(infer.PromptError, match="prompt 1 has 11 tokens > max_prompt_length=5"):
    infer.encode_prompts(
      ["abc", "abcdefghij"], encode, infer.InferSettings(max_prompt_length=5, too_long="reject")
    )


def test_infer_entry_point_through_gin(tmp_path, monkeypatch, demo_root):
  model_holder = {}

  def fake_load(path, model):  # checkpoints are the trainer's business; init instead
    assert path == "CKPT"
    model_holder["model"] = model
    return model.init_params(jax.random.key(0))

  monkeypatch.setattr(checkpoints, "load_params", fake_load)
  monkeypatch.setattr(checkpoints, "load_model", lambda path, override: override)
  monkeypatch.setattr(
    vocabulary,
    "vocabulary_path",  # what a real checkpoint records
    lambda path: os.path.join(demo_root, "vocab", "spm_4096_bpe.model"),
  )
  prompts = tmp_path / "prompts.jsonl"
  prompts.write_text(
    "\n".join(
      json.dumps({"inputs": t, "id": i})
      for i, t in enumerate(["Hello there", "What is a computer?" * 30])
    )
  )
  out = tmp_path / "out.jsonl"
  gin_utils.parse_gin(
    ["models/redllm.gin", "models/sizes/tiny.gin", "data/demo_finetune_red.gin", "runs/infer.gin"],
    [
      "CHECKPOINT_PATH = 'CKPT'",
      f"INFER_INPUT = '{prompts}'",
      f"INFER_OUTPUT = '{out}'",
      "decoding.DecodingConfig.max_new_tokens = 4",
      "infer.InferSettings.max_prompt_length = 32",
      "infer.infer.model = %MODEL",
    ],
  )  # an override of the checkpoint's
  infer.main()
  lines = [json.loads(l) for l in out.read_text().splitlines()]
  assert [l["id"] for l in lines] == [0, 1]
  assert lines[1]["truncated"] and lines[1]["prompt_tokens"] == 32
  assert all(isinstance(l["output"], str) for l in lines)
  # Bad input fails before any checkpoint is loaded.
  model_holder.clear()
  with gin.unlock_config():
    gin.parse_config("infer.InferSettings.too_long = 'reject'")
  with pytest.raises(errors.ConfigError, match="max_prompt_length=32"):
    infer.main()
  empty = tmp_path / "empty_prompt.jsonl"
  empty.write_text('{"inputs": "fine"}\n{"inputs": " "}\n')
  with gin.unlock_config():
    gin.parse_config(f"INFER_INPUT = '{empty}'")
  with pytest.raises(errors.ConfigError, match=f"{empty}:2: empty prompt"):
    infer.main()
  with gin.unlock_config():
    gin.parse_config("INFER_INPUT = '/no/such/file.jsonl'")
  with pytest.raises(errors.ConfigError, match="prompt file not found"):
    infer.main()
  assert not model_holder


def test_missing_checkpoint_is_one_line(tmp_path):
  with pytest.raises(errors.ConfigError) as e:
    checkpoints.load_params(str(tmp_path / "nope"), make_model("redllm"))
  assert "does not exist" in str(e.value) and "\n" not in str(e.value)


def _expected_sums(model, params, converter, lengths, rows):
  """Metric sums over the first `rows` examples, read one by one (a second code path)."""
  examples = seqio.get_dataset(
    "demo_paloma_pydoc",
    lengths,
    dataset_split="validation",
    shuffle=False,
    num_epochs=1,
    feature_converter=converter,
  ).take(rows)
  total = None
  for example in examples.as_numpy_iterator():
    batch = {k: v[None] for k, v in example.items()}
    sums = model.eval_metric_sums(params, batch)
    total = sums if total is None else jax.tree.map(np.add, total, sums)
  return total


@pytest.mark.parametrize("arch", ["decllm", "redllm"])
def test_eval_command_equals_example_by_example_sums(arch, demo_root, tmp_path, monkeypatch):
  model = make_model(arch, vocab_size=4096)
  params = init(model)
  monkeypatch.setattr(checkpoints, "load_params_and_step", lambda path, m, shardings: (params, 7))
  monkeypatch.setattr(checkpoints, "load_model", lambda path, override: override)
  monkeypatch.setattr(vocabulary, "check_vocabulary", lambda path, vocab_file, what: None)
  converter = feature_converters.make_feature_converter(arch[:3], "pretrain")
  lengths = {"targets": 64}
  results = perplexity.evaluate_checkpoint(
    model,
    "CKPT",
    str(tmp_path),
    ["demo_paloma_pydoc"],
    lengths,
    converter,
    batch_size=4,
    max_batches=2,
  )
  metrics = results["demo_paloma_pydoc"]
  expected = _expected_sums(model, params, converter, lengths, rows=8)
  for prefix, sums in expected.items():
    for name, value in summarize_metrics(sums).items():
      assert metrics[prefix + name] == pytest.approx(float(value), rel=1e-5), prefix + name
  assert ("second_half_perplexity" in metrics) == (arch == "decllm")
  assert metrics["num_tokens"] == 8 * (64 if arch == "decllm" else 32)
  with open(tmp_path / "eval_results.json") as f:
    assert json.load(f)["step"] == 7
  assert any(n.startswith("events.out.tfevents") for n in os.listdir(tmp_path))
  other = feature_converters.make_feature_converter(
    "red" if arch == "decllm" else "dec", "pretrain"
  )
  with pytest.raises(errors.ConfigError, match="does not fit"):
    perplexity.evaluate_checkpoint(model, "CKPT", None, ["demo_paloma_pydoc"], lengths, other)


def test_a_finite_pass_pads_its_last_batch_and_drops_nothing(demo_root):
  converter = feature_converters.make_feature_converter("dec", "pretrain")
  for shards in (1, 2):  # 2 shards: each ends on its own partial batch, padded
    batches = list(
      input_pipeline.make_sharded_input(
        "demo_paloma_pydoc",
        {"targets": 2048},
        converter,
        32,
        seed=0,
        num_shards=shards,
        split="validation",
        shuffle=False,
        num_epochs=1,
      )
    )
    assert all(b["decoder_target_tokens"].shape == (32, 2048) for b in batches)
    # Every one of the split's 154,548 tokens (docs/data.md), none dropped or read twice.
    assert sum(int(b["decoder_loss_weights"].sum()) for b in batches) == 154_548
