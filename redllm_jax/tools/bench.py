r"""Benchmark suite: matmul ceiling, train-step MFU, decoding, input pipeline.

  python -m redllm_jax.tools.bench                      # everything (~10 min on 2 CPU cores)
  python -m redllm_jax.tools.bench --sections=ceiling,train --sizes=tiny   # quick
  python -m redllm_jax.tools.bench --out=bench.json --compare=old.json

Every figure is measured in one process, side by side, and written to one JSON
(`--out`); `--compare` prints each figure's ratio against an earlier JSON.

- ceiling: the best f32 (CPU) / bf16 (accelerator) matmul FLOP/s over a few
  shapes, including the 150M FFN shape. It is the MFU denominator.
- train: the real train step (`trainer.compile_steps`, 1-device Partitioner,
  Adafactor + global-norm clipping, scanned layers; on CPU kernels stored
  [out, in], `kernels_out_first`) at the tiny gin config and at
  the 150M shape, batch 4 x 512 tokens (RedLLM 256 + 256). MFU = model FLOPs
  from `flops.training_flops` (no remat credit) / step time / ceiling.
- decode: cached decoding (`predict_batch`) tokens/s for both architectures at
  prompt:generation 1:1 with the Red/Dec ratio; and uncached decoding (the full
  forward recomputed for every generated token) to show the caches' effect.
- input: the demo input pipeline's tokens/s against the train step's consumption.
- peers: the same greedy decoding (shapes, batch, f32, lengths) and the same
  train step shape in Hugging Face transformers on PyTorch (`bench_peers`: Llama
  for DecLLM, T5Gemma for RedLLM; Adafactor), timed in alternation with ours; plus
  the memory bandwidth and XLA's matrix-vector read rate, and our decode step
  (the run less its prefill, per token) against both bounds (the bytes of the
  weights a step reads over each rate). Skipped, saying why, without the `peers`
  extra.
- study: the train step at the study's shapes (`--study_shapes`: tiny widths,
  V 1024 / 4096; unrolled layers unless a shape says `scan`) against the same step
  with JAX autodiff's backward for the loss and the dense layers
  (`tools/autodiff_reference.py`), timed alternately, each right after a
  ceiling measurement: step time, tokens/s, model FLOP/s over that ceiling, and
  the speedup of the custom backward (docs/perf_notes.md).
- dispatch: whether train steps pipeline. N steps of the tiny config dispatched
  back to back, the way the loop runs them now that metrics are read back only
  when logged or saved: host seconds per dispatch against seconds per step. A
  ratio well under 1 means the host is never waiting on the device between steps.
"""
import dataclasses
import json
import math
import os
import platform
import statistics
import time
from typing import Any, Callable, Optional, Sequence

from absl import flags
import gin
import jax
import jax.numpy as jnp
import numpy as np

from redllm_jax.demo import corpus as demo_corpus
from redllm_jax.tools import autodiff_reference, bench_input, bench_peers
from redllm_jax import errors, flops, gin_utils, models, optimizers
from redllm_jax.decoding import DecodingConfig
from redllm_jax.models import BaseModel
from redllm_jax.partitioning import Partitioner
from redllm_jax.trainer import compile_steps

SECTIONS = ("ceiling", "train", "study", "decode", "peers", "input", "dispatch")
ARCHS = ("decllm", "redllm")

_SECTIONS = flags.DEFINE_list("sections", list(SECTIONS), f"Any of {SECTIONS}.")
_SIZES = flags.DEFINE_list("sizes", ["tiny", "150m"], "Model sizes for train and decode.")
_OUT = flags.DEFINE_string("out", "bench.json", "Where the JSON of all figures goes.")
_COMPARE = flags.DEFINE_string("compare", None, "An earlier JSON: print ratios new/old.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repetitions (best and median kept).")
_REMAT = flags.DEFINE_string("remat", "none", "Remat policy for the train section "
                             "('gin' keeps the model gin's).")
_TRAIN_BATCH = flags.DEFINE_integer("train_batch", 4, "150M train batch (rows).")
_TRAIN_LENGTH = flags.DEFINE_integer("train_length", 512, "150M tokens per row.")
_DECODE_LENGTH = flags.DEFINE_integer("decode_length", 128, "Prompt and generation length.")
_DECODE_BATCH = flags.DEFINE_integer("decode_batch", 4, "Decode batch.")
STUDY_OPTIONS = ("scan", "in_first")  # Scanned layers; kernels [in, out] (the study gins').
_STUDY_SHAPES = flags.DEFINE_list(
    "study_shapes", ["decllm/mini_s/32x256/4096", "redllm/mini_s/32x256/4096",
                     "decllm/micro_s/64x128/1024", "redllm/micro_s/64x128/1024"],
    f"Study section: arch/size/ROWSxTOKENS/vocab[/option...], options {STUDY_OPTIONS} "
    "(scanned layers; kernels stored [in, out] as the study gins do, not [out, in]).")
_UNCACHED = flags.DEFINE_bool("uncached", True, "Also time uncached decoding.")


def _timeit(fn: Callable[[], Any], repeats: int) -> dict[str, float]:
  """Seconds of `fn()` (which must block): best and median of `repeats` after one warmup."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    tic = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - tic)
  return {"best_s": min(times), "median_s": statistics.median(times)}


# ----------------------------------------------------------------------------- ceiling

_matmul = jax.jit(lambda a, b: a @ b)
CEILING_SHAPES = ((2048, 1024, 4096), (2048, 4096, 1024), (2048, 2048, 2048))


def matmul_ceiling(repeats: int = 5, dtype: Optional[str] = None,
                   shapes: Sequence[tuple[int, int, int]] = CEILING_SHAPES) -> dict[str, Any]:
  """Best measured matmul FLOP/s over `shapes` (m x k @ k x n)."""
  if dtype is None:
    dtype = "float32" if jax.default_backend() == "cpu" else "bfloat16"
  per_shape = {}
  for m, k, n in shapes:
    a = jax.random.normal(jax.random.key(0), (m, k), dtype)
    b = jax.random.normal(jax.random.key(1), (k, n), dtype)
    t = _timeit(lambda: _matmul(a, b), repeats)
    per_shape[f"{m}x{k}x{n}"] = 2.0 * m * k * n / t["best_s"]
  return {"dtype": dtype, "flops_per_s": max(per_shape.values()), "per_shape": per_shape}


# ----------------------------------------------------------------------------- models

def build_model(arch: str, size: str, bindings: Sequence[str] = ()) -> BaseModel:
  """The model of `gin/models/{arch}.gin` at `gin/models/sizes/{size}.gin`, float32 on CPU."""
  gin.clear_config()
  extra = []
  if jax.default_backend() == "cpu":
    extra.append("ACTIVATION_DTYPE = 'float32'")
  gin_utils.parse_gin([f"models/{arch}.gin", f"models/sizes/{size}.gin"], [*extra, *bindings])
  return models.from_gin()


def lengths_for(arch: str, tokens: int) -> tuple[int, int]:
  """(inputs, targets) per row: DecLLM one sequence; RedLLM split in the middle."""
  return (tokens // 2, tokens - tokens // 2) if arch == "redllm" else (0, tokens)


def synthetic_batch(model: BaseModel, batch: int, tokens: int, seed: int = 0):
  """A full-length (no padding) pretraining batch of random chunks of ids >= 2."""
  rng = np.random.RandomState(seed)
  return model.pretraining_batch(rng.randint(2, model.config.vocab_size, (batch, tokens)))


# ----------------------------------------------------------------------------- train

TRAIN_SHAPES = {"tiny": (16, 256)}  # Demo batch 16 x 256; other sizes use the flags.


def train_setup(arch: str, size: str, batch: int, tokens: int, remat: str = "none",
                bindings: Sequence[str] = (), num_microbatches: int = 1):
  """(figures so far, run) for the real sharded train step on one device; run() blocks.

  On CPU kernels are stored [out, in] (`kernels_out_first`): XLA's dots run the 150M
  step 1.1-1.2x faster in that layout (docs/perf_notes.md). A binding overrides it.
  """
  extra = [f"config.TransformerConfig.kernels_out_first = {jax.default_backend() == 'cpu'}",
           *bindings]
  if remat != "gin":
    extra.append(f"config.TransformerConfig.remat_policy = '{remat}'")
  model = build_model(arch, size, extra)
  partitioner = Partitioner(mesh_shape=(1, 1, 1), devices=jax.devices()[:1])
  schedule = optimizers.learning_rate_schedule(peak=0.01, warmup_steps=10, decay_steps=100)
  steps = compile_steps(model, optimizers.make_optimizer, partitioner, num_microbatches)
  holder = [steps.init(jax.random.key(0))]
  data = steps.partitioner.global_batch(synthetic_batch(model, batch, tokens))
  rng = jax.random.key(1)

  def run(block: bool = True):
    holder[0], metrics = steps.train(holder[0], data, rng, schedule)  # The state is donated.
    return jax.block_until_ready(metrics) if block else metrics

  tic = time.perf_counter()
  metrics = run()
  inputs, targets = lengths_for(arch, tokens)
  info = {
      "arch": arch, "size": size, "batch": batch, "tokens_per_row": tokens,
      "remat": model.config.remat_policy, "dtype": model.config.dtype,
      "kernels_out_first": model.config.kernels_out_first,
      "params": flops.count_params(model.abstract_params()).total,
      "compile_and_first_step_s": time.perf_counter() - tic,
      "model_flops_per_step": batch * flops.training_flops(model.config, arch, inputs, targets),
      "loss": float(metrics["loss"]),
  }
  return info, run


def dispatch_bench(arch: str, steps: int = 20) -> dict[str, float]:
  """Host seconds to dispatch `steps` tiny train steps back to back, against their run time."""
  batch, tokens = TRAIN_SHAPES["tiny"]
  _, run = train_setup(arch, "tiny", batch, tokens)
  tic = time.perf_counter()
  for _ in range(steps):
    metrics = run(block=False)
  dispatched = time.perf_counter() - tic
  jax.block_until_ready(metrics)
  total = time.perf_counter() - tic
  return {"steps": steps, "dispatch_s_per_step": dispatched / steps,
          "step_s": total / steps, "dispatch_over_step": dispatched / total}


def _quick_ceiling() -> float:
  """The 150M FFN-shaped matmul, best of 3: re-measured right before each timed step."""
  return matmul_ceiling(repeats=3, shapes=CEILING_SHAPES[:1])["flops_per_s"]


def train_compare(size: str, batch: int, tokens: int, ceiling: float, repeats: int,
                  remat: str = "none") -> dict[str, Any]:
  """Both architectures' steps, timed alternately, each right after a ceiling measurement.

  `mfu` uses the run's ceiling; `mfu_local_*` use the ceiling measured just before
  that step, which cancels most of a shared machine's load changes.
  """
  setups = {arch: train_setup(arch, size, batch, tokens, remat) for arch in ARCHS}
  samples = {arch: [] for arch in ARCHS}
  for _ in range(repeats):
    for arch, (_, run) in setups.items():
      local = _quick_ceiling()
      tic = time.perf_counter()
      run()
      samples[arch].append((time.perf_counter() - tic, local))
  out = {}
  for arch, (info, _) in setups.items():
    times = [t for t, _ in samples[arch]]
    local = [info["model_flops_per_step"] / t / c for t, c in samples[arch]]
    best = min(times)
    out[arch] = {**info, "best_s": best, "median_s": statistics.median(times),
                 "tokens_per_s": batch * tokens / best,
                 "model_flops_per_s": info["model_flops_per_step"] / best,
                 "mfu": info["model_flops_per_step"] / best / ceiling,
                 "mfu_local_best": max(local), "mfu_local_median": statistics.median(local),
                 "local_ceilings": [c for _, c in samples[arch]]}
  return out


def parse_study_shape(shape: str) -> tuple[str, str, int, int, list[str]]:
  """(arch, size, rows, tokens per row, gin bindings) of "arch/size/RxT/vocab[/option...]"."""
  try:
    arch, size, rows_tokens, vocab, *options = shape.split("/")
    rows, tokens = map(int, rows_tokens.split("x"))
    if arch not in ARCHS or not set(options) <= set(STUDY_OPTIONS):
      raise ValueError
  except ValueError:
    raise errors.ConfigError(
        f"bad --study_shapes entry {shape!r}: want arch/size/ROWSxTOKENS/vocab[/option...], "
        f"arch in {ARCHS}, options in {STUDY_OPTIONS}") from None
  bindings = [f"config.TransformerConfig.vocab_size = {int(vocab)}",
              f"config.TransformerConfig.scan_layers = {'scan' in options}"]
  if "in_first" in options:
    bindings.append("config.TransformerConfig.kernels_out_first = False")
  return arch, size, rows, tokens, bindings


def study_compare(shape: str, repeats: int) -> dict[str, Any]:
  """One study shape's train step, custom backward vs autodiff's, timed alternately."""
  arch, size, batch, tokens, bindings = parse_study_shape(shape)
  with autodiff_reference.autodiff_step():  # Traced (and compiled) inside the context.
    autodiff = train_setup(arch, size, batch, tokens, bindings=bindings)
  setups = {"custom": train_setup(arch, size, batch, tokens, bindings=bindings),
            "autodiff": autodiff}
  samples = {name: [] for name in setups}
  for _ in range(repeats):
    for name, (_, run) in setups.items():
      local = _quick_ceiling()
      tic = time.perf_counter()
      run()
      samples[name].append((time.perf_counter() - tic, local))
  out = {"shape": shape}
  for name, (info, _) in setups.items():
    times = [t for t, _ in samples[name]]
    flops_per_step = info["model_flops_per_step"]
    out[name] = {**info, "best_s": min(times), "median_s": statistics.median(times),
                 "tokens_per_s": batch * tokens / statistics.median(times),
                 "model_flops_per_s": flops_per_step / statistics.median(times),
                 "mfu_local_median": statistics.median(
                     flops_per_step / t / c for t, c in samples[name]),
                 "local_ceilings": [c for _, c in samples[name]]}
  out["speedup_median"] = out["autodiff"]["median_s"] / out["custom"]["median_s"]
  out["speedup_best"] = out["autodiff"]["best_s"] / out["custom"]["best_s"]
  out["loss_equal"] = out["autodiff"]["loss"] == out["custom"]["loss"]
  return out


# ----------------------------------------------------------------------------- decode

def uncached_decode_fn(model: BaseModel, prompt_len: int, new_tokens: int) -> Callable:
  """Greedy decoding that recomputes the whole forward pass for every generated token."""

  def decode(params, prompts):
    batch = prompts.shape[0]
    generated = jnp.zeros((batch, new_tokens), jnp.int32)

    def body(t, generated):
      if model.architecture == "redllm":
        dec_in = jnp.pad(generated[:, :-1], ((0, 0), (1, 0)))  # start token 0
        features = {"encoder_input_tokens": prompts, "decoder_input_tokens": dec_in,
                    "decoder_target_tokens": jnp.where(jnp.arange(new_tokens) <= t, 2, 0)
                    * jnp.ones_like(generated)}
        pos = t
      else:
        seq = jnp.concatenate([jnp.zeros((batch, 1), jnp.int32), prompts, generated], 1)[:, :-1]
        # Positions after the current one are padding (segment 0), like unfilled slots.
        real = (jnp.arange(seq.shape[1]) <= prompt_len + t).astype(jnp.int32)
        features = {"decoder_input_tokens": seq,
                    "decoder_target_tokens": jnp.broadcast_to(real * 2, seq.shape)}
        pos = prompt_len + t
      logits = model.logits(params, features)
      token = jnp.argmax(logits[:, pos], axis=-1).astype(jnp.int32)
      return generated.at[:, t].set(token)

    return jax.lax.fori_loop(0, new_tokens, body, generated)

  return jax.jit(decode)


def decode_setup(arch: str, size: str, batch: int, length: int, uncached: bool):
  """(figures so far, cached run, its prefill alone, uncached run or None) for greedy
  decoding of `length` new tokens after `length`-token prompts. Runs block and return
  the tokens; the prefill run is the same call generating one token."""
  model = build_model(arch, size)
  params = model.init_params(jax.random.key(0))
  rng = np.random.RandomState(0)
  prompts = jnp.asarray(rng.randint(2, model.config.vocab_size, (batch, length)), jnp.int32)
  lengths = jnp.full((batch,), length, jnp.int32)
  # eos_id = -1: never stops early, so every run generates exactly `length` tokens.
  cfg = DecodingConfig(max_new_tokens=length, eos_id=-1)
  predict = lambda cfg: jax.jit(
      lambda p, x, n: model.predict_batch(p, x, n, jax.random.key(0), cfg).tokens)
  cached, first = predict(cfg), predict(dataclasses.replace(cfg, max_new_tokens=1))
  tic = time.perf_counter()
  decoding_params = model.decoding_params(params, cfg)
  cached_tokens = np.asarray(cached(decoding_params, prompts, lengths))
  info = {"arch": arch, "size": size, "batch": batch, "prompt": length, "generate": length,
          "params": flops.count_params(model.abstract_params()).total,
          "step_weight_bytes": bench_peers.decode_step_weight_bytes(model.abstract_params()),
          "cached_compile_s": time.perf_counter() - tic,
          "inference_flops_per_seq": flops.inference_flops(model.config, arch, length, length)}
  run_cached = lambda: jax.block_until_ready(cached(decoding_params, prompts, lengths))
  run_prefill = lambda: jax.block_until_ready(first(decoding_params, prompts, lengths))
  run_uncached = None
  if uncached:
    fn = uncached_decode_fn(model, length, length)
    info["uncached_matches_cached"] = float(np.mean(np.asarray(fn(params, prompts))
                                                    == cached_tokens))
    run_uncached = lambda: jax.block_until_ready(fn(params, prompts))
  return info, run_cached, run_prefill, run_uncached


def decode_compare(size: str, batch: int, length: int, repeats: int,
                   uncached: bool) -> dict[str, Any]:
  """Both architectures' decoding, timed alternately (Dec, Red, Dec, ...) so that a
  change of machine load hits both; best and median per architecture."""
  setups = {arch: decode_setup(arch, size, batch, length, uncached) for arch in ARCHS}
  times = {(arch, kind): [] for arch in ARCHS for kind in ("cached", "uncached")}
  for i in range(repeats):
    for arch, (_, run_cached, _, run_uncached) in setups.items():
      for kind, fn in (("cached", run_cached), ("uncached", run_uncached)):
        if fn is None or (kind == "uncached" and i >= max(1, repeats - 1)):
          continue
        tic = time.perf_counter()
        fn()
        times[(arch, kind)].append(time.perf_counter() - tic)
  out = {}
  for arch, (info, *_) in setups.items():
    r = dict(info)
    for kind in ("cached", "uncached"):
      t = times[(arch, kind)]
      if t:
        r.update({f"{kind}_best_s": min(t), f"{kind}_median_s": statistics.median(t),
                  f"{kind}_tokens_per_s": batch * length / min(t)})
    if "uncached_tokens_per_s" in r:
      r["cache_speedup"] = r["cached_tokens_per_s"] / r["uncached_tokens_per_s"]
    out[arch] = r
  return out


# ----------------------------------------------------------------------------- peers

PEER_THREADS = (1, 2)  # torch threads; on a loaded 2-core host 1 thread can be faster.


def peers_train_compare(size: str, batch: int, tokens: int, repeats: int) -> dict[str, Any]:
  """Our train step (as the train section runs it) vs HF PyTorch's on the same batch
  shape, alternating; torch on all cores."""
  runs, infos = {}, {}
  for arch in ARCHS:
    infos[arch], runs[f"{arch}/ours"] = train_setup(arch, size, batch, tokens)
    hf = bench_peers.hf_model(arch, build_model(arch, size).config)
    runs[f"{arch}/hf"] = bench_peers.hf_train_fn(hf, arch, batch, tokens, os.cpu_count())
  times = bench_peers.timed(runs, repeats)
  out = {}
  for arch in ARCHS:
    ours, hf = (bench_peers.summary(times[f"{arch}/{who}"], batch * tokens)
                for who in ("ours", "hf"))
    out[arch] = {"batch": batch, "tokens_per_row": tokens, "ours": ours, "hf": hf,
                 "ours_over_hf": ours["tokens_per_s"] / hf["tokens_per_s"],
                 "kernels_out_first": infos[arch]["kernels_out_first"]}
  return out


def peers_compare(size: str, batch: int, length: int, repeats: int) -> dict[str, Any]:
  """Ours vs HF PyTorch greedy decoding, all runs alternating; the faster torch thread
  count is the peer. Also our decode step (the run less its prefill, per token) against
  the bandwidth bound and the bound of XLA's matrix-vector products."""
  bandwidth = bench_peers.memory_bandwidth()
  matvec = bench_peers.matvec_bandwidth(batch)
  runs, infos = {}, {}
  for arch in ARCHS:
    cfg = build_model(arch, size).config
    hf = bench_peers.hf_model(arch, cfg)
    # The prompts decode_setup feeds ours.
    prompts = np.random.RandomState(0).randint(2, cfg.vocab_size, (batch, length))
    info, run_ours, run_prefill, _ = decode_setup(arch, size, batch, length, uncached=False)
    infos[arch] = dict(info, hf_params=sum(p.numel() for p in hf.parameters()))
    runs[f"{arch}/ours"], runs[f"{arch}/ours_prefill"] = run_ours, run_prefill
    for threads in PEER_THREADS:
      runs[f"{arch}/hf_{threads}t"] = bench_peers.hf_decode_fn(hf, prompts, length, threads)
  times = bench_peers.timed(runs, repeats)
  out = {"read_bytes_per_s": bandwidth, "matvec_bytes_per_s": matvec}
  for arch in ARCHS:
    ours = bench_peers.summary(times[f"{arch}/ours"], batch * length)
    peers = {t: bench_peers.summary(times[f"{arch}/hf_{t}t"], batch * length)
             for t in PEER_THREADS}
    threads = max(peers, key=lambda t: peers[t]["tokens_per_s"])
    prefill_s = statistics.median(times[f"{arch}/ours_prefill"])
    step_s = (ours["median_s"] - prefill_s) / (length - 1)
    weight_bytes = infos[arch]["step_weight_bytes"]
    out[arch] = {**infos[arch], "ours": ours, "hf": peers[threads], "hf_threads": threads,
                 "hf_all": {f"{t}t": peers[t] for t in PEER_THREADS},
                 "ours_over_hf": ours["tokens_per_s"] / peers[threads]["tokens_per_s"],
                 "prefill_s": prefill_s, "step_s": step_s,
                 "bandwidth_bound_s": weight_bytes / bandwidth,
                 "step_over_bound": step_s * bandwidth / weight_bytes,
                 "matvec_bound_s": weight_bytes / matvec,
                 "step_over_matvec_bound": step_s * matvec / weight_bytes}
  return out


# ----------------------------------------------------------------------------- input

def input_bench(batch: int = 16, steps: int = 100, warmup: int = 20) -> dict[str, Any]:
  """Demo pretraining input pipeline tokens/s for both architectures (256-token chunks)."""
  demo_corpus.build()
  return {arch: {"tokens_per_s": bench_input.tokens_per_second(
      "demo_redpajama", arch[:3], batch, steps, warmup), "batch": batch,
      "tokens_per_row": bench_input.CHUNK} for arch in ARCHS}


# ----------------------------------------------------------------------------- driver

def machine() -> dict[str, Any]:
  try:
    load = os.getloadavg()
  except OSError:
    load = (float("nan"),) * 3
  cpu = platform.processor()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "host": platform.node(), "cpu": cpu,
          "cores": os.cpu_count(), "backend": jax.default_backend(),
          "devices": jax.device_count(), "jax": jax.__version__,
          "loadavg": list(load), "xla_flags": os.environ.get("XLA_FLAGS", "")}


def run(sections: Sequence[str], sizes: Sequence[str], repeats: int = 3, remat: str = "none",
        train_batch: int = 4, train_length: int = 512, decode_batch: int = 4,
        decode_length: int = 128, uncached: bool = True,
        study_shapes: Sequence[str] = (),
        log: Callable[[str], None] = print) -> dict[str, Any]:
  """All requested figures as one JSON-able dict (see the module docstring)."""
  unknown = set(sections) - set(SECTIONS)
  if unknown:
    raise ValueError(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
  out: dict[str, Any] = {"machine": machine()}
  ceiling = None
  if "ceiling" in sections or "train" in sections:
    out["ceiling"] = matmul_ceiling()
    ceiling = out["ceiling"]["flops_per_s"]
    log(f"matmul ceiling ({out['ceiling']['dtype']}): {ceiling / 1e9:.1f} GFLOP/s")
  if "train" in sections:
    out["train"] = {}
    for size in sizes:
      batch, tokens = TRAIN_SHAPES.get(size, (train_batch, train_length))
      for arch, r in train_compare(size, batch, tokens, ceiling, repeats, remat).items():
        out["train"][f"{arch}_{size}"] = r
        log(f"train {arch:7s} {size:5s} {batch}x{tokens}: {r['best_s'] * 1e3:8.1f} ms/step "
            f"(median {r['median_s'] * 1e3:.1f})  {r['tokens_per_s']:9.0f} tok/s  "
            f"MFU {r['mfu']:.1%} (vs the ceiling just before each step: best "
            f"{r['mfu_local_best']:.1%}, median {r['mfu_local_median']:.1%})")
    # Re-measure the ceiling after the train section: the load on a shared machine drifts.
    after = matmul_ceiling()
    out["ceiling"]["after_train_flops_per_s"] = after["flops_per_s"]
    log(f"matmul ceiling after train: {after['flops_per_s'] / 1e9:.1f} GFLOP/s")
  if "study" in sections:
    for shape in study_shapes:
      parse_study_shape(shape)  # Every entry checked before the first compile.
    out["study"] = {shape: study_compare(shape, repeats) for shape in study_shapes}
    for shape, r in out["study"].items():
      for name in ("custom", "autodiff"):
        t = r[name]
        log(f"study {shape:28s} {name:8s}: {t['median_s'] * 1e3:7.1f} ms/step (best "
            f"{t['best_s'] * 1e3:.1f})  {t['tokens_per_s']:7.0f} tok/s  "
            f"{t['model_flops_per_s'] / 1e9:5.1f} GFLOP/s = {t['mfu_local_median']:.1%} "
            f"of the ceiling")
      log(f"study {shape:28s} custom backward: {r['speedup_median']:.2f}x at the median "
          f"({r['speedup_best']:.2f}x best), same first loss: {r['loss_equal']}")
  if "decode" in sections:
    out["decode"] = {}
    for size in sizes:
      rows = decode_compare(size, decode_batch, decode_length, repeats, uncached)
      for arch, r in rows.items():
        out["decode"][f"{arch}_{size}"] = r
        extra = (f"  uncached {r['uncached_tokens_per_s']:8.0f} tok/s  cache speedup "
                 f"{r['cache_speedup']:.1f}x" if uncached else "")
        log(f"decode {arch:7s} {size:5s} {decode_batch}x({decode_length}+{decode_length}): "
            f"cached {r['cached_tokens_per_s']:8.0f} tok/s{extra}")
      ratio = rows["redllm"]["cached_tokens_per_s"] / rows["decllm"]["cached_tokens_per_s"]
      out["decode"][f"red_over_dec_{size}"] = ratio
      log(f"decode RedLLM/DecLLM {size}: {ratio:.2f}x (params "
          f"{rows['redllm']['params'] / 1e6:.1f}M vs {rows['decllm']['params'] / 1e6:.1f}M)")
  if "peers" in sections:
    reason = bench_peers.missing()
    if reason:
      log(f"peers: skipped, {reason}")
      out["peers"] = {"skipped": reason}
    else:
      out["peers"] = {size: peers_compare(size, decode_batch, decode_length, repeats)
                      for size in sizes}
      for size in sizes:
        batch, tokens = TRAIN_SHAPES.get(size, (train_batch, train_length))
        out["peers"][size]["train"] = peers_train_compare(size, batch, tokens, repeats)
      for size, rows in out["peers"].items():
        log(f"memory bandwidth (read): {rows['read_bytes_per_s'] / 1e9:.1f} GB/s; XLA "
            f"matrix-vector products (batch {decode_batch}): "
            f"{rows['matvec_bytes_per_s'] / 1e9:.1f} GB/s")
        for arch in ARCHS:
          r = rows[arch]
          log(f"peers {arch:7s} {size:5s} {decode_batch}x({decode_length}+{decode_length}): "
              f"ours {r['ours']['tokens_per_s']:7.1f} tok/s, HF PyTorch "
              f"({r['hf_threads']} thread) {r['hf']['tokens_per_s']:7.1f} tok/s: "
              f"{r['ours_over_hf']:.2f}x; our step {r['step_s'] * 1e3:.1f} ms vs bandwidth "
              f"bound {r['bandwidth_bound_s'] * 1e3:.1f} ms ({r['step_over_bound']:.2f}x), "
              f"matvec bound {r['matvec_bound_s'] * 1e3:.1f} ms "
              f"({r['step_over_matvec_bound']:.2f}x)")
          t = rows["train"][arch]
          log(f"peers {arch:7s} {size:5s} train {t['batch']}x{t['tokens_per_row']}: ours "
              f"{t['ours']['tokens_per_s']:7.1f} tok/s, HF PyTorch (Adafactor) "
              f"{t['hf']['tokens_per_s']:7.1f} tok/s: {t['ours_over_hf']:.2f}x")
  if "dispatch" in sections:
    out["dispatch"] = {arch: dispatch_bench(arch) for arch in ARCHS}
    for arch, r in out["dispatch"].items():
      log(f"dispatch {arch:7s} tiny: {r['dispatch_s_per_step'] * 1e3:.2f} ms to dispatch a step "
          f"that takes {r['step_s'] * 1e3:.1f} ms ({r['dispatch_over_step']:.1%})")
  if "input" in sections:
    out["input"] = input_bench()
    for arch in ARCHS:
      rate = out["input"][arch]["tokens_per_s"]
      line = f"input {arch}: {rate:,.0f} tok/s"
      for key, r in out.get("train", {}).items():
        if key.startswith(arch):
          out["input"][arch][f"over_train_{key}"] = rate / r["tokens_per_s"]
          line += f"  ({rate / r['tokens_per_s']:.1f}x {key} training consumption)"
      log(line)
  out["machine"]["loadavg_end"] = list(os.getloadavg())
  return out


def flatten(d: Any, prefix: str = "") -> dict[str, float]:
  """Numeric leaves as {"a.b.c": value}."""
  items = {}
  if isinstance(d, dict):
    for k, v in d.items():
      items.update(flatten(v, f"{prefix}{k}."))
  elif isinstance(d, (int, float)) and not isinstance(d, bool):
    items[prefix[:-1]] = float(d)
  return items


def compare(new: dict, old: dict) -> list[str]:
  """Lines `key: new / old = ratio` for the figures both runs have."""
  a, b = flatten(new), flatten(old)
  lines = []
  for key in sorted(set(a) & set(b)):
    if key.startswith("machine.") or not b[key] or not math.isfinite(b[key]):
      continue
    lines.append(f"{key:60s} {a[key]:14.4g} / {b[key]:14.4g} = {a[key] / b[key]:6.3f}")
  return lines


def main() -> None:
  result = run(_SECTIONS.value, _SIZES.value, _REPEATS.value, _REMAT.value,
               _TRAIN_BATCH.value, _TRAIN_LENGTH.value, _DECODE_BATCH.value,
               _DECODE_LENGTH.value, _UNCACHED.value, _STUDY_SHAPES.value)
  with open(_OUT.value, "w") as f:
    json.dump(result, f, indent=1, sort_keys=True)
  print(f"wrote {_OUT.value}")
  if _COMPARE.value:
    with open(_COMPARE.value) as f:
      print("\n".join(compare(result, json.load(f))))


if __name__ == "__main__":
  gin_utils.run_flags(main)
