"""The Hugging Face export: transformers loads it (trust_remote_code) and computes what JAX does.

Models are small configs over the demo vocabulary (4096 pieces) with perturbed
parameters; text is the demo corpus, encoded by SentencePiece.
"""

import glob
import json
import os
import stat
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
import sentencepiece  # pylint: disable=g-import-not-at-top,wrong-import-position

from conftest import ARCHS, init, make_model  # pylint: disable=wrong-import-position
from redllm_jax import checkpoints, functional  # pylint: disable=wrong-import-position
from redllm_jax.data import vocabulary  # pylint: disable=wrong-import-position
from redllm_jax.decoding import DecodingConfig  # pylint: disable=wrong-import-position
from redllm_jax.evaluation import export, standalone  # pylint: disable=wrong-import-position

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "JAX_PLATFORMS": "cpu"}
os.environ.update(OFFLINE)


def _model(arch):
  return make_model(arch, vocab_size=vocabulary.DEMO_VOCAB_SIZE)


def _params(model):
  """Init with every tensor perturbed, so that norm scales differ from 1."""
  rng = np.random.RandomState(7)
  return jax.tree.map(
    lambda p: np.asarray(p) + 0.1 * rng.standard_normal(p.shape).astype(np.float32), init(model)
  )


@pytest.fixture(scope="module")
def demo_vocab(demo_root):
  return os.path.join(demo_root, "vocab", f"spm_{vocabulary.DEMO_VOCAB_SIZE}_bpe.model")


@pytest.fixture(scope="module")
def demo_texts(demo_root):
  texts = []
  for path in sorted(glob.glob(os.path.join(demo_root, "raw", "**", "*.jsonl"), recursive=True)):
    with open(path) as f:
      texts += [next(iter(json.loads(line).values())) for line in f]
  return texts


@pytest.fixture(scope="module", params=ARCHS)
def exported(request, demo_vocab, tmp_path_factory):
  arch = request.param
  model = _model(arch)
  params = _params(model)
  out = str(tmp_path_factory.mktemp(f"hf_{arch}"))
  export.export(model, params, out, demo_vocab)
  auto = (
    transformers.AutoModelForSeq2SeqLM if arch == "redllm" else transformers.AutoModelForCausalLM
  )
  hf_model = auto.from_pretrained(out, trust_remote_code=True).eval()
  return arch, model, params, out, hf_model


def _ids(demo_vocab, demo_texts, lengths, skip=0):
  """Token-id pieces of real documents, one per length."""
  sp = sentencepiece.SentencePieceProcessor(model_file=demo_vocab)
  documents = [text for text in demo_texts if len(text) > 1000][::7]
  return [sp.encode(text)[skip : skip + n] for text, n in zip(documents, lengths)]


def _long(array):
  return torch.as_tensor(np.asarray(array)).long()


def test_logits_equal_jax_on_demo_text_with_padding(exported, demo_vocab, demo_texts):
  arch, model, params, _, hf_model = exported
  prompts = _ids(demo_vocab, demo_texts, [12, 5, 9])
  answers = _ids(demo_vocab, demo_texts, [6, 11, 3], skip=20)
  batch = model.prefix_lm_batch(prompts, answers)
  expected = np.asarray(jax.jit(model.logits)(params, batch))
  real = batch["decoder_target_tokens"] > 0
  with torch.no_grad():
    if arch == "redllm":
      encoder = batch["encoder_input_tokens"]
      got = hf_model(
        input_ids=_long(encoder),
        attention_mask=_long(encoder > 0),
        decoder_input_ids=_long(batch["decoder_input_tokens"]),
        decoder_attention_mask=_long(real),
        use_cache=False,
      ).logits
    else:  # [BOS, prompt, answer], right-padded; BiAttn reads [BOS, prompt] bidirectionally.
      got = hf_model(
        input_ids=_long(batch["decoder_input_tokens"]),
        attention_mask=_long(real),
        prefix_mask=_long(batch["decoder_causal_attention"]),
        use_cache=False,
      ).logits
  assert np.abs(got.numpy() - expected)[real].max() < 1e-4
  assert np.abs(expected[real]).max() > 1.0  # Not a comparison of near-zero logits.


def _jax_greedy(model, params, prompts, eos_id, max_new_tokens):
  lengths = np.array([len(p) for p in prompts], np.int32)
  padded = np.zeros((len(prompts), lengths.max()), np.int32)
  for row, prompt in zip(padded, prompts):
    row[: len(prompt)] = prompt
  out = jax.jit(model.predict_batch, static_argnums=(4,))(
    params,
    jnp.asarray(padded),
    jnp.asarray(lengths),
    jax.random.key(0),
    DecodingConfig(max_new_tokens=max_new_tokens, eos_id=eos_id),
  )
  return np.asarray(out.tokens)


def _hf_greedy(
  arch, hf_model, tokenizer, prompts, eos_id, max_new_tokens, with_mask=True, **generate_kwargs
):
  """HF generate, the batch padded by the tokenizer (DecLLM: BOS first, left-padded)."""
  bos = [] if arch == "redllm" else [tokenizer.bos_token_id]
  rows = tokenizer.pad({"input_ids": [bos + p for p in prompts]}, return_tensors="pt")
  if not with_mask:
    del rows["attention_mask"]
  with torch.no_grad():
    out = hf_model.generate(
      **rows, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos_id, **generate_kwargs
    )
  out = out[:, 1:] if arch == "redllm" else out[:, rows["input_ids"].shape[1] :]
  return np.pad(out.numpy(), ((0, 0), (0, max_new_tokens - out.shape[1])))


def test_greedy_generate_equals_predict_batch_with_the_cache(exported, demo_vocab, demo_texts):
  arch, model, params, out, hf_model = exported
  tokenizer = transformers.AutoTokenizer.from_pretrained(out, trust_remote_code=True)
  prompts = _ids(demo_vocab, demo_texts, [9, 2, 6, 4])
  steps = 10
  # A stop token these weights emit early in one row but not in all, so that rows
  # stop at different steps (random weights rarely emit the real EOS).
  free = _jax_greedy(model, params, prompts, -1, steps)
  stop = int(free[1, 2])
  expected = _jax_greedy(model, params, prompts, stop, steps)
  assert (expected == 0).any() and not (expected == 0).all()

  calls = {"embed": [], "cross_kv": 0}
  hooks = [
    hf_model.embed.register_forward_hook(
      lambda module, args, output: calls["embed"].append(args[0].shape[1])
    )
  ]
  if arch == "redllm":
    for layer in hf_model.decoder.layers:
      hooks.append(
        layer.cross_attention.key.register_forward_hook(
          lambda *_: calls.__setitem__("cross_kv", calls["cross_kv"] + 1)
        )
      )
  got = _hf_greedy(arch, hf_model, tokenizer, prompts, stop, steps)
  for hook in hooks:
    hook.remove()
  np.testing.assert_array_equal(got, expected)
  if arch != "redllm":  # Without a mask, the BOS (id 0 = pad) still counts as a token.
    np.testing.assert_array_equal(
      _hf_greedy(arch, hf_model, tokenizer, prompts, stop, steps, with_mask=False), expected
    )
  # Without the cache every step rereads the whole sequence: BiAttn's prefix stays the prompt.
  np.testing.assert_array_equal(
    _hf_greedy(arch, hf_model, tokenizer, prompts, stop, steps, use_cache=False), expected
  )
  # Cached: after the prompt, every forward reads one new token.
  decoder_widths = calls["embed"][1:] if arch == "redllm" else calls["embed"]
  assert decoder_widths[0] == (1 if arch == "redllm" else 1 + max(map(len, prompts)))
  assert set(decoder_widths[1:]) == {1}
  if arch == "redllm":  # Cross-attention K/V: once per layer for the whole generation.
    assert calls["cross_kv"] == model.config.num_decoder_layers


def test_tokenizer_ids_equal_sentencepiece(exported, demo_vocab, demo_texts):
  arch, _, _, out, _ = exported
  tokenizer = transformers.AutoTokenizer.from_pretrained(out)
  sp = sentencepiece.SentencePieceProcessor(model_file=demo_vocab)
  edge = [
    "  two leading spaces",
    "trailing  ",
    "tabs\tand\nnew\n\nlines \n",
    "a  b   c",
    "",
    " ",
    "unknown: 日本語 ☃ 🎉",
    "literal </s> and <pad> stay text",
    "ΑΒΓ café naïve",
  ]
  texts = demo_texts[:400] + edge
  for text in texts:
    ids = sp.encode(text)
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == ids, text[:80]
    assert tokenizer.decode(ids) == sp.decode(ids), text[:80]
  assert any(2 in sp.encode(t) for t in edge)  # The unknown-piece path ran.
  bos = [functional.BOS_ID] if arch != "redllm" else []
  assert tokenizer("Hello world")["input_ids"] == bos + sp.encode("Hello world")
  assert tokenizer.padding_side == ("right" if arch == "redllm" else "left")
  assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)


def test_config_json_serves_both_loaders(exported):
  arch, model, _, out, hf_model = exported
  with open(os.path.join(out, "config.json")) as f:
    meta = json.load(f)
  assert meta["format"] == standalone.FORMAT and meta["config"]["d_model"] == model.config.d_model
  assert meta["model_type"] == type(hf_model.config).model_type == "redllm_jax"
  assert meta["architectures"] == [type(hf_model).__name__]
  assert hf_model.config.is_encoder_decoder == (arch == "redllm")
  assert (
    meta["conventions"]["qkv_norm_before_rope"]
    and not meta["conventions"]["input_embeddings_scaled"]
  )
  assert standalone.load(out).architecture == model.architecture
  # Rotate-half, as the conventions say: dimension i pairs with i + head_dim / 2.
  x = np.zeros((1, 1, 1, 8), np.float32)
  x[..., 0] = 1.0
  rotated = np.asarray(functional.apply_rope(jnp.asarray(x), jnp.full((1, 1), 3), 10000.0))[0, 0, 0]
  np.testing.assert_allclose(rotated[[0, 4]], [np.cos(3.0), np.sin(3.0)], atol=1e-6)
  assert "rotate_half" in meta["conventions"]["rope"]


FRESH_PROCESS = """
import json, sys
import torch, transformers
out, arch = sys.argv[1], sys.argv[2]
auto = transformers.AutoModelForSeq2SeqLM if arch == "redllm" else transformers.AutoModelForCausalLM
model = auto.from_pretrained(out, trust_remote_code=True)
tokenizer = transformers.AutoTokenizer.from_pretrained(out, trust_remote_code=True)
rows = tokenizer(["In the beginning God created", "Python"], padding=True, return_tensors="pt")
with torch.no_grad():
  if arch == "redllm":
    logits = model(**rows, decoder_input_ids=torch.zeros((2, 1), dtype=torch.long)).logits[:, -1]
  else:
    logits = model(**rows).logits[:, -1]
  generated = model.generate(**rows, max_new_tokens=3, do_sample=False)
heavy = sorted(n for n in ("jax", "flax", "tensorflow", "redllm_jax") if n in sys.modules)
print(json.dumps({"ids": rows["input_ids"].tolist(), "mask": rows["attention_mask"].tolist(),
                  "logits": logits.tolist(),
                  "generated": generated.shape[1], "heavy": heavy}))
"""


@pytest.mark.parametrize("arch", ["decllm", pytest.param("redllm", marks=pytest.mark.slow)])
def test_export_command_then_transformers_in_a_fresh_process(arch, demo_vocab, tmp_path):
  model = _model(arch)
  params = jax.tree.map(jnp.asarray, _params(model))
  model_dir = str(tmp_path / "run")
  meta = dict(model.describe(), vocabulary=vocabulary.record_vocabulary(model_dir, demo_vocab))
  checkpointer = checkpoints.Checkpointer(model_dir, 1, async_save=False)
  checkpointer.save(5, params, {"unused": jnp.zeros(2)}, meta, force=True)
  checkpointer.manager.wait_until_finished()
  out = str(tmp_path / "export")
  env = {**os.environ, **OFFLINE}
  command = [
    sys.executable,
    "-m",
    "redllm_jax.evaluation.export",
    "--gin_file=runs/export.gin",
    f"--gin.CHECKPOINT_PATH='{model_dir}'",
    f"--gin.EXPORT_DIR='{out}'",
  ]
  result = subprocess.run(
    command,
    capture_output=True,
    text=True,
    timeout=300,
    env=env,
    cwd=str(tmp_path),
    preexec_fn=lambda: os.umask(0o022),
  )
  assert result.returncode == 0, result.stderr[-2000:]
  # Every file, model.safetensors included, is 0644 under umask 022.
  modes = {name: stat.S_IMODE(os.stat(os.path.join(out, name)).st_mode) for name in os.listdir(out)}
  assert set(modes.values()) == {0o644}, modes
  assert {"tokenizer.json", "spm.model", "modeling_redllm_jax.py"} <= set(modes)

  fresh = subprocess.run(
    [sys.executable, "-c", FRESH_PROCESS, out, arch],
    capture_output=True,
    text=True,
    timeout=300,
    env=env,
    cwd=str(tmp_path),
  )
  assert fresh.returncode == 0, fresh.stderr[-2000:]
  report = json.loads(fresh.stdout.strip().splitlines()[-1])
  assert report["heavy"] == [] and report["generated"] > 1
  ids = np.array(report["ids"], np.int32)
  if arch == "redllm":
    batch = {
      "encoder_input_tokens": ids,
      "decoder_input_tokens": np.zeros((2, 1), np.int32),
      "decoder_target_tokens": np.ones((2, 1), np.int32),
    }
    expected = np.asarray(model.logits(params, batch))[:, -1]
  else:  # Left-padded by the tokenizer ([pad.., BOS, text]): each row on its own, unpadded.
    rows = [row[len(row) - sum(mask) :] for row, mask in zip(ids, report["mask"])]
    expected = np.stack(
      [
        np.asarray(
          model.logits(
            params,
            {
              "decoder_input_tokens": row[None],
              "decoder_target_tokens": np.ones((1, len(row)), np.int32),
            },
          )
        )[0, -1]
        for row in rows
      ]
    )
  np.testing.assert_allclose(np.array(report["logits"]), expected, atol=1e-4)


def _cross_entropy(logits, labels):
  """Mean cross-entropy over labels != -100, computed here from the logits (numpy)."""
  logits = np.asarray(logits, np.float64)
  log_z = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
  keep = labels != -100
  target = np.take_along_axis(logits, np.where(keep, labels, 0)[..., None], -1)[..., 0]
  return (log_z - target)[keep].mean()


def test_labels_give_the_jax_per_token_loss(exported, demo_vocab, demo_texts):
  """lm-eval's `hf` model calls model(input_ids, attention_mask, labels) on seq2seq models."""
  arch, model, params, _, hf_model = exported
  prompts = _ids(demo_vocab, demo_texts, [12, 5, 9])
  answers = _ids(demo_vocab, demo_texts, [6, 11, 3], skip=20)
  batch = model.prefix_lm_batch(prompts, answers)
  _, sums = jax.jit(model.loss_fn)(params, batch)
  jax_loss = float(sums["cross_entropy"] / sums["num_tokens"])
  targets, weights = batch["decoder_target_tokens"], batch["decoder_loss_weights"]
  with torch.no_grad():
    if arch == "redllm":  # No decoder_input_ids: built from the labels (shifted right, start 0).
      encoder = batch["encoder_input_tokens"]
      labels = np.where(weights > 0, targets, -100)
      out = hf_model(
        input_ids=_long(encoder), attention_mask=_long(encoder > 0), labels=_long(labels)
      )
      scored = out.logits.numpy()
    else:  # [BOS, prompt, answer]: HF shifts inside, logits[:, :-1] against labels[:, 1:].
      ids = np.pad(targets, ((0, 0), (1, 0)))
      mask = np.pad(targets > 0, ((0, 0), (1, 0)), constant_values=True)
      labels = np.pad(np.where(weights > 0, targets, -100), ((0, 0), (1, 0)), constant_values=-100)
      prefix = np.pad(batch["decoder_causal_attention"], ((0, 0), (0, 1)))
      out = hf_model(
        input_ids=_long(ids),
        attention_mask=_long(mask),
        prefix_mask=_long(prefix),
        labels=_long(labels),
        use_cache=False,
      )
      scored, labels = out.logits.numpy()[:, :-1], labels[:, 1:]
  assert out.loss is not None and out.loss.ndim == 0
  np.testing.assert_allclose(float(out.loss), _cross_entropy(scored, labels), rtol=1e-5)
  np.testing.assert_allclose(float(out.loss), jax_loss, rtol=1e-4)
  if arch != "redllm":  # A misspelt argument is an error, not silently ignored.
    with pytest.raises(TypeError, match="prefix_mak"):
      hf_model(input_ids=_long(ids), prefix_mak=_long(prefix))


def test_plain_forward_is_causal(exported, demo_vocab, demo_texts):
  """model(input_ids) without prefix_mask (lm-eval's scoring call) never reads later tokens,
  BiAttn included: the whole-prompt prefix is generate's default only."""
  arch, _, _, _, hf_model = exported
  if arch == "redllm":
    pytest.skip("the decoder of RedLLM is causal by construction")
  ids = np.array([[0] + _ids(demo_vocab, demo_texts, [11])[0]])
  changed = ids.copy()
  changed[0, 7:] = (changed[0, 7:] + 5) % vocabulary.DEMO_VOCAB_SIZE
  with torch.no_grad():
    logits, logits_changed = (
      hf_model(input_ids=_long(x), use_cache=False).logits.numpy() for x in (ids, changed)
    )
  np.testing.assert_allclose(logits_changed[:, :7], logits[:, :7], atol=1e-5)
  assert np.abs(logits_changed[:, 7:] - logits[:, 7:]).max() > 1e-2
