"""Cached decoding: equals teacher forcing, reuses cross-attention K/V, compiles once."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import VOCAB, init, make_model, random_tokens, small_config
from redllm_jax.decoding import DecodingConfig, decode_loop, filter_logits, sample_tokens

PROMPT_LENGTHS = np.array([7, 3, 5], np.int32)


def _prompts(max_len=7):
  tokens = random_tokens(3, (len(PROMPT_LENGTHS), max_len))
  tokens[np.arange(max_len)[None] >= PROMPT_LENGTHS[:, None]] = 0
  return jnp.asarray(tokens), jnp.asarray(PROMPT_LENGTHS)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _predict(model, params, tokens, lengths, cfg):
  return model.predict_batch(params, tokens, lengths, jax.random.key(0), cfg, return_logits=True)


def _teacher_forced_decllm(model, params, prompts, lengths, generated):
  rows = [np.concatenate([[0], p[:n], g]) for p, n, g in zip(prompts, lengths, generated)]
  width = max(map(len, rows))
  tokens = np.stack([np.pad(r, (0, width - len(r))) for r in rows]).astype(np.int32)
  real = np.stack([np.arange(width) < len(r) for r in rows]).astype(np.int32)
  prefix = (np.arange(width)[None] <= lengths[:, None]).astype(np.int32)
  positions = np.broadcast_to(np.arange(width, dtype=np.int32), tokens.shape)
  logits = jax.jit(model.network.apply)(
    {"params": params},
    tokens,
    positions,
    real,
    prefix=prefix if model.inputs_bidirectional_attention else None,
  )
  # The prediction of generated token t sits at stream index lengths + t.
  index = lengths[:, None] + np.arange(generated.shape[1])[None]
  return np.take_along_axis(np.asarray(logits), index[..., None], axis=1)


def _teacher_forced_redllm(model, params, prompts, lengths, generated):
  decoder_tokens = np.pad(generated[:, :-1], ((0, 0), (1, 0))).astype(np.int32)
  encoder_segments = (np.arange(prompts.shape[1])[None] < lengths[:, None]).astype(np.int32)
  index = lambda t: np.broadcast_to(np.arange(t.shape[1], dtype=np.int32), t.shape)
  return np.asarray(
    jax.jit(model.network.apply)(
      {"params": params},
      prompts,
      index(prompts),
      encoder_segments,
      decoder_tokens,
      index(decoder_tokens),
      np.ones_like(decoder_tokens),
    )
  )


# (scan_layers, cpu_weight_layout): the scanned decode (TPU's); scanned weights copied
# to the CPU layout (unrolled, kernels out-first); a model trained unscanned.
LAYOUTS = [(True, False), (True, True), (False, False)]


def _assert_cached_equals_teacher_forced(model, params, arch, prompts, lengths, cfg):
  """Cached decoding's logits equal teacher forcing on its own tokens; tokens are argmax."""
  out = _predict(model, params, prompts, lengths, cfg)
  generated = np.asarray(out.tokens)
  teacher = _teacher_forced_redllm if arch == "redllm" else _teacher_forced_decllm
  forced = teacher(model, params, np.asarray(prompts), np.asarray(lengths), generated)
  assert np.abs(np.asarray(out.logits) - forced).max() < 1e-4
  np.testing.assert_array_equal(generated, np.argmax(forced, axis=-1))


@pytest.mark.parametrize("scan_layers,cpu_weight_layout", LAYOUTS)
def test_cached_greedy_decoding_equals_teacher_forcing(arch, scan_layers, cpu_weight_layout):
  model = make_model(arch, scan_layers=scan_layers)
  params = init(model)
  prompts, lengths = _prompts()
  cfg = DecodingConfig(
    max_new_tokens=9,
    eos_id=-1,  # No early stop.
    cpu_weight_layout=cpu_weight_layout,
  )
  _assert_cached_equals_teacher_forced(model, params, arch, prompts, lengths, cfg)


def _dot_output_shapes(jaxpr):
  """Output shapes of every dot_general, recursing into scan/while/jit bodies."""
  shapes = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      shapes.append(tuple(eqn.outvars[0].aval.shape))
    for param in eqn.params.values():
      for sub in param if isinstance(param, (list, tuple)) else [param]:
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          shapes.extend(_dot_output_shapes(inner))
  return shapes


@pytest.mark.parametrize("scan_layers,cpu_weight_layout", LAYOUTS)
def test_cross_attention_kv_are_projected_once_and_never_in_decode_steps(
  scan_layers, cpu_weight_layout
):
  # heads x head_dim = 24, unlike d_model: out-first kernels project K/V flattened.
  cfg = small_config(scan_layers=scan_layers, head_dim=6)
  model = make_model("redllm", scan_layers=scan_layers, head_dim=6)
  params = init(model)
  prompts, lengths = _prompts(max_len=13)  # 13: a length no other axis has.
  kv_shapes = {
    (len(PROMPT_LENGTHS), 13, cfg.num_heads, cfg.head_dim),
    (len(PROMPT_LENGTHS), 13, cfg.num_heads * cfg.head_dim),
  }
  count = lambda jaxpr: sum(shape in kv_shapes for shape in _dot_output_shapes(jaxpr))
  net = model.network

  prefill = jax.make_jaxpr(lambda p, t, n: net.apply({"params": p}, t, n, 32, method=net.prefill))(
    params, prompts, lengths
  )
  prefill_kv = count(prefill.jaxpr)
  layers = 1 if scan_layers else cfg.num_decoder_layers
  encoder_layers = 1 if scan_layers else cfg.num_encoder_layers
  # Encoder Q, K, V per encoder layer, then cross K, V per decoder layer: once.
  assert prefill_kv == 3 * encoder_layers + 2 * layers

  _, state = net.apply({"params": params}, prompts, lengths, 32, method=net.prefill)
  step = jax.make_jaxpr(lambda p, t, s: net.apply({"params": p}, t, s, method=net.decode_step))(
    params, lengths, state
  )
  assert _dot_output_shapes(step.jaxpr) and count(step.jaxpr) == 0
  # The whole 32-step decode has the same projections as a prefill alone (one per
  # layer when the decode unrolls scanned layers).
  decoding = DecodingConfig(max_new_tokens=32, cpu_weight_layout=cpu_weight_layout)
  whole = jax.make_jaxpr(lambda p, t, n: model.predict_batch(p, t, n, jax.random.key(0), decoding))(
    params, prompts, lengths
  )
  unrolled = 3 * cfg.num_encoder_layers + 2 * cfg.num_decoder_layers
  assert count(whole.jaxpr) == (unrolled if cpu_weight_layout else prefill_kv)


def _fake_step(eos_at):
  """A step function whose greedy token is (step + 2), or EOS at eos_at[b]."""

  def step(token, state):
    count, calls = state
    logits = jax.nn.one_hot(jnp.full(eos_at.shape, count + 2), VOCAB)
    logits = jnp.where((eos_at == count)[:, None], jax.nn.one_hot(1, VOCAB), logits)
    return logits, (count + 1, calls + 1)

  return step


def test_eos_stops_each_example_and_the_loop():
  eos_at = jnp.array([2, 4])
  first = jax.nn.one_hot(jnp.array([5, 5]), VOCAB)
  out, traces = None, []
  step = _fake_step(eos_at)

  def counted(token, state):
    traces.append(1)
    return step(token, state)

  cfg = DecodingConfig(max_new_tokens=10)
  out = jax.jit(lambda s: decode_loop(counted, first, s, jax.random.key(0), cfg))(
    (jnp.int32(0), jnp.int32(0))
  )
  tokens = np.asarray(out.tokens)
  np.testing.assert_array_equal(tokens[0], [5, 2, 3, 1, 0, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(tokens[1], [5, 2, 3, 4, 5, 1, 0, 0, 0, 0])
  np.testing.assert_array_equal(np.asarray(out.lengths), [4, 6])
  assert len(traces) == 1  # One trace of the step: a single compiled loop body.


def test_length_limit_without_eos():
  out = decode_loop(
    _fake_step(jnp.array([99])),
    jax.nn.one_hot(jnp.array([5]), VOCAB),
    (jnp.int32(0), jnp.int32(0)),
    jax.random.key(0),
    DecodingConfig(max_new_tokens=4),
  )
  np.testing.assert_array_equal(np.asarray(out.tokens), [[5, 2, 3, 4]])
  assert int(out.lengths[0]) == 4


def test_predict_compiles_once_for_many_prompts():
  model = make_model("redllm")
  params = init(model)
  predict = jax.jit(model.predict_batch, static_argnames=("cfg", "return_logits"))
  cfg = DecodingConfig(max_new_tokens=6)
  for seed in range(3):
    tokens = jnp.asarray(random_tokens(seed, (3, 7)))
    predict(params, tokens, jnp.array([7, 2, 4]), jax.random.key(seed), cfg)
  assert predict._cache_size() == 1


def test_top_k_and_top_p_filters():
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
  keep = lambda **kw: np.asarray(filter_logits(logits, **kw) > -1e30)[0].tolist()
  assert keep(top_k=2, top_p=1.0) == [True, True, False, False]
  assert keep(top_k=0, top_p=0.5) == [True, False, False, False]
  assert keep(top_k=0, top_p=0.7) == [True, True, False, False]
  assert keep(top_k=0, top_p=0.81) == [True, True, True, False]


def test_temperature_sampling_follows_the_distribution():
  probs = np.array([0.6, 0.3, 0.1, 0.0])
  logits = jnp.log(jnp.asarray(probs)[None].repeat(4000, 0) + 1e-12)
  draws = np.asarray(sample_tokens(logits, jax.random.key(0), DecodingConfig(temperature=1.0)))
  freq = np.bincount(draws, minlength=4) / len(draws)
  np.testing.assert_allclose(freq, probs, atol=0.03)
  top1 = sample_tokens(logits, jax.random.key(1), DecodingConfig(temperature=1.0, top_k=1))
  assert np.all(np.asarray(top1) == 0)


# Imported Llama-family flags: grouped-query attention (caches hold 2 K/V heads for 4
# query heads), Q/K norms without the V norm, an untied output table.
LLAMA_FAMILY = dict(num_kv_heads=2, value_norm=False, tied_embeddings=False)


def test_llama_family_flags_decode_as_teacher_forcing(arch):
  model = make_model(arch, **LLAMA_FAMILY)
  params = init(model)
  prompts, lengths = _prompts()
  cfg = DecodingConfig(max_new_tokens=9, eos_id=-1, cpu_weight_layout=True)
  _assert_cached_equals_teacher_forced(model, params, arch, prompts, lengths, cfg)
