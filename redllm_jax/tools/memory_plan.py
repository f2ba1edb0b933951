r"""AOT memory plan: per-device memory of every paper config's real train step on pod meshes.

  python -m redllm_jax.tools.memory_plan                       # all 20 configs, 64/128/256 devices
  python -m redllm_jax.tools.memory_plan --sizes=150m --devices=8 --out_dir=/tmp/plan

For each (architecture, size, stage) the paper experiment gin at that size
(`experiments/{pretrain,finetune}_{arch}.gin` + `models/sizes/{size}.gin`: scanned layers, the gin's
remat policy, bf16 activations, Adafactor, paper batch and lengths) is built, and
its train step is lowered and compiled with abstract inputs
(`jax.ShapeDtypeStruct`s carrying shardings; nothing is allocated) on a fake CPU
mesh of N devices (`--xla_force_host_platform_device_count=N`, one subprocess per
N). XLA's `memory_analysis()` of the compiled per-device program gives arguments
(parameters + optimizer state + batch), outputs, temporaries (activations,
gradients, ...) and aliasing (donated state); total = arguments + outputs +
temporaries - aliased.

Search per (config, N): mesh (data=1, fsdp=N/t, tensor=t) for t in --tensor, and
microbatch counts m (see `worker` for the search); the smallest m that fits each
chip budget is kept. Every compile is cached in `<out_dir>/cache_<i>.json`, so a
rerun only compiles what is new. Outputs:
`<out_dir>/memory_plan.{json,csv,md}`.

Caveat: this is XLA:CPU's buffer assignment for the SPMD-partitioned program, not
the TPU compiler's; the TPU's fusion and layout choices differ (usually fewer
temporaries), so treat the figures as a planning estimate with some headroom.
"""
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Sequence

from absl import flags
import numpy as np

ARCHS = ("decllm", "redllm")
SIZES = ("150m", "1b", "2b", "4b", "8b")
STAGES = ("pretrain", "finetune")
CHIPS = {"v5e (16 GiB)": 16 * 2**30, "v4 (32 GiB)": 32 * 2**30}
# Paper batch and (inputs, targets) per row; DecLLM reads inputs + targets as one sequence.
STAGE_SHAPES = {"pretrain": (2048, 1024, 1024), "finetune": (1024, 2048, 512)}

_SIZES = flags.DEFINE_list("sizes", list(SIZES), "Paper sizes.")
_ARCHS = flags.DEFINE_list("archs", list(ARCHS), "Architectures.")
_STAGES = flags.DEFINE_list("stages", list(STAGES), "pretrain and/or finetune.")
_DEVICES = flags.DEFINE_list("devices", ["64", "128", "256"], "Fake device counts.")
_TENSOR = flags.DEFINE_list("tensor", ["1"], "Tensor-parallel sizes to try.")
_OUT_DIR = flags.DEFINE_string("out_dir", "docs/memory_plan", "Outputs and compile cache.")
_BATCH = flags.DEFINE_integer("batch", 0, "Override the paper global batch (0: paper).")
_WORKER = flags.DEFINE_bool("worker", False, "Internal: compile in this process.")
_BUDGET_S = flags.DEFINE_float("budget_s", 1800, "Stop starting new compiles after this.")


def job_key(arch: str, size: str, stage: str, n: int, tensor: int, micro: int, batch: int) -> str:
  return f"{arch}|{size}|{stage}|{n}|{tensor}|{micro}|{batch}"


def abstract_batch(model, stage: str, batch: int, sharding) -> dict[str, Any]:
  """The stage's train batch as sharded ShapeDtypeStructs, from the model's own builder.

  Pretraining reads whole chunks (RedLLM splits them in the middle); finetuning a
  prompt of `inputs` and an answer of `targets` tokens.
  """
  import jax  # pylint: disable=g-import-not-at-top  # see compile_one
  _, inputs, targets = STAGE_SHAPES[stage]
  if stage == "pretrain":
    row = model.pretraining_batch(np.ones((1, inputs + targets), np.int32))
  else:
    row = model.prefix_lm_batch([[1] * inputs], [[1] * targets])
  return {k: jax.ShapeDtypeStruct((batch, *v.shape[1:]), v.dtype, sharding=sharding)
          for k, v in row.items()}


def compile_one(arch: str, size: str, stage: str, n: int, tensor: int, micro: int,
                batch: int) -> dict[str, Any]:
  """Lowers and compiles one train step with abstract inputs; XLA's per-device memory."""
  import gin  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from redllm_jax import gin_utils, models, optimizers  # pylint: disable=g-import-not-at-top
  from redllm_jax.partitioning import Partitioner  # pylint: disable=g-import-not-at-top
  from redllm_jax.trainer import compile_steps  # pylint: disable=g-import-not-at-top

  gin.clear_config()
  unused = ["MODEL_DIR = '/tmp/unused'"]
  if stage == "finetune":
    unused.append("INITIAL_CHECKPOINT_PATH = '/tmp/unused'")
  gin_utils.parse_gin([f"experiments/{stage}_{arch}.gin", f"models/sizes/{size}.gin"], unused)
  model = models.from_gin()
  train_steps = gin.query_parameter("%TRAIN_STEPS")
  partitioner = Partitioner(mesh_shape=(1, n // tensor, tensor), devices=jax.devices()[:n])
  schedule = optimizers.learning_rate_schedule(decay_steps=train_steps)
  optimizer = optimizers.make_optimizer(learning_rate=schedule)
  steps = compile_steps(model, optimizer, schedule, partitioner, num_microbatches=micro)
  data = abstract_batch(model, stage, batch, partitioner.batch_sharding())
  rng = jax.eval_shape(lambda: jax.random.key(0))
  tic = time.perf_counter()
  lowered = steps.train.lower(steps.abstract_state, data, rng)
  compiled = lowered.compile()
  seconds = time.perf_counter() - tic
  mem = compiled.memory_analysis()
  args, outs = mem.argument_size_in_bytes, mem.output_size_in_bytes
  temps, alias = mem.temp_size_in_bytes, mem.alias_size_in_bytes
  return {"arch": arch, "size": size, "stage": stage, "devices": n, "tensor": tensor,
          "fsdp": n // tensor, "microbatches": micro, "batch": batch,
          "rows_per_device_microbatch": batch // micro // (n // tensor),
          "remat": model.config.remat_policy, "dtype": model.config.dtype,
          "arguments": args, "outputs": outs, "temporaries": temps, "aliased": alias,
          "total": args + outs + temps - alias, "compile_s": seconds}


def rows_choices(batch: int, dp: int) -> list[int]:
  """Rows per data shard per microbatch: 1, 2, 4, ... up to batch / dp (one microbatch)."""
  out, r = [], 1
  while r <= batch // dp:
    if batch % (r * dp) == 0:
      out.append(r)
    r *= 2
  return out


def worker(max_devices: int, devices: Sequence[int], configs: Sequence[tuple[str, str, str]],
           tensors: Sequence[int], batch_override: int, cache_path: str,
           deadline: float) -> None:
  """Finds, per config, the fewest microbatches that fit each chip on each slice.

  One process holds `max_devices` fake devices and compiles on sub-meshes of the
  first N. Per-device memory is close to linear in r, the rows each device sees
  per microbatch (activations), plus a part that shrinks with N (sharded state).
  On the smallest slice two compiles (r = 1 and r = 4) fit that line; the
  predicted largest r (fewest microbatches) under each budget is then compiled to
  check it (halving r until it fits). Larger slices compile only the r that fits
  16 GiB on the smaller slice, with proportionally fewer microbatches.
  """
  # Read every worker's cache (a rerun may split configs differently); write our own.
  cache = {}
  folder = os.path.dirname(cache_path) or "."
  for name in sorted(os.listdir(folder)):
    if name.startswith("cache_") and name.endswith(".json"):
      with open(os.path.join(folder, name)) as f:
        # Failed compiles are retried (the failure may have been the environment).
        cache.update({k: v for k, v in json.load(f).items() if "error" not in v})
  mine = {}

  def get(arch, size, stage, n, tensor, rows, batch):
    micro = batch // (rows * (n // tensor))
    key = job_key(arch, size, stage, n, tensor, micro, batch)
    if key not in cache:
      if time.time() > deadline:
        return None
      try:
        cache[key] = compile_one(arch, size, stage, n, tensor, micro, batch)
      except Exception as e:  # pylint: disable=broad-except
        cache[key] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
      mine[key] = cache[key]
      if os.path.exists(cache_path):
        with open(cache_path) as f:
          mine.update({k: v for k, v in json.load(f).items() if k not in mine})
      with open(cache_path, "w") as f:
        json.dump(mine, f, indent=1)
      r = cache[key]
      print(f"[{n} devices] {arch} {size} {stage} tensor={tensor} micro={micro} rows={rows}: "
            + (f"{r['total'] / 2**30:.2f} GiB, compile {r['compile_s']:.0f}s"
               if "total" in r else r["error"]), flush=True)
    r = cache[key]
    return r if "total" in r else None

  def floor_pow2(x: float, choices: list[int]) -> int:
    fit = [c for c in choices if c <= x]
    return fit[-1] if fit else 0

  # Slices outermost: every config's smallest slice is searched before any larger one,
  # so a run that hits its time budget loses the least informative compiles.
  slope, best16 = {}, {}
  for n in sorted(devices):
    for arch, size, stage in configs:
      batch = batch_override or STAGE_SHAPES[stage][0]
      for tensor in tensors:
        cfg = (arch, size, stage, tensor)
        if n % tensor or n > max_devices:
          continue
        choices = rows_choices(batch, n // tensor)
        if not choices:
          continue
        if cfg in best16:  # A smaller slice fitted 16 GiB at best16 rows: reuse it.
          get(arch, size, stage, n, tensor, min(best16[cfg], choices[-1]), batch)
          continue
        one = get(arch, size, stage, n, tensor, 1, batch)
        if one is None:
          continue
        if cfg not in slope and len(choices) > 1:
          r2 = choices[min(2, len(choices) - 1)]
          two = get(arch, size, stage, n, tensor, r2, batch)
          if two is not None:
            slope[cfg] = max((two["total"] - one["total"]) / (r2 - 1), 1.0)
        for budget in sorted(CHIPS.values()):
          if one["total"] > budget:
            continue
          rows = choices[-1]
          if cfg in slope:
            rows = floor_pow2(1 + (budget - one["total"]) / slope[cfg], choices)
          while rows > 1:
            r = get(arch, size, stage, n, tensor, rows, batch)
            if r is None or r["total"] <= budget:
              break
            rows //= 2
          if budget == min(CHIPS.values()):
            best16[cfg] = max(rows, 1)


def run_workers(configs, devices: Sequence[int], tensors: Sequence[int], batch: int,
                out_dir: str, budget_s: float, parallel: int = 1) -> None:
  """`parallel` worker processes of max(devices) fake devices, configs split between them."""
  out_dir = os.path.abspath(out_dir)
  os.makedirs(out_dir, exist_ok=True)
  # Workers run in an empty folder: gin resolves `include 'runs/x.gin'` as a Python
  # package first, and a `runs/` folder in the working directory (e.g. demo output)
  # shadows the gin search path with a namespace package and breaks the include.
  workdir = tempfile.mkdtemp(prefix="memory_plan_")
  n = max(devices)
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "")
                      + f" --xla_force_host_platform_device_count={n}").strip()
  env["JAX_PLATFORMS"] = "cpu"
  procs = []
  for i in range(parallel):
    part = configs[i::parallel]
    if not part:
      continue
    spec = ";".join(",".join(c) for c in part)
    cmd = [sys.executable, "-m", "redllm_jax.tools.memory_plan", "--worker",
           f"--devices={','.join(map(str, devices))}", f"--tensor={','.join(map(str, tensors))}",
           f"--out_dir={out_dir}", f"--batch={batch}", f"--budget_s={budget_s}",
           f"--configs={spec}", f"--cache_name=cache_{i}.json"]
    procs.append(subprocess.Popen(cmd, env=env, cwd=workdir))
  codes = [p.wait() for p in procs]
  if any(codes):
    raise RuntimeError(f"memory plan workers exited with {codes}")


def load_results(out_dir: str) -> list[dict[str, Any]]:
  rows = {}
  for name in sorted(os.listdir(out_dir)):
    if name.startswith("cache_") and name.endswith(".json"):
      with open(os.path.join(out_dir, name)) as f:
        rows.update({k: r for k, r in json.load(f).items() if "total" in r})
  return list(rows.values())


def plan(rows: list[dict[str, Any]], configs) -> list[dict[str, Any]]:
  """Per config and chip: the smallest slice (then fewest microbatches) that fits."""
  table = []
  for arch, size, stage in configs:
    mine = [r for r in rows if (r["arch"], r["size"], r["stage"]) == (arch, size, stage)]
    entry = {"arch": arch, "size": size, "stage": stage}
    for chip, budget in CHIPS.items():
      fits = sorted((r for r in mine if r["total"] <= budget),
                    key=lambda r: (r["devices"], r["microbatches"], r["total"]))
      if fits:
        best = fits[0]
        entry[chip] = {k: best[k] for k in ("devices", "fsdp", "tensor", "microbatches",
                                            "total", "arguments", "temporaries")}
      else:
        low = min(mine, key=lambda r: r["total"], default=None)
        entry[chip] = None if low is None else {"smallest_total": low["total"],
                                                 "devices": low["devices"]}
    table.append(entry)
  return table


def gib(x: float) -> str:
  return f"{x / 2**30:.2f}"


def markdown(rows: list[dict[str, Any]], table: list[dict[str, Any]]) -> str:
  lines = ["| model | stage | " + " | ".join(f"{c}: slice, mesh (data,fsdp,tensor), microbatches, GiB/chip"
                                            for c in CHIPS) + " |",
           "|---|---|" + "---|" * len(CHIPS)]
  for e in table:
    cells = []
    for chip in CHIPS:
      c = e[chip]
      if c is None:
        cells.append("not compiled")
      elif "microbatches" in c:
        cells.append(f"{c['devices']} chips, (1,{c['fsdp']},{c['tensor']}), "
                     f"{c['microbatches']} micro, {gib(c['total'])}")
      else:
        cells.append(f"no compiled mesh fits (lowest {gib(c['smallest_total'])} on "
                     f"{c['devices']} chips, 1 row per microbatch)")
    lines.append(f"| {e['arch']} {e['size']} | {e['stage']} | " + " | ".join(cells) + " |")
  lines += ["", "Every compile (per-device GiB: arguments / outputs / temporaries / aliased "
            "-> total; compile seconds):", "",
            "| model | stage | devices | mesh | micro | rows/dev/micro | args | out | temp | "
            "alias | total | compile s |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in sorted(rows, key=lambda r: (ARCHS.index(r["arch"]), SIZES.index(r["size"]),
                                       r["stage"], r["devices"], r["tensor"],
                                       r["microbatches"])):
    lines.append(f"| {r['arch']} {r['size']} | {r['stage']} | {r['devices']} | "
                 f"(1,{r['fsdp']},{r['tensor']}) | {r['microbatches']} | "
                 f"{r['rows_per_device_microbatch']} | {gib(r['arguments'])} | "
                 f"{gib(r['outputs'])} | {gib(r['temporaries'])} | {gib(r['aliased'])} | "
                 f"{gib(r['total'])} | {r['compile_s']:.0f} |")
  return "\n".join(lines) + "\n"


_CONFIGS = flags.DEFINE_string("configs", "", "Internal: arch,size,stage;... for a worker.")
_CACHE_NAME = flags.DEFINE_string("cache_name", "cache_0.json", "Internal: worker cache file.")
_REPORT_ONLY = flags.DEFINE_bool("report_only", False, "Only rebuild the report from the cache.")
_PARALLEL = flags.DEFINE_integer("parallel", 2, "Worker processes (configs split between them).")


def main() -> None:
  tensors = [int(t) for t in _TENSOR.value]
  devices = [int(d) for d in _DEVICES.value]
  if _WORKER.value:
    configs = [tuple(c.split(",")) for c in _CONFIGS.value.split(";") if c]
    import jax  # pylint: disable=g-import-not-at-top
    worker(jax.device_count(), devices, configs, tensors, _BATCH.value,
           os.path.join(_OUT_DIR.value, _CACHE_NAME.value), time.time() + _BUDGET_S.value)
    return
  configs = [(a, s, st) for s in _SIZES.value for a in _ARCHS.value for st in _STAGES.value]
  tic = time.perf_counter()
  if not _REPORT_ONLY.value:
    run_workers(configs, devices, tensors, _BATCH.value, _OUT_DIR.value, _BUDGET_S.value,
                _PARALLEL.value)
  rows = [r for r in load_results(_OUT_DIR.value)
          if (r["arch"], r["size"], r["stage"]) in set(configs) and r["devices"] in devices
          and r["batch"] == (_BATCH.value or STAGE_SHAPES[r["stage"]][0])]
  table = plan(rows, configs)
  out = _OUT_DIR.value
  with open(os.path.join(out, "memory_plan.json"), "w") as f:
    json.dump({"plan": table, "compiles": rows, "chips": CHIPS,
               "wall_s": time.perf_counter() - tic}, f, indent=1)
  with open(os.path.join(out, "memory_plan.csv"), "w", newline="") as f:
    fields = ["arch", "size", "stage", "devices", "fsdp", "tensor", "microbatches", "batch",
              "rows_per_device_microbatch", "remat", "dtype", "arguments", "outputs",
              "temporaries", "aliased", "total", "compile_s"]
    w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
  text = markdown(rows, table)
  with open(os.path.join(out, "memory_plan.md"), "w") as f:
    f.write(text)
  print(text)
  print(f"memory plan: {len(rows)} compiles in {out}; wall {time.perf_counter() - tic:.0f}s")


if __name__ == "__main__":
  from redllm_jax import gin_utils  # pylint: disable=g-import-not-at-top  # see compile_one
  gin_utils.run_flags(main)
