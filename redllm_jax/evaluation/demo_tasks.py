r"""Builds the demo harness tasks from demo_flan's validation split (never training text).

  python -m redllm_jax.evaluation.demo_tasks [--out_dir=tasks/harness]
"""
import json
import os
from absl import flags
import numpy as np
import seqio

import redllm_jax_tasks  # noqa: F401  pylint: disable=unused-import  # registers demo_flan
from redllm_jax import gin_utils
from redllm_jax.data import demo_corpus
from redllm_jax.data import paths

_OUT_DIR = flags.DEFINE_string("out_dir", "tasks/harness", "Where the task files go.")


def build_demo_tasks(out_dir: str, num_options: int = 4, seed: int = 0) -> dict[str, int]:
  """Writes demo_qa_gen.jsonl and demo_qa_mc.jsonl from demo_flan's validation split.

  Questions asked several times become one example with all their answers as
  references (generative) or with the first answer as the label (multiple choice);
  distractors are answers to other questions, never one of this question's answers.
  """
  demo_corpus.build(paths.demo_dir())
  ds = seqio.get_mixture_or_task("demo_flan").source.get_dataset(split="validation", shuffle=False)
  answers: dict[str, list[str]] = {}
  for ex in ds.as_numpy_iterator():
    q, a = ex["inputs"].decode("utf-8").strip(), ex["targets"].decode("utf-8").strip()
    if q and a and a not in answers.setdefault(q, []):
      answers[q].append(a)
  questions = sorted(answers)
  pool = sorted({a for q in questions for a in answers[q]})
  rng = np.random.RandomState(seed)
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "demo_qa_gen.jsonl"), "w") as f:
    for q in questions:
      f.write(json.dumps({"inputs": q, "targets": answers[q]}) + "\n")
  written = 0
  with open(os.path.join(out_dir, "demo_qa_mc.jsonl"), "w") as f:
    for q in questions:
      candidates = [a for a in pool if a not in answers[q]]
      if len(candidates) < num_options - 1:
        continue
      picks = rng.choice(len(candidates), num_options - 1, replace=False)
      options = [answers[q][0]] + [candidates[i] for i in picks]
      order = rng.permutation(num_options)
      options = [options[i] for i in order]
      f.write(json.dumps({"inputs": q, "options": options,
                          "label": int(np.where(order == 0)[0][0])}) + "\n")
      written += 1
  return {"generative": len(questions), "multiple_choice": written}


def main() -> None:
  print(json.dumps(build_demo_tasks(_OUT_DIR.value)))


if __name__ == "__main__":
  gin_utils.run_flags(main)
