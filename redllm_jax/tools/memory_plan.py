r"""AOT memory plan: per-device memory of every paper config's real train step on pod meshes.

  python -m redllm_jax.tools.memory_plan                       # all 20 configs, 64/128/256 devices
  python -m redllm_jax.tools.memory_plan --sizes=150m --devices=8 --out_dir=/tmp/plan
  python -m redllm_jax.tools.memory_plan --stages=adapt --sizes=2b,8b    # the adaptation gins

For each (architecture, size, stage) the paper experiment gin at that size
(`experiments/{pretrain,finetune}_{arch}.gin` + `models/sizes/{size}.gin`, or for the
`adapt` stage each `experiments/adapt_redllm_{size}*.gin`, e.g. `8b_2b`: scanned
layers, the gin's remat policy, bf16 activations, Adafactor, paper batch and lengths) is built, and
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
from typing import Any, Callable, Optional, Sequence

from absl import flags

FLAGS = flags.FLAGS

ARCHS = ("decllm", "redllm")
SIZES = ("150m", "1b", "2b", "4b", "8b")
STAGES = ("pretrain", "finetune")  # the default; `adapt` on request (--stages)
ALL_STAGES = (*STAGES, "adapt")
CHIPS = {"v5e (16 GiB)": 16 * 2**30, "v4 (32 GiB)": 32 * 2**30}
PAPER_BATCH = {"pretrain": 2048, "finetune": 1024, "adapt": 2048}
# --backend=tpu: HBM per chip of each TPU generation, by topology-name prefix ("v5"
# is v5p); a plan keeps 10% of it free.
TPU_HBM = {"v4": 32 * 2**30, "v5e": 16 * 2**30, "v5": 95 * 2**30, "v6e": 32 * 2**30}
TPU_HEADROOM = 0.9
EXPERIMENT_GINS = os.path.join(
  os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "gin", "experiments"
)


def job_key(arch: str, size: str, stage: str, n: int, tensor: int, micro: int, batch: int) -> str:
  return f"{arch}|{size}|{stage}|{n}|{tensor}|{micro}|{batch}"


def compile_one(
  arch: str, size: str, stage: str, devices: Sequence[Any], tensor: int, micro: int, batch: int
) -> dict[str, Any]:
  """Lowers and compiles one train step with abstract inputs; XLA's per-device memory."""
  import gin  # pylint: disable=g-import-not-at-top
  from redllm_jax import gin_utils, models  # pylint: disable=g-import-not-at-top
  from redllm_jax.partitioning import Partitioner  # pylint: disable=g-import-not-at-top
  from redllm_jax.tools.tpu_compile import compile_train  # pylint: disable=g-import-not-at-top

  gin.clear_config()
  unused = ["MODEL_DIR = '/tmp/unused'"]
  if stage != "pretrain":
    unused.append("INITIAL_CHECKPOINT_PATH = '/tmp/unused'")
  gin_utils.parse_gin(experiment_gins(arch, size, stage), unused)
  model = models.from_gin()
  n = len(devices)
  partitioner = Partitioner(mesh_shape=(1, n // tensor, tensor), devices=devices)
  figures = compile_train(model, partitioner, micro, batch)
  return {
    "arch": arch,
    "size": size,
    "stage": stage,
    "devices": n,
    "tensor": tensor,
    "fsdp": n // tensor,
    "microbatches": micro,
    "batch": batch,
    "rows_per_device_microbatch": batch // micro // (n // tensor),
    "remat": model.config.remat_policy,
    "dtype": model.config.dtype,
    **figures,
  }


def experiment_gins(arch: str, size: str, stage: str) -> list[str]:
  """The gin files of one config: an adaptation gin names its own size."""
  if stage == "adapt":
    return [f"experiments/adapt_{arch}_{size}.gin"]
  return [f"experiments/{stage}_{arch}.gin", f"models/sizes/{size}.gin"]


def size_order(size: str) -> tuple[int, str]:
  """Paper sizes in order; an adaptation's `8b_2b` right after `8b`."""
  return SIZES.index(size.split("_")[0]), size


def all_configs(
  sizes: Sequence[str], archs: Sequence[str], stages: Sequence[str]
) -> list[tuple[str, str, str]]:
  """(arch, size, stage) of every config asked for. Adaptation configs are the gins
  `experiments/adapt_{arch}_{size}[_*].gin` of the sizes asked for (so `8b` brings
  the unbalanced `8b_2b` too); only RedLLMs are adapted."""
  unknown = sorted(set(stages) - set(ALL_STAGES))
  if unknown:
    from redllm_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top

    raise ConfigError(f"--stages: unknown {', '.join(unknown)} (use {', '.join(ALL_STAGES)})")
  configs = []
  for size in sizes:
    for arch in archs:
      for stage in stages:
        if stage != "adapt":
          configs.append((arch, size, stage))
          continue
        for name in sorted(os.listdir(EXPERIMENT_GINS)):
          if name in (f"adapt_{arch}_{size}.gin",) or name.startswith(f"adapt_{arch}_{size}_"):
            configs.append((arch, name[len(f"adapt_{arch}_") : -len(".gin")], stage))
  if not configs:
    from redllm_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top

    raise ConfigError(
      f"no config for sizes {', '.join(sizes)}, archs {', '.join(archs)}, "
      f"stages {', '.join(stages)} (adaptation gins: "
      "experiments/adapt_redllm_<size>*.gin)"
    )
  return configs


def cached_compile(
  cache: dict[str, Any],
  key: str,
  compile_fn: Callable[[], dict[str, Any]],
  label: str,
  deadline: float,
  save: Callable[[str], None],
) -> Optional[dict[str, Any]]:
  """cache[key], compiled first if missing (and time is left); None unless it compiled.

  A failure is cached as an error, which the next run retries (the failure may
  have been the environment).
  """
  if key not in cache:
    if time.time() > deadline:
      return None
    try:
      cache[key] = compile_fn()
    except Exception as e:  # pylint: disable=broad-except  # e.g. out of memory
      cache[key] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
    save(key)
    r = cache[key]
    print(
      f"{label}: "
      + (
        f"{r['total'] / 2**30:.2f} GiB, compile {r['compile_s']:.0f}s"
        if "total" in r
        else r["error"]
      ),
      flush=True,
    )
  r = cache[key]
  return r if "total" in r else None


def rows_choices(batch: int, dp: int) -> list[int]:
  """Rows per data shard per microbatch: 1, 2, 4, ... up to batch / dp (one microbatch)."""
  out, r = [], 1
  while r <= batch // dp:
    if batch % (r * dp) == 0:
      out.append(r)
    r *= 2
  return out


def worker(
  max_devices: int,
  devices: Sequence[int],
  configs: Sequence[tuple[str, str, str]],
  tensors: Sequence[int],
  batch_override: int,
  cache_path: str,
  deadline: float,
) -> None:
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

  import jax  # pylint: disable=g-import-not-at-top  # see compile_one

  def save(key):
    mine[key] = cache[key]
    if os.path.exists(cache_path):
      with open(cache_path) as f:
        mine.update({k: v for k, v in json.load(f).items() if k not in mine})
    with open(cache_path, "w") as f:
      json.dump(mine, f, indent=1)

  def get(arch, size, stage, n, tensor, rows, batch):
    micro = batch // (rows * (n // tensor))
    return cached_compile(
      cache,
      job_key(arch, size, stage, n, tensor, micro, batch),
      lambda: compile_one(arch, size, stage, jax.devices()[:n], tensor, micro, batch),
      f"[{n} devices] {arch} {size} {stage} tensor={tensor} micro={micro} rows={rows}",
      deadline,
      save,
    )

  def floor_pow2(x: float, choices: list[int]) -> int:
    fit = [c for c in choices if c <= x]
    return fit[-1] if fit else 0

  # Slices outermost: every config's smallest slice is searched before any larger one,
  # so a run that hits its time budget loses the least informative compiles.
  slope, best16 = {}, {}
  for n in sorted(devices):
    for arch, size, stage in configs:
      batch = batch_override or PAPER_BATCH[stage]
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


def tpu_versions() -> str:
  """What a TPU compile's figures depend on besides the config: part of its cache key."""
  import importlib.metadata  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top  # see compile_one

  return f"jax {jax.__version__}, libtpu {importlib.metadata.version('libtpu')}"


def tpu_plan(
  topologies: Sequence[str],
  configs: Sequence[tuple[str, str, str]],
  cache_path: str,
  deadline: float,
) -> None:
  """The TPU compiler's figures: per config and slice, pure FSDP over every chip.

  A compile at 1 row per chip per microbatch gives the fixed part (parameters,
  optimizer state, outputs) and an upper bound of one row's activations (its
  temporaries); the fewest microbatches that this line fits under 90% of the HBM
  is compiled to check it, halving the rows per microbatch until it fits, then
  doubling them while that still fits (the line overestimates). Results are
  cached under keys that carry the jax and libtpu versions (out of HBM included).
  """
  from redllm_jax.tools.tpu_compile import tpu_devices  # pylint: disable=g-import-not-at-top

  versions = tpu_versions()
  cache = {}
  if os.path.exists(cache_path):
    with open(cache_path) as f:
      # Out of HBM is the compiler's answer; other failures may be the environment.
      cache = {
        k: v
        for k, v in json.load(f).items()
        if "error" not in v or "RESOURCE_EXHAUSTED" in v["error"]
      }
  for topology in topologies:
    devices = tpu_devices(topology)
    n, budget = len(devices), TPU_HEADROOM * TPU_HBM[topology.split(":")[0]]

    def save(_):
      with open(cache_path, "w") as f:
        json.dump(cache, f, indent=1)

    def get(arch, size, stage, rows, batch):
      micro = batch // (rows * n)
      return cached_compile(
        cache,
        f"tpu|{topology}|{arch}|{size}|{stage}|{micro}|{batch}|{versions}",
        lambda: {
          **compile_one(arch, size, stage, devices, 1, micro, batch),
          "topology": topology,
          "versions": versions,
        },
        f"[{topology}] {arch} {size} {stage} micro={micro}",
        deadline,
        save,
      )

    for arch, size, stage in configs:
      batch = PAPER_BATCH[stage]
      choices = rows_choices(batch, n)
      one = get(arch, size, stage, choices[0], batch)
      if one is None or one["total"] > budget:
        continue
      fixed = one["total"] - one["temporaries"]
      fit = [c for c in choices if fixed + c * one["temporaries"] <= budget]
      rows = fit[-1] if fit else choices[0]

      def fits(rows_per_chip: int) -> bool:
        r = get(arch, size, stage, rows_per_chip, batch)  # pylint: disable=cell-var-from-loop
        return r is not None and r["total"] <= budget

      while rows > choices[0] and not fits(rows):
        rows //= 2
      while rows * 2 in choices and fits(rows * 2):
        rows *= 2


def run_workers(
  configs,
  devices: Sequence[int],
  tensors: Sequence[int],
  batch: int,
  out_dir: str,
  budget_s: float,
  parallel: int = 1,
  topologies: Sequence[str] = (),
) -> None:
  """`parallel` worker processes, configs split between them: of max(devices) fake
  CPU devices, or with `topologies` of compile-only TPU devices (libtpu)."""
  out_dir = os.path.abspath(out_dir)
  os.makedirs(out_dir, exist_ok=True)
  # Workers run in an empty folder: gin resolves `include 'runs/x.gin'` as a Python
  # package first, and a `runs/` folder in the working directory (e.g. demo output)
  # shadows the gin search path with a namespace package and breaks the include.
  workdir = tempfile.mkdtemp(prefix="memory_plan_")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  if topologies:  # libtpu's lock would serialise the workers; no metadata server here.
    env.update(TPU_SKIP_MDS_QUERY="1", ALLOW_MULTIPLE_LIBTPU_LOAD="1")
  else:
    env["XLA_FLAGS"] = (
      env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={max(devices)}"
    ).strip()
  procs = []
  for i in range(parallel):
    part = configs[i::parallel]
    if not part:
      continue
    spec = ";".join(",".join(c) for c in part)
    cmd = [
      sys.executable,
      "-m",
      "redllm_jax.tools.memory_plan",
      "--worker",
      f"--devices={','.join(map(str, devices))}",
      f"--tensor={','.join(map(str, tensors))}",
      f"--out_dir={out_dir}",
      f"--batch={batch}",
      f"--budget_s={budget_s}",
      f"--configs={spec}",
      f"--cache_name=cache_{i}.json",
      f"--backend={'tpu' if topologies else 'cpu'}",
      f"--topologies={','.join(topologies)}",
    ]
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
      fits = sorted(
        (r for r in mine if r["total"] <= budget),
        key=lambda r: (r["devices"], r["microbatches"], r["total"]),
      )
      if fits:
        best = fits[0]
        entry[chip] = {
          k: best[k]
          for k in (
            "devices",
            "fsdp",
            "tensor",
            "microbatches",
            "total",
            "arguments",
            "temporaries",
          )
        }
      else:
        low = min(mine, key=lambda r: r["total"], default=None)
        entry[chip] = (
          None if low is None else {"smallest_total": low["total"], "devices": low["devices"]}
        )
    table.append(entry)
  return table


def gib(x: float) -> str:
  return f"{x / 2**30:.2f}"


def markdown(rows: list[dict[str, Any]], table: list[dict[str, Any]]) -> str:
  lines = [
    "| model | stage | "
    + " | ".join(f"{c}: slice, mesh (data,fsdp,tensor), microbatches, GiB/chip" for c in CHIPS)
    + " |",
    "|---|---|" + "---|" * len(CHIPS),
  ]
  for e in table:
    cells = []
    for chip in CHIPS:
      c = e[chip]
      if c is None:
        cells.append("not compiled")
      elif "microbatches" in c:
        cells.append(
          f"{c['devices']} chips, (1,{c['fsdp']},{c['tensor']}), "
          f"{c['microbatches']} micro, {gib(c['total'])}"
        )
      else:
        cells.append(
          f"no compiled mesh fits (lowest {gib(c['smallest_total'])} on "
          f"{c['devices']} chips, 1 row per microbatch)"
        )
    lines.append(f"| {e['arch']} {e['size']} | {e['stage']} | " + " | ".join(cells) + " |")
  lines += [
    "",
    "Every compile (per-device GiB: arguments / outputs / temporaries / aliased "
    "-> total; compile seconds):",
    "",
    "| model | stage | devices | mesh | micro | rows/dev/micro | args | out | temp | "
    "alias | total | compile s |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in sorted(
    rows,
    key=lambda r: (
      ARCHS.index(r["arch"]),
      size_order(r["size"]),
      r["stage"],
      r["devices"],
      r["tensor"],
      r["microbatches"],
    ),
  ):
    lines.append(
      f"| {r['arch']} {r['size']} | {r['stage']} | {r['devices']} | "
      f"(1,{r['fsdp']},{r['tensor']}) | {r['microbatches']} | "
      f"{r['rows_per_device_microbatch']} | {gib(r['arguments'])} | "
      f"{gib(r['outputs'])} | {gib(r['temporaries'])} | {gib(r['aliased'])} | "
      f"{gib(r['total'])} | {r['compile_s']:.0f} |"
    )
  return "\n".join(lines) + "\n"


CPU_PLAN_DIR = "docs/memory_plan"


def tpu_markdown(
  rows: list[dict[str, Any]], configs, topologies: Sequence[str], cpu_rows: list[dict[str, Any]]
) -> str:
  """Per config and slice: the fewest microbatches under 90% of the HBM, with XLA:CPU's
  figure for the same mesh and microbatches beside it where the CPU plan has one."""
  cpu = {
    (r["arch"], r["size"], r["stage"], r["devices"], r["tensor"], r["microbatches"]): r["total"]
    for r in cpu_rows
  }
  lines = [
    "| model | stage | slice | mesh | microbatches | args | temp | out | peak GiB/chip "
    "| XLA:CPU estimate | compile s |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for arch, size, stage in configs:
    for topology in topologies:
      budget = TPU_HEADROOM * TPU_HBM[topology.split(":")[0]]
      mine = [
        r
        for r in rows
        if (r["arch"], r["size"], r["stage"], r["topology"]) == (arch, size, stage, topology)
      ]
      fits = sorted((r for r in mine if r["total"] <= budget), key=lambda r: r["microbatches"])
      if not fits:
        low = min(mine, key=lambda r: r["total"], default=None)
        note = "not compiled" if low is None else f"does not fit ({gib(low['total'])} GiB)"
        lines.append(f"| {arch} {size} | {stage} | {topology} | | | | | | {note} | | |")
        continue
      r = fits[0]
      estimate = cpu.get((arch, size, stage, r["devices"], 1, r["microbatches"]))
      lines.append(
        f"| {arch} {size} | {stage} | {topology} | (1,{r['fsdp']},1) | "
        f"{r['microbatches']} | {gib(r['arguments'])} | {gib(r['temporaries'])} | "
        f"{gib(r['outputs'])} | {gib(r['total'])} | "
        f"{gib(estimate) if estimate else '-'} | {r['compile_s']:.0f} |"
      )
  return "\n".join(lines) + "\n"


def main() -> None:
  tensors = [int(t) for t in FLAGS.tensor]
  devices = [int(d) for d in FLAGS.devices]
  tpu = FLAGS.backend == "tpu"
  topologies = FLAGS.topologies if tpu else []
  if FLAGS.worker:
    configs = [tuple(c.split(",")) for c in FLAGS.configs.split(";") if c]
    cache_path = os.path.join(FLAGS.out_dir, FLAGS.cache_name)
    if tpu:
      tpu_plan(topologies, configs, cache_path, time.time() + FLAGS.budget_s)
      return
    import jax  # pylint: disable=g-import-not-at-top

    worker(
      jax.device_count(),
      devices,
      configs,
      tensors,
      FLAGS.batch,
      cache_path,
      time.time() + FLAGS.budget_s,
    )
    return
  configs = all_configs(FLAGS.sizes, FLAGS.archs, FLAGS.stages)
  tic = time.perf_counter()
  if FLAGS.report_only and not os.path.isdir(FLAGS.out_dir):
    from redllm_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top

    raise ConfigError(f"--report_only: no plan in {FLAGS.out_dir} (run without it first)")
  if not FLAGS.report_only:
    run_workers(
      configs,
      devices,
      tensors,
      FLAGS.batch,
      FLAGS.out_dir,
      FLAGS.budget_s,
      FLAGS.parallel,
      topologies,
    )
  if tpu:
    rows = [r for r in load_results(FLAGS.out_dir) if "topology" in r]
    cpu_rows = load_results(CPU_PLAN_DIR) if os.path.isdir(CPU_PLAN_DIR) else []
    text = tpu_markdown(rows, configs, topologies, cpu_rows)
    with open(os.path.join(FLAGS.out_dir, "memory_plan.md"), "w") as f:
      f.write(text)
    with open(os.path.join(FLAGS.out_dir, "memory_plan.json"), "w") as f:
      json.dump({"compiles": rows, "hbm": TPU_HBM, "headroom": TPU_HEADROOM}, f, indent=1)
    print(text)
    return
  rows = [
    r
    for r in load_results(FLAGS.out_dir)
    if (r["arch"], r["size"], r["stage"]) in set(configs)
    and r["devices"] in devices
    and r["batch"] == (FLAGS.batch or PAPER_BATCH[r["stage"]])
  ]
  table = plan(rows, configs)
  out = FLAGS.out_dir
  with open(os.path.join(out, "memory_plan.json"), "w") as f:
    json.dump(
      {"plan": table, "compiles": rows, "chips": CHIPS, "wall_s": time.perf_counter() - tic},
      f,
      indent=1,
    )
  with open(os.path.join(out, "memory_plan.csv"), "w", newline="") as f:
    fields = [
      "arch",
      "size",
      "stage",
      "devices",
      "fsdp",
      "tensor",
      "microbatches",
      "batch",
      "rows_per_device_microbatch",
      "remat",
      "dtype",
      "arguments",
      "outputs",
      "temporaries",
      "aliased",
      "total",
      "compile_s",
    ]
    w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
  text = markdown(rows, table)
  with open(os.path.join(out, "memory_plan.md"), "w") as f:
    f.write(text)
  print(text)
  print(f"memory plan: {len(rows)} compiles in {out}; wall {time.perf_counter() - tic:.0f}s")


def define_flags() -> None:
  """The command's flags, defined only when it runs: tests import this module
  beside other tools whose flags share names."""
  flags.DEFINE_list("sizes", list(SIZES), "Paper sizes.")
  flags.DEFINE_list("archs", list(ARCHS), "Architectures.")
  flags.DEFINE_list("stages", list(STAGES), f"Any of {', '.join(ALL_STAGES)}.")
  flags.DEFINE_list("devices", ["64", "128", "256"], "Fake device counts.")
  flags.DEFINE_list("tensor", ["1"], "Tensor-parallel sizes to try.")
  flags.DEFINE_string("out_dir", "docs/memory_plan", "Outputs and compile cache.")
  flags.DEFINE_integer("batch", 0, "Override the paper global batch (0: paper).")
  flags.DEFINE_bool("worker", False, "Internal: compile in this process.")
  flags.DEFINE_float("budget_s", 1800, "Stop starting new compiles after this.")
  flags.DEFINE_string("configs", "", "Internal: arch,size,stage;... for a worker.")
  flags.DEFINE_string("cache_name", "cache_0.json", "Internal: worker cache file.")
  flags.DEFINE_bool("report_only", False, "Only rebuild the report from the cache.")
  flags.DEFINE_integer("parallel", 2, "Worker processes (configs split between them).")
  flags.DEFINE_enum(
    "backend",
    "cpu",
    ["cpu", "tpu"],
    "cpu: XLA:CPU on fake devices; tpu: the TPU compiler (libtpu).",
  )
  flags.DEFINE_list("topologies", ["v5e:8x8", "v4:4x4x4"], "TPU slices for --backend=tpu.")


if __name__ == "__main__":
  define_flags()
  from redllm_jax import gin_utils  # pylint: disable=g-import-not-at-top  # see compile_one

  gin_utils.run_flags(main)
