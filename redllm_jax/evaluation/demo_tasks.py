r"""Builds the demo harness tasks from demo_flan's validation split (never training text).

  python -m redllm_jax.evaluation.demo_tasks [--out_dir=tasks/harness]

Each task is a JSON-lines file and its lm-eval YAML (`harness.task_yaml`), so that
`lm_eval_model`'s command reads them with `--include_path tasks/harness`.
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
from redllm_jax.evaluation import harness

_OUT_DIR = flags.DEFINE_string("out_dir", "tasks/harness", "Where the task files go.")


def build_demo_tasks(out_dir: str, num_options: int = 4, seed: int = 0) -> dict[str, int]:
  """Writes demo_qa_{gen,mc}.{jsonl,yaml} from demo_flan's validation split.

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
  generative = [{"inputs": q, "targets": answers[q]} for q in questions]
  multiple_choice = []
  for q in questions:
    candidates = [a for a in pool if a not in answers[q]]
    if len(candidates) < num_options - 1:
      continue
    picks = rng.choice(len(candidates), num_options - 1, replace=False)
    options = [answers[q][0]] + [candidates[i] for i in picks]
    order = rng.permutation(num_options)
    multiple_choice.append({"inputs": q, "options": [options[i] for i in order],
                            "label": int(np.where(order == 0)[0][0])})
  for name, kind, examples in (("demo_qa_gen", harness.GEN, generative),
                               ("demo_qa_mc", harness.MC, multiple_choice)):
    # The YAMLs read the data relative to the working directory: run lm-eval from the repo.
    harness.write_task_files(out_dir, name, kind, examples,
                             data_file=os.path.join(out_dir, f"{name}.jsonl"))
  return {"generative": len(generative), "multiple_choice": len(multiple_choice)}


def main() -> None:
  print(json.dumps(build_demo_tasks(_OUT_DIR.value)))


if __name__ == "__main__":
  gin_utils.run_flags(main)
