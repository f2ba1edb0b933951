r"""Exports a checkpoint: safetensors + config.json + the SentencePiece model, for our
standalone loader and for Hugging Face transformers.

  python -m redllm_jax.evaluation.export --gin_file=runs/export.gin \
      --gin.CHECKPOINT_PATH=\"/tmp/run/checkpoints/1000\" --gin.EXPORT_DIR=\"/tmp/export\"

An EXPORT_DIR that is not empty is refused unless `export.export_checkpoint.overwrite=True`
is bound; the export is written beside it and renamed into place.

The checkpoint says which model it holds and which vocabulary it was trained with
(`vocabulary.vocabulary_path`): that SentencePiece model is copied as spm.model
(an imported checkpoint's tokenizer.json is copied as it is, `hf.copy_tokenizer`).
Binding `export.export_checkpoint.vocabulary` (e.g. to a data gin's %VOCABULARY)
overrides it; a vocabulary other than the checkpoint's is a one-line error.

The export directory is read by `standalone.py` and `functional.py`, copied into it
(jax + numpy + safetensors + sentencepiece only), by `load_export` (the Flax model
again), and by transformers (`trust_remote_code=True`: the torch-only
configuration_redllm_jax.py and modeling_redllm_jax.py are copied too, and
tokenizer.json is converted from spm.model; docs/huggingface.md). Tensor names are
flat and layer-unstacked, whatever the training layout (scanned or not):
`decoder.layers.3.mlp.wo.kernel`; they are also the PyTorch modules' parameter
names. Nothing is pickled. config.json is one file for all readers: every
TransformerConfig field, the architecture and the BiAttn flag, plus transformers'
`model_type`, `architectures`, `auto_map` and the conventions (RoPE layout, norms
before RoPE, unscaled input embeddings, the logit scale).
"""

import json
import os
import shutil
from typing import Any, Mapping

import flax
import jax
import numpy as np
import safetensors.numpy

import gin
import seqio
import tensorflow as tf

from redllm_jax import checkpoints, errors, functional, gin_utils, hf, models
from redllm_jax.data import vocabulary as vocabulary_lib
from redllm_jax.evaluation import standalone
from redllm_jax.models import BaseModel, unstack_layers


def flatten_params(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Flat '.'-joined names, one tensor per layer (scanned stacks are unstacked)."""
  flat = {}
  host = jax.tree.map(lambda a: np.asarray(jax.device_get(a)), params)
  for key, value in flax.traverse_util.flatten_dict(unstack_layers(host)).items():
    key = [
      part.replace("layers_", "layers.") if part.startswith("layers_") else part for part in key
    ]
    flat[".".join(key)] = np.ascontiguousarray(value)
  return flat


def _stack_layers(params: Mapping[str, Any]) -> dict:
  """The inverse of `models.unstack_layers`: "layers_0".."layers_{n-1}" as one "layers" stack."""
  if not isinstance(params, Mapping):
    return params
  layers = sorted(
    (int(k.removeprefix("layers_")), v) for k, v in params.items() if k.startswith("layers_")
  )
  out = {k: _stack_layers(v) for k, v in params.items() if not k.startswith("layers_")}
  if layers:
    out["layers"] = jax.tree.map(lambda *a: np.stack(a), *[v for _, v in layers])
  return out


def unflatten_params(tensors: Mapping[str, np.ndarray], model: BaseModel) -> dict:
  """The inverse of `flatten_params`, in `model`'s layout (restacked if it scans layers)."""
  nested = {}
  for name, value in tensors.items():
    key = name.replace("layers.", "layers_").split(".")
    nested[tuple(key)] = value
  params = flax.traverse_util.unflatten_dict(nested)
  if model.config.scan_layers:
    params = _stack_layers(params)
  abstract = model.abstract_params()
  if jax.tree.structure(params) != jax.tree.structure(abstract):
    raise errors.ConfigError("export tensors do not fit the model config.json describes")
  return jax.tree.map(lambda p, a: np.asarray(p, a.dtype), params, abstract)


def load_export(export_dir: str) -> tuple[BaseModel, dict, str | None]:
  """The Flax model an export describes, its parameters and its spm.model path (or None).

  Scores an export through the very model code that scores orbax checkpoints.
  A missing, malformed or mismatching export is a one-line ConfigError.
  """
  try:
    meta = standalone.read_config(export_dir)
    tensors = safetensors.numpy.load_file(os.path.join(export_dir, standalone.WEIGHTS_FILE))
    standalone.check_tensors(
      meta["architecture"], meta["config"], {k: v.shape for k, v in tensors.items()}
    )
  except standalone.ExportError as e:
    raise errors.ConfigError(str(e)) from None
  model = models.from_description(meta)
  vocab = os.path.join(export_dir, meta.get("vocabulary", standalone.VOCAB_FILE))
  return model, unflatten_params(tensors, model), vocab if os.path.exists(vocab) else None


def export_config(model: BaseModel) -> dict:
  """config.json contents: format, architecture, BiAttn flag, every config field."""
  return {
    "format": standalone.FORMAT,
    "format_version": standalone.FORMAT_VERSION,
    **model.describe(),
    "decoder_start_token_id": 0,
    "special_ids": {"pad": 0, "eos": 1, "unk": 2},
    "weights": standalone.WEIGHTS_FILE,
  }


def export(
  model, params: Any, out_dir: str, vocab_path: str | None = None, overwrite: bool = False
) -> dict:
  """Writes model.safetensors, config.json (and spm.model) to `out_dir`; returns the config.

  A non-empty `out_dir` is refused (a one-line ConfigError) unless `overwrite`. The
  files are written into a sibling folder first, which then takes `out_dir`'s
  place: a killed export never leaves a half-written or half-replaced folder.
  """
  out_dir = os.path.abspath(out_dir)
  check_export_dir(out_dir, overwrite)
  staging = f"{out_dir}.exporting-{os.getpid()}"
  shutil.rmtree(staging, ignore_errors=True)
  meta = _write_export(model, params, staging, vocab_path)
  _replace_folder(staging, out_dir)
  return meta


def check_export_dir(out_dir: str, overwrite: bool) -> None:
  """A one-line ConfigError for a file, or a non-empty folder unless `overwrite`."""
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise errors.ConfigError(f"EXPORT_DIR {out_dir} is a file, not a folder")
  if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
    raise errors.ConfigError(
      f"EXPORT_DIR {out_dir} is not empty; choose another or bind "
      "export.export_checkpoint.overwrite=True to replace it"
    )


def _replace_folder(source: str, target: str) -> None:
  """Puts `source` where `target` is: renames only, the old `target` removed last."""
  old = f"{target}.replaced-{os.getpid()}"
  if os.path.exists(target):
    os.rename(target, old)
  os.rename(source, target)
  shutil.rmtree(old, ignore_errors=True)


def _write_export(model, params: Any, out_dir: str, vocab_path: str | None) -> dict:
  tensors = flatten_params(params)
  meta = export_config(model)
  # Refuse to write an export the loader would refuse.
  standalone.check_tensors(
    meta["architecture"], meta["config"], {k: v.shape for k, v in tensors.items()}
  )
  meta["num_params"] = int(sum(v.size for v in tensors.values()))
  meta.update(hf.hf_fields(meta))
  os.makedirs(out_dir, exist_ok=True)
  weights = os.path.join(out_dir, standalone.WEIGHTS_FILE)
  # "pt": the tensors are plain row-major arrays, as transformers expects of the file.
  safetensors.numpy.save_file(
    tensors, weights, metadata={"format": "pt", "writer": standalone.FORMAT}
  )
  os.chmod(weights, _umasked(0o666))  # safetensors writes 0600; the other files respect the umask.
  if vocab_path and vocab_path.endswith(".json"):  # An imported checkpoint's tokenizer.json.
    meta["vocabulary"] = hf.copy_tokenizer(vocab_path, out_dir)
  elif vocab_path:
    tf.io.gfile.copy(vocab_path, os.path.join(out_dir, standalone.VOCAB_FILE), overwrite=True)
    meta["vocabulary"] = standalone.VOCAB_FILE
    if not hf.write_tokenizer(vocab_path, out_dir, meta["architecture"]):
      print("transformers is not installed (the `hf` extra): no tokenizer.json written")
  with open(os.path.join(out_dir, standalone.CONFIG_FILE), "w") as f:
    json.dump(meta, f, indent=1)
  # The loaders and the maths they share with the Flax layers travel together.
  shutil.copyfile(standalone.__file__, os.path.join(out_dir, "standalone.py"))
  shutil.copyfile(functional.__file__, os.path.join(out_dir, standalone.SHARED_MATHS_FILE))
  hf.copy_code(out_dir)
  return meta


def _umasked(mode: int) -> int:
  umask = os.umask(0)
  os.umask(umask)
  return mode & ~umask


@gin.configurable
def export_checkpoint(
  checkpoint_path: str = gin.REQUIRED,
  export_dir: str = gin.REQUIRED,
  vocabulary: seqio.Vocabulary | None = None,
  overwrite: bool = False,
) -> dict:
  """Exports the checkpoint's model and parameters, with its own SentencePiece model
  (or `vocabulary`'s, which must be the same file's bytes). A non-empty `export_dir`
  is refused unless `overwrite`."""
  check_export_dir(export_dir, overwrite)  # Before the checkpoint is read.
  model, params = checkpoints.load_model_and_params(checkpoint_path)
  if vocabulary is None:
    try:
      vocab_path = vocabulary_lib.vocabulary_path(checkpoint_path)
    except errors.ConfigError as e:
      raise errors.ConfigError(
        f"{e.message}, e.g. --gin_file=data/<its data gin> "
        "--gin.export.export_checkpoint.vocabulary=%VOCABULARY"
      ) from None
  else:
    vocab_path = vocabulary_lib.vocabulary_file(vocabulary)
    if vocab_path:
      vocabulary_lib.check_vocabulary(checkpoint_path, vocab_path, "export_checkpoint.vocabulary")
  meta = export(model, params, export_dir, vocab_path, overwrite)
  print(
    f"exported {meta['architecture']} ({meta['num_params']:,} params) to {export_dir}"
    + ("" if vocab_path else " (a vocabulary without a file: none copied)")
  )
  return meta


def main() -> None:
  export_checkpoint()


if __name__ == "__main__":
  gin_utils.run(__spec__.name)
