"""Export round trip: Flax params -> safetensors + config.json -> pure-jax standalone loader."""

import functools
import json
import os
import stat
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import init, lm_batch, make_model, random_tokens
from redllm_jax import checkpoints
from redllm_jax.evaluation import export, standalone
from redllm_jax.errors import ConfigError
from redllm_jax.decoding import DecodingConfig


def _perturbed(model, train_steps=0):
  """Init with every tensor perturbed (norm scales away from 1); optionally a few Adam steps."""
  params = init(model)
  rng = np.random.RandomState(7)
  params = jax.tree.map(
    lambda p: np.asarray(p) + 0.1 * rng.standard_normal(p.shape).astype(np.float32), params
  )
  if train_steps:  # plain jax.grad + optax, as a trained checkpoint would be
    batch = lm_batch("redllm" if model.architecture == "redllm" else "decllm_biattn", seed=3)
    opt = optax.adam(1e-2)
    state = opt.init(params)
    grad = jax.jit(jax.grad(lambda p: model.loss_fn(p, batch)[0]))
    for _ in range(train_steps):
      updates, state = opt.update(grad(params), state)
      params = optax.apply_updates(params, updates)
  return params


def _standalone_logits(loaded, arch, batch):
  p, cfg = loaded.params, loaded.config
  if arch == "redllm":
    return standalone.redllm_logits(
      p,
      cfg,
      batch["encoder_input_tokens"],
      batch["decoder_input_tokens"],
      decoder_segment_ids=(batch["decoder_target_tokens"] > 0).astype(np.int32),
    )
  tokens = batch["decoder_input_tokens"]
  segments = (batch["decoder_target_tokens"] > 0).astype(np.int32)
  prefix = batch["decoder_causal_attention"] if arch == "decllm_biattn" else None
  return standalone.decllm_logits(p, cfg, tokens, None, segments, prefix)


@pytest.fixture(scope="module", params=["decllm", "decllm_biattn", "redllm"])
def exported(request, tmp_path_factory):
  arch = request.param
  model = make_model(arch, scan_layers=arch != "decllm_biattn")  # both layouts
  params = _perturbed(model)
  out = str(tmp_path_factory.mktemp(f"export_{arch}"))
  export.export(model, params, out)
  return arch, model, params, out


def test_logits_round_trip_within_1e5(exported):
  arch, model, params, out = exported
  loaded = standalone.load(out)
  assert loaded.architecture == model.architecture
  batch = lm_batch(arch, seed=11, batch=3)
  # Padding in one row: the masks must agree too.
  batch["decoder_target_tokens"][0, -2:] = 0
  original = np.asarray(jax.jit(model.logits)(params, batch))
  mine = np.asarray(jax.jit(functools.partial(_standalone_logits, loaded, arch))(batch))
  real = batch["decoder_target_tokens"] > 0
  assert np.abs(original - mine)[real].max() < 1e-5


def test_greedy_decode_equals_predict_batch(exported):
  arch, model, params, out = exported
  loaded = standalone.load(out)
  lengths = np.array([7, 3, 5], np.int32)
  prompts = random_tokens(5, (3, 7))
  prompts[np.arange(7)[None] >= lengths[:, None]] = 0
  cfg = DecodingConfig(max_new_tokens=6, eos_id=-1)
  expected = jax.jit(model.predict_batch, static_argnums=(4,))(
    params, jnp.asarray(prompts), jnp.asarray(lengths), jax.random.key(0), cfg
  )
  tokens, got_lengths = loaded.greedy_decode(
    [p[:n].tolist() for p, n in zip(prompts, lengths)], 6, eos_id=-1
  )
  np.testing.assert_array_equal(tokens, np.asarray(expected.tokens))
  np.testing.assert_array_equal(got_lengths, np.asarray(expected.lengths))


def test_config_json_describes_architecture(exported):
  arch, model, _, out = exported
  with open(os.path.join(out, "config.json")) as f:
    meta = json.load(f)
  assert meta["architecture"] == model.architecture
  assert meta["inputs_bidirectional_attention"] == (arch == "decllm_biattn")
  assert meta["config"]["d_model"] == model.config.d_model
  assert meta["config"]["attention_output_norm"] == model.config.attention_output_norm
  names = set(standalone.safetensors.numpy.load_file(os.path.join(out, "model.safetensors")))
  assert "decoder.layers.0.self_attention.query.kernel" in names


def _edit_config(out, tmp_path, fn):
  bad = tmp_path / "bad"
  bad.mkdir()
  for name in ("model.safetensors",):
    os.symlink(os.path.join(out, name), bad / name)
  with open(os.path.join(out, "config.json")) as f:
    meta = json.load(f)
  fn(meta)
  (bad / "config.json").write_text(json.dumps(meta))
  return str(bad)


@pytest.mark.parametrize(
  "edit,message",
  [
    (lambda m: m["config"].update(d_ff=99), "has shape"),
    (lambda m: m["config"].update(num_layers=9, num_decoder_layers=9), "missing decoder.layers."),
    (lambda m: m.update(architecture="gpt"), "unknown architecture"),
    (
      lambda m: m["config"].update(attention_output_norm=not m["config"]["attention_output_norm"]),
      "does not match",
    ),
  ],
)
def test_mismatched_config_is_refused_in_one_line(exported, tmp_path, edit, message):
  _, _, _, out = exported
  bad = _edit_config(out, tmp_path, edit)
  with pytest.raises(standalone.ExportError) as e:
    standalone.load(bad)
  assert message in str(e.value) and "\n" not in str(e.value)


def test_missing_export_dir_is_one_line(tmp_path):
  with pytest.raises(standalone.ExportError, match="export file not found"):
    standalone.load(str(tmp_path / "nope"))


def test_standalone_imports_no_forbidden_module(exported):
  _, _, _, out = exported
  code = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("standalone", {os.path.join(out, "standalone.py")!r})
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
m = mod.load({out!r})
m.greedy_decode([[5, 6, 7]], 3)
bad = sorted(n for n in sys.modules if n.split('.')[0] in
             ('flax', 'tensorflow', 'seqio', 'gin', 'redllm_jax', 'redllm_jax_tasks', 'optax', 'orbax', 'torch'))
print('FORBIDDEN', bad)
"""
  result = subprocess.run(
    [sys.executable, "-c", code],
    capture_output=True,
    text=True,
    timeout=120,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert "FORBIDDEN []" in result.stdout


@pytest.mark.parametrize(
  "arch,scan", [("decllm", True), ("decllm_biattn", False), ("redllm", True)]
)
def test_load_export_round_trips_a_checkpoint_exactly(arch, scan, tmp_path):
  model = make_model(arch, scan_layers=scan)
  checkpointer = checkpoints.Checkpointer(str(tmp_path / "run"), 1, async_save=False)
  params = jax.tree.map(jnp.asarray, _perturbed(model))
  checkpointer.save(3, params, {"unused": jnp.zeros(2)}, model.describe(), force=True)
  checkpointer.manager.wait_until_finished()
  restored_model, restored = checkpoints.load_model_and_params(str(tmp_path / "run"))
  export.export(restored_model, restored, str(tmp_path / "export"))

  loaded_model, loaded, vocab = export.load_export(str(tmp_path / "export"))
  assert loaded_model.describe() == model.describe() and vocab is None
  assert jax.tree.structure(loaded) == jax.tree.structure(restored)
  for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(restored)):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, np.asarray(b))


def test_load_export_errors_are_one_line(tmp_path):
  with pytest.raises(ConfigError, match="export file not found") as e:
    export.load_export(str(tmp_path / "nope"))
  assert "\n" not in e.value.message


def test_standalone_default_arguments_see_the_bos(exported):
  """decllm_logits / redllm_logits with only tokens equal the Flax model: the BOS (id 0) is
  a real token, not padding (a default of `tokens > 0` hid it, logits up to 84% off)."""
  arch, model, params, out = exported
  loaded = standalone.load(out)
  windows = random_tokens(13, (2, 9))
  batch = model.pretraining_batch(windows)
  expected = np.asarray(jax.jit(model.logits)(params, batch))
  if arch == "redllm":
    got = jax.jit(lambda e, d: standalone.redllm_logits(loaded.params, loaded.config, e, d))(
      batch["encoder_input_tokens"], batch["decoder_input_tokens"]
    )
  else:
    got = jax.jit(lambda t: standalone.decllm_logits(loaded.params, loaded.config, t))(
      batch["decoder_input_tokens"]
    )
  assert np.abs(np.asarray(got) - expected).max() < 1e-5


def test_every_export_file_respects_the_umask(tmp_path):
  """model.safetensors was 0600 (safetensors' own mode) beside 0644 files."""
  model = make_model("decllm")
  previous = os.umask(0o027)
  try:
    export.export(model, init(model), str(tmp_path))
  finally:
    os.umask(previous)
  modes = {name: stat.S_IMODE(os.stat(tmp_path / name).st_mode) for name in os.listdir(tmp_path)}
  assert "model.safetensors" in modes and set(modes.values()) == {0o640}, modes


def test_load_export_of_a_mismatched_config_is_one_line(exported, tmp_path):
  _, _, _, out = exported
  bad = _edit_config(out, tmp_path, lambda m: m["config"].update(d_ff=99))
  with pytest.raises(ConfigError, match="has shape") as e:
    export.load_export(bad)
  assert "\n" not in e.value.message


def test_export_refuses_a_non_empty_folder_and_replaces_it_whole_with_overwrite(tmp_path):
  out = tmp_path / "export"
  dec, red = make_model("decllm"), make_model("redllm")
  export.export(dec, init(dec), str(out))
  (out / "notes.txt").write_text("the user's own file")
  with pytest.raises(
    ConfigError,
    match="is not empty; choose another or bind export.export_checkpoint.overwrite=True",
  ):
    export.export(red, init(red), str(out))
  assert json.loads((out / "config.json").read_text())["architecture"] == "decllm"
  export.export(red, init(red), str(out), overwrite=True)
  assert json.loads((out / "config.json").read_text())["architecture"] == "redllm"
  assert not (out / "notes.txt").exists()  # replaced, not merged
  assert os.listdir(tmp_path) == ["export"]  # no staging folder left beside it
