r"""The study's train step as its workers run it: several single-threaded processes
side by side, each timing the same shape, by microbatch count, unpinned and pinned.

  python -m redllm_jax.tools.bench_workers --out=workers.json    # the study's l size
  python -m redllm_jax.tools.bench_workers --shapes=decllm/study_s/64x128/1024 \
      --microbatches=1,8 --pinning=true --workers=2 --steps=12

Alone, a tiny model's step runs as fast at batch 32 as at 128. Beside another worker,
a whole batch's activations and [tokens, vocab] logits overflow the shared cache, so
microbatches of ~1,024 target tokens train faster; and XLA:CPU still runs parallel
loops on a second thread, so workers pinned to a core each (as `study.workers` pins
them) train faster than workers whose threads migrate (docs/perf_notes.md). Each
setting's workers start together, compile, warm up and time `--steps` steps; the
figure is tokens/s per worker (the median over workers) and its ratio over the first
setting (the first microbatch count, the first pinning), measured in the same run.
"""

import itertools
import json
import os
import statistics
import subprocess
import sys
import time

from absl import flags

from redllm_jax import errors, gin_utils, xla_cpu
from redllm_jax.tools import bench_study, bench_train

_SHAPES = flags.DEFINE_list(
  "shapes",
  ["decllm/study_l/64x128/1024/in_first", "redllm/study_l/64x128/1024/in_first"],
  "arch/size/ROWSxTOKENS/vocab[/option...], as bench's "
  "--study_shapes (default: the study's l size as it trains).",
)
_MICROBATCHES = flags.DEFINE_list("microbatches", ["1", "4", "8"], "Microbatch counts.")
_PINNING = flags.DEFINE_list(
  "pinning", ["false", "true"], "Whether each worker is pinned to a core of its own."
)
_WORKERS = flags.DEFINE_integer("workers", 2, "Processes side by side.")
_OUT = flags.DEFINE_string("out", "bench.json", "Where the JSON of all timings goes.")
_STEPS = flags.DEFINE_integer("steps", 12, "Timed steps per worker (after 2 warm-up steps).")
_CHILD = flags.DEFINE_string("child", None, "Internal: time SHAPE@MICROBATCHES here.")


def _time_one(shape: str, microbatches: int, steps: int) -> dict:
  arch, size, rows, tokens, bindings = bench_study.parse_study_shape(shape)
  info, run = bench_train.train_setup(
    arch, size, rows, tokens, bindings=bindings, num_microbatches=microbatches
  )
  run()
  tic = time.perf_counter()
  for _ in range(steps - 1):
    run(block=False)
  run()
  seconds = (time.perf_counter() - tic) / steps
  return {"step_s": seconds, "tokens_per_s": rows * tokens / seconds, "loss": info["loss"]}


def _side_by_side(shape: str, microbatches: int, pinned: bool) -> list[dict]:
  """One timing per worker, all started at once with XLA single-threaded."""
  env = xla_cpu.single_threaded_env()
  cores = sorted(os.sched_getaffinity(0))
  command = [
    sys.executable,
    "-m",
    "redllm_jax.tools.bench_workers",
    f"--child={shape}@{microbatches}",
    f"--steps={_STEPS.value}",
  ]
  procs = [
    subprocess.Popen(
      (["taskset", "-c", str(cores[i % len(cores)])] if pinned else []) + command,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(_WORKERS.value)
  ]
  results = []
  for proc in procs:
    out, err = proc.communicate()
    if proc.returncode:
      last = (err.strip().splitlines() or ["no output"])[-1]
      raise errors.ConfigError(f"{shape} in {microbatches} microbatches failed: {last}")
    results.append(json.loads(out.strip().splitlines()[-1]))
  return results


def _check_flags() -> tuple[list[int], list[bool]]:
  """(microbatch counts, pinnings), every shape checked before the first compile."""
  try:
    counts = [int(m) for m in _MICROBATCHES.value]
  except ValueError:
    raise errors.ConfigError(f"--microbatches={_MICROBATCHES.value}: want integers") from None
  if not {p.lower() for p in _PINNING.value} <= {"true", "false"}:
    raise errors.ConfigError(f"--pinning={_PINNING.value}: want true and/or false")
  pinnings = [p.lower() == "true" for p in _PINNING.value]
  for shape in _SHAPES.value:
    rows = bench_study.parse_study_shape(shape)[2]
    if any(count < 1 or rows % count for count in counts):
      raise errors.ConfigError(
        f"--microbatches={_MICROBATCHES.value}: each must divide {shape}'s {rows} rows"
      )
  return counts, pinnings


def main() -> None:
  if _CHILD.value:
    shape, microbatches = _CHILD.value.rsplit("@", 1)
    print(json.dumps(_time_one(shape, int(microbatches), _STEPS.value)))
    return
  counts, pinnings = _check_flags()
  out = {
    "workers": _WORKERS.value,
    "steps": _STEPS.value,
    "loadavg_start": os.getloadavg(),
    "shapes": {},
  }
  for shape in _SHAPES.value:
    rows, first = {}, None
    for pinned, count in itertools.product(pinnings, counts):
      timings = _side_by_side(shape, count, pinned)
      rate = statistics.median(t["tokens_per_s"] for t in timings)
      first = first or rate
      key = f"{count} microbatches, {'pinned' if pinned else 'unpinned'}"
      rows[key] = {"tokens_per_s_per_worker": rate, "speedup": rate / first, "workers": timings}
      print(
        f"{shape:36s} {key:28s}: {rate:8.0f} tokens/s per worker, {rate / first:.2f}x", flush=True
      )
    out["shapes"][shape] = rows
  out["loadavg_end"] = os.getloadavg()
  with open(_OUT.value, "w") as f:
    json.dump(out, f, indent=1)
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  gin_utils.run_flags(main)
