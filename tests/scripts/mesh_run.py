"""Worker for mesh-equivalence tests: trains a few steps on each requested mesh.

  python tests/scripts/mesh_run.py ARCH OUT.json STEPS MESH [MESH ...] [--gin=BINDING ...]
MESH is `1` (one device) or `d,f,t`; each --gin binding applies to every mesh.
Prints nothing; writes {mesh: {losses, specs}}.
"""

import json
import sys

import gin
import jax
import numpy as np

from redllm_jax import gin_utils, models, optimizers
from redllm_jax.data import input_pipeline
from redllm_jax.data import feature_converters
from redllm_jax.partitioning import Partitioner
from redllm_jax.trainer import compile_steps


def run(arch: str, mesh: str, steps: int, bindings: list[str]):
  gin.clear_config()
  # Not finalized: this script drives the steps itself, so MODEL_DIR & co. stay unset.
  gin_utils.parse_gin(
    [f"experiments/demo_pretrain_{arch}.gin"],
    ["TASK_FEATURE_LENGTHS = {'targets': 64}", *bindings],
    finalize=False,
  )
  model = models.from_gin()
  devices = jax.devices()[:1] if mesh == "1" else jax.devices()
  shape = (1, 1, 1) if mesh == "1" else tuple(int(x) for x in mesh.split(","))
  partitioner = Partitioner(mesh_shape=shape, devices=devices)
  schedule = optimizers.learning_rate_schedule(peak=0.01, warmup_steps=3, decay_steps=steps)
  compiled = compile_steps(model, optimizers.make_optimizer, partitioner, num_microbatches=2)
  state = compiled.init(jax.random.key(0))
  batches = input_pipeline.make_sharded_input(
    "demo_redpajama", {"targets": 64}, feature_converters.make_feature_converter(), 16, 0, 1
  )
  losses = []
  for _ in range(steps):
    state, metrics = compiled.train(
      state, compiled.partitioner.global_batch(next(batches)), jax.random.key(1), schedule
    )
    losses.append(float(metrics["loss"]))
  specs = sorted({str(x.sharding.spec) for x in jax.tree.leaves(state.params)})
  params = {str(i): np.asarray(x).tolist() for i, x in enumerate(jax.tree.leaves(state.params)[:2])}
  return {"losses": losses, "specs": specs, "params": params}


if __name__ == "__main__":
  arch, out, steps, rest = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
  bindings = [a.removeprefix("--gin=") for a in rest if a.startswith("--gin=")]
  meshes = [a for a in rest if not a.startswith("--gin=")]
  with open(out, "w") as f:
    json.dump({mesh: run(arch, mesh, steps, bindings) for mesh in meshes}, f)
