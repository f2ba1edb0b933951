r"""Exports a checkpoint for evaluation: safetensors + config.json + the SentencePiece model.

  python -m redllm_jax.evaluation.export --gin_file=models/redllm.gin \
      --gin_file=models/sizes/tiny.gin --gin_file=data/demo_pretrain_red.gin \
      --gin_file=runs/export.gin --gin.CHECKPOINT_PATH=\"/tmp/run/checkpoints/1000\" \
      --gin.EXPORT_DIR=\"/tmp/export\"

The data gin binds VOCABULARY, whose SentencePiece model is copied as spm.model.

The export directory is read by `standalone.py` and `functional.py`, copied into it
(jax + numpy + safetensors + sentencepiece only). Tensor names are flat and layer-unstacked, whatever the
training layout (scanned or not): `decoder.layers.3.mlp.wo.kernel`. Nothing is
pickled. config.json holds every TransformerConfig field, the architecture and the
BiAttn flag.
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

from redllm_jax import checkpoints, functional, gin_utils
from redllm_jax.evaluation import standalone
from redllm_jax.models import BaseModel, unstack_layers


def flatten_params(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Flat '.'-joined names, one tensor per layer (scanned stacks are unstacked)."""
  flat = {}
  host = jax.tree.map(lambda a: np.asarray(jax.device_get(a)), params)
  for key, value in flax.traverse_util.flatten_dict(unstack_layers(host)).items():
    key = [part.replace("layers_", "layers.") if part.startswith("layers_") else part
           for part in key]
    flat[".".join(key)] = np.ascontiguousarray(value)
  return flat


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


def export(model, params: Any, out_dir: str, vocab_path: str | None = None) -> dict:
  """Writes model.safetensors, config.json (and spm.model) to `out_dir`; returns the config."""
  tensors = flatten_params(params)
  meta = export_config(model)
  # Refuse to write an export the loader would refuse.
  standalone.check_tensors(meta["architecture"], meta["config"],
                           {k: v.shape for k, v in tensors.items()})
  meta["num_params"] = int(sum(v.size for v in tensors.values()))
  os.makedirs(out_dir, exist_ok=True)
  safetensors.numpy.save_file(tensors, os.path.join(out_dir, standalone.WEIGHTS_FILE),
                              metadata={"format": standalone.FORMAT})
  if vocab_path:
    tf.io.gfile.copy(vocab_path, os.path.join(out_dir, standalone.VOCAB_FILE), overwrite=True)
    meta["vocabulary"] = standalone.VOCAB_FILE
  with open(os.path.join(out_dir, standalone.CONFIG_FILE), "w") as f:
    json.dump(meta, f, indent=1)
  # The loader and the maths it shares with the Flax layers travel together.
  shutil.copy(standalone.__file__, os.path.join(out_dir, "standalone.py"))
  shutil.copy(functional.__file__, os.path.join(out_dir, standalone.SHARED_MATHS_FILE))
  return meta


@gin.configurable
def export_checkpoint(model: BaseModel = gin.REQUIRED, checkpoint_path: str = gin.REQUIRED,
                      export_dir: str = gin.REQUIRED,
                      vocabulary: seqio.Vocabulary = gin.REQUIRED) -> dict:
  """Exports the checkpoint's parameters, with the vocabulary's SentencePiece model."""
  params = checkpoints.load_params(checkpoint_path, model)
  vocab_path = getattr(vocabulary, "sentencepiece_model_file", None)
  meta = export(model, params, export_dir, vocab_path)
  print(f"exported {meta['architecture']} ({meta['num_params']:,} params) to {export_dir}"
        + ("" if vocab_path else " (not a SentencePiece vocabulary: spm.model not copied)"))
  return meta


def main() -> None:
  export_checkpoint()


if __name__ == "__main__":
  gin_utils.run(__spec__.name)
