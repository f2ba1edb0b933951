r"""Compiles a config's train step and cached decoding for a TPU slice, on any host.

  JAX_PLATFORMS=cpu TPU_SKIP_MDS_QUERY=1 python -m redllm_jax.tools.tpu_compile \
      --topology=v5e:2x2 --gin_file=experiments/demo_pretrain_redllm.gin \
      [--gin.BATCH_SIZE=16] [--what=train,decode,attention] [--decode_batch=4 \
      --decode_prompt_length=128 --decode_new_tokens=128] [--attention_length=8192]

Needs libtpu (`pip install -e ".[tpu]"`). `jax.experimental.topologies` gives
compile-only TPU devices of the named slice; the mesh is the gin's
`Partitioner.mesh_shape` over them. The train step (the gin's batch, lengths,
microbatches and remat) and `predict_batch` (prefill + the decode loop, with the
cross-attention K/V cached) are lowered with abstract sharded inputs (nothing is
allocated) and compiled by the real TPU compiler; `memory_analysis()` gives the
per-device bytes. `attention` compiles one causal self-attention's forward and
backward alone at the config's widths (the gin's `attention_impl`), which isolates
what flash attention saves. One JSON line per compile goes to stdout.
"""

import functools
import json
import time
from typing import Any

from absl import flags
import gin
import jax
from jax.experimental import topologies
import numpy as np

from redllm_jax import errors, functional, gin_utils, layers, models, optimizers
from redllm_jax.decoding import DecodingConfig
from redllm_jax.partitioning import Partitioner
from redllm_jax.trainer import compile_steps

FLAGS = flags.FLAGS

# Chips per host of the single-host slices (a bigger slice takes the TPU's own default).
_HOST_BOUNDS = {"v5e:1x1": (1, 1, 1), "v5e:2x2": (2, 2, 1), "v6e:2x2": (2, 2, 1)}


def tpu_devices(topology: str) -> list[jax.Device]:
  """Compile-only devices of a TPU slice, one per chip; a one-line error without libtpu.

  v4 and v5p chips hold two TensorCores: "megacore" makes each chip one device with
  the whole chip's HBM, as on a real pod (without it, each core is a device).
  """
  bounds = _HOST_BOUNDS.get(topology)
  kwargs = {"chips_per_host_bounds": bounds} if bounds else {}
  if topology.split(":")[0] in ("v4", "v5"):
    kwargs["chip_config_name"] = "megacore"
  try:
    return list(
      topologies.get_topology_desc(topology_name=topology, platform="tpu", **kwargs).devices
    )
  except (RuntimeError, ValueError) as e:
    raise errors.ConfigError(
      f"no TPU topology {topology!r} ({errors.first_line(e)}); "
      "is libtpu installed (pip install -e '.[tpu]')?"
    ) from None


def memory_figures(compiled, seconds: float) -> dict[str, Any]:
  """Per-device bytes of a compiled program; total = arguments + outputs + temporaries
  - aliased (donated buffers reused for outputs). `mosaic_kernels` counts the Pallas
  kernel calls the TPU program holds (flash attention), so a fallback would show."""
  mem = compiled.memory_analysis()
  args, outs = mem.argument_size_in_bytes, mem.output_size_in_bytes
  temps, alias = mem.temp_size_in_bytes, mem.alias_size_in_bytes
  kernels = compiled.as_text().count('custom_call_target="tpu_custom_call"')
  return {
    "arguments": args,
    "outputs": outs,
    "temporaries": temps,
    "aliased": alias,
    "total": args + outs + temps - alias,
    "mosaic_kernels": kernels,
    "compile_s": round(seconds, 2),
  }


def compile_train(
  model: models.BaseModel, partitioner: Partitioner, microbatches: int, batch_size: int
) -> dict[str, Any]:
  """The gin's train step (optimizer, lengths) at this batch and microbatch count,
  lowered with abstract sharded inputs and compiled: its memory figures."""
  schedule = optimizers.learning_rate_schedule(decay_steps=gin.query_parameter("%TRAIN_STEPS"))
  steps = compile_steps(model, optimizers.make_optimizer, partitioner, microbatches)
  data = model.abstract_batch(
    gin.query_parameter("%TASK_FEATURE_LENGTHS"), batch_size, partitioner.batch_sharding()
  )
  tic = time.perf_counter()
  compiled = steps.train.lower(
    steps.abstract_state, data, jax.eval_shape(lambda: jax.random.key(0)), schedule
  ).compile()
  return memory_figures(compiled, time.perf_counter() - tic)


def compile_decode(
  model: models.BaseModel, partitioner: Partitioner, batch: int, prompt_length: int, new_tokens: int
) -> dict[str, Any]:
  """`predict_batch` (prefill + cached decode loop), parameters sharded as in training."""
  param_shardings = partitioner.shardings(model.param_axes())
  params = jax.tree.map(
    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
    model.abstract_params(),
    param_shardings,
  )
  rows = partitioner.batch_sharding()
  tokens = jax.ShapeDtypeStruct((batch, prompt_length), np.int32, sharding=rows)
  lengths = jax.ShapeDtypeStruct(
    (batch,),
    np.int32,
    sharding=jax.sharding.NamedSharding(partitioner.mesh, jax.sharding.PartitionSpec(rows.spec[0])),
  )
  # The TPU reads scanned weights in place: no per-layer copies (DecodingConfig).
  cfg = DecodingConfig(max_new_tokens=new_tokens, cpu_weight_layout=False)
  predict = jax.jit(functools.partial(model.predict_batch, cfg=cfg))
  tic = time.perf_counter()
  with partitioner.context():
    compiled = predict.lower(
      params, tokens, lengths, jax.eval_shape(lambda: jax.random.key(0))
    ).compile()
  return memory_figures(compiled, time.perf_counter() - tic)


def compile_attention(
  model: models.BaseModel, partitioner: Partitioner, batch: int, length: int
) -> dict[str, Any]:
  """Gradient of one causal self-attention (q, k, v -> out) over packed rows, alone."""
  cfg = model.config
  qkv = jax.ShapeDtypeStruct(
    (batch, length, cfg.num_heads, cfg.head_dim),
    cfg.activation_dtype,
    sharding=partitioner.sharding(jax.sharding.PartitionSpec("batch", "length", "heads", "kv")),
  )
  rows = jax.ShapeDtypeStruct((batch, length), np.int32, sharding=partitioner.batch_sharding())

  def loss(q, k, v, segments, index):
    mask = functional.attention_mask(segments, segments, index, index, causal=True)
    return layers.dot_product_attention(q, k, v, mask, cfg.attention_impl).astype(np.float32).sum()

  step = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
  tic = time.perf_counter()
  with partitioner.context():
    compiled = step.lower(qkv, qkv, qkv, rows, rows).compile()
  return memory_figures(compiled, time.perf_counter() - tic)


def main() -> None:
  # Not finalized: what only a real run reads (MODEL_DIR, INITIAL_CHECKPOINT_PATH)
  # may stay unset.
  gin_utils.parse_gin(FLAGS.gin_file, FLAGS.gin_bindings, finalize=False)
  devices = tpu_devices(FLAGS.topology)
  model = models.from_gin()
  partitioner = Partitioner(devices=devices)
  common = {
    "topology": FLAGS.topology,
    "platform": devices[0].platform,
    "device_kind": devices[0].device_kind,
    "devices": len(devices),
    "mesh": dict(partitioner.mesh.shape),
    "model": model.name,
  }
  if "train" in FLAGS.what:
    train = compile_train(
      model,
      partitioner,
      gin.get_bindings("train.train").get("num_microbatches", 1),
      gin.query_parameter("%BATCH_SIZE"),
    )
    print(json.dumps({**common, "what": "train_step", **train}), flush=True)
  if "decode" in FLAGS.what:
    decode = compile_decode(
      model, partitioner, FLAGS.decode_batch, FLAGS.decode_prompt_length, FLAGS.decode_new_tokens
    )
    print(json.dumps({**common, "what": "predict_batch", **decode}), flush=True)
  if "attention" in FLAGS.what:
    batch = gin.query_parameter("%BATCH_SIZE")
    attention = compile_attention(model, partitioner, batch, FLAGS.attention_length)
    print(
      json.dumps(
        {
          **common,
          "what": "attention",
          "impl": model.config.attention_impl,
          "length": FLAGS.attention_length,
          "batch": batch,
          **attention,
        }
      ),
      flush=True,
    )


def define_flags() -> None:
  """The command's flags, defined only when it runs: tests import this module
  beside other tools whose flags share names."""
  flags.DEFINE_string("topology", "v5e:2x2", "TPU slice, e.g. v5e:2x2, v4:4x4x4.")
  flags.DEFINE_list(
    "what",
    ["train", "decode"],
    "What to compile: train, decode and/or attention (one layer's, alone).",
  )
  flags.DEFINE_integer("decode_batch", 4, "Prompts decoded at once.")
  flags.DEFINE_integer("decode_prompt_length", 128, "Prompt tokens for decoding.")
  flags.DEFINE_integer("decode_new_tokens", 128, "Generated tokens.")
  flags.DEFINE_integer("attention_length", 8192, "Tokens per row for --what=attention.")


if __name__ == "__main__":
  define_flags()
  gin_utils.run_flags(main)
