r"""Exports a checkpoint for evaluation: safetensors + config.json + the SentencePiece model.

  python -m redllm_jax.evaluation.export --gin_file=models/redllm_tiny.gin --gin_file=runs/export.gin \
      --gin.CHECKPOINT_PATH=\"/tmp/run/checkpoints/1000\" --gin.EXPORT_DIR=\"/tmp/export\" \
      [--gin_file=data/demo_pretrain_red.gin]   # binds VOCABULARY: spm.model is copied

The export directory is read by `redllm_jax/standalone.py` (jax + numpy + safetensors
+ sentencepiece only). Tensor names are flat and layer-unstacked, whatever the
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

from redllm_jax import gin_utils
from redllm_jax.evaluation import checkpoint_loading, standalone


def flatten_params(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Flat '.'-joined names, one tensor per layer (scanned stacks are unstacked)."""
  flat = {}
  for key, value in flax.traverse_util.flatten_dict(flax.core.unfreeze(params)).items():
    value = np.asarray(jax.device_get(value))
    key = list(key)
    if "layers" in key:  # Scanned: leading axis is the layer.
      i = key.index("layers")
      for layer in range(value.shape[0]):
        name = ".".join(key[:i] + ["layers", str(layer)] + key[i + 1:])
        flat[name] = np.ascontiguousarray(value[layer])
      continue
    key = [part.replace("layers_", "layers.") if part.startswith("layers_") else part
           for part in key]
    flat[".".join(key)] = np.ascontiguousarray(value)
  return flat


def export_config(model) -> dict:
  """config.json contents: format, architecture, BiAttn flag, every config field."""
  return {
      "format": standalone.FORMAT,
      "format_version": standalone.FORMAT_VERSION,
      "architecture": model.architecture,
      "inputs_bidirectional_attention": bool(getattr(model, "inputs_bidirectional_attention", False)),
      "config": checkpoint_loading.config_dict(model),
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
    import tensorflow as tf  # pylint: disable=g-import-not-at-top  # gs:// paths
    tf.io.gfile.copy(vocab_path, os.path.join(out_dir, standalone.VOCAB_FILE), overwrite=True)
    meta["vocabulary"] = standalone.VOCAB_FILE
  with open(os.path.join(out_dir, standalone.CONFIG_FILE), "w") as f:
    json.dump(meta, f, indent=1)
  shutil.copy(standalone.__file__, os.path.join(out_dir, "standalone.py"))
  return meta


def main() -> None:
  model, params = checkpoint_loading.model_and_params()
  out_dir = str(gin_utils.macro_value("EXPORT_DIR"))
  vocab = gin_utils.macro_value("VOCABULARY", None)
  vocab_path = getattr(vocab, "sentencepiece_model_file", None) if vocab is not None else None
  meta = export(model, params, out_dir, vocab_path)
  print(f"exported {meta['architecture']} ({meta['num_params']:,} params) to {out_dir}"
        + ("" if vocab_path else " (no VOCABULARY bound: spm.model not copied)"))


if __name__ == "__main__":
  gin_utils.run(main)
