"""The worked example of docs/own_text.md, run as its commands: package READMEs (real
text that installs) -> vocabulary -> DecLLM and RedLLM trained by gin alone -> eval
-> export -> Hugging Face load -> lm-eval scoring, each a subprocess with the
user's flags. Smaller than the document's (steps, batch, lengths) to stay quick."""

import glob
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("lm_eval")
pytest.importorskip("transformers")
pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[2]
READMES = str(
  pathlib.Path(os.path.dirname(__import__("lm_eval").__file__)) / "tasks" / "*" / "README.md"
)
# DecLLM reads 128-token chunks; RedLLM the very same chunks, 96 tokens in the
# encoder and 32 on the decoder, from TASK_FEATURE_LENGTHS alone.
LENGTHS = {"decllm": "{'targets': 128}", "redllm": "{'inputs': 96, 'targets': 32}"}
DECODER_TOKENS = {"decllm": 128, "redllm": 32}


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
  run = subprocess.run(
    [sys.executable, "-m", *args],
    capture_output=True,
    text=True,
    timeout=900,
    cwd=REPO,
    env={**os.environ, **env},
  )
  assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-3000:]
  return run


def _data_flags(root: pathlib.Path, arch: str) -> list[str]:
  return [
    f"--gin.OWN_TEXT='{READMES}'",
    f"--gin.OWN_TEXT_VOCABULARY='{root}/spm.model'",
    f"--gin.TASK_FEATURE_LENGTHS={LENGTHS[arch]}",
  ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[pathlib.Path, dict[str, str], dict[str, dict]]:
  """The vocabulary and both trained runs; returns (root, env, final in-training eval)."""
  root = tmp_path_factory.mktemp("own_text")
  env = {"REDLLM_JAX_CACHE": str(root / "cache"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
  _run(
    "redllm_jax.data.vocabulary",
    f"--files={READMES}",
    f"--out={root}/spm.model",
    "--vocab_size=4096",
    env=env,
  )
  results = {}
  for arch in ("decllm", "redllm"):
    run = _run(
      "redllm_jax.train",
      f"--gin_file=experiments/own_text/{arch}.gin",
      *_data_flags(root, arch),
      f"--gin.MODEL_DIR='{root}/{arch}'",
      "--gin.TRAIN_STEPS=6",
      "--gin.BATCH_SIZE=4",
      "--gin.train.train.eval_steps=1000",
      env=env,
    )
    results[arch] = json.loads(run.stdout[run.stdout.rindex("\n{\n") :])  # after the summary
  return root, env, results


def test_both_architectures_train_on_the_same_chunks_split_where_the_lengths_say(trained) -> None:
  _, _, results = trained
  for arch, metrics in results.items():
    examples, tokens = metrics["own_text/num_examples"], metrics["own_text/num_tokens"]
    assert examples > 10 and np.isfinite(metrics["own_text/loss"])
    # Every validation chunk is full but the last: tokens per example are the decoder's.
    assert DECODER_TOKENS[arch] * (examples - 1) < tokens <= DECODER_TOKENS[arch] * examples, arch
  # The same chunks; RedLLM drops a last chunk too short to reach its decoder.
  dec, red = results["decllm"]["own_text/num_examples"], results["redllm"]["own_text/num_examples"]
  assert dec - 1 <= red <= dec


def test_eval_command_equals_the_in_training_eval(trained) -> None:
  root, env, results = trained
  for arch in ("decllm", "redllm"):
    _run(
      "redllm_jax.evaluation.perplexity",
      f"--gin_file=data/own_text_{arch[:3]}.gin",
      "--gin_file=runs/eval.gin",
      *_data_flags(root, arch),
      f"--gin.CHECKPOINT_PATH='{root}/{arch}'",
      f"--gin.OUTPUT_DIR='{root}/{arch}/eval'",
      env=env,
    )
    with open(root / arch / "eval" / "eval_results.json", encoding="utf-8") as f:
      evaluated = json.load(f)
    metrics = evaluated["results"]["own_text"]
    assert evaluated["step"] == 6
    assert metrics["num_tokens"] == results[arch]["own_text/num_tokens"]
    np.testing.assert_allclose(
      metrics["cross_entropy"], results[arch]["own_text/cross_entropy"], rtol=1e-5
    )


@pytest.fixture(scope="module")
def exported(trained) -> dict[str, pathlib.Path]:
  root, env, _ = trained
  for arch in ("decllm", "redllm"):
    _run(
      "redllm_jax.evaluation.export",
      "--gin_file=runs/export.gin",
      f"--gin.CHECKPOINT_PATH='{root}/{arch}'",
      f"--gin.EXPORT_DIR='{root}/export_{arch}'",
      env=env,
    )
  return {arch: root / f"export_{arch}" for arch in ("decllm", "redllm")}


HF_SNIPPET = """
import sys, torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
path, arch = sys.argv[1:]
tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
auto = AutoModelForCausalLM if arch == "decllm" else AutoModelForSeq2SeqLM
model = auto.from_pretrained(path, trust_remote_code=True)
prompt = tokenizer("## Task Validity Checklist", return_tensors="pt")
out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
print(len(out[0]) - (prompt.input_ids.shape[1] if arch == "decllm" else 0))
"""


def test_exports_load_and_generate_with_hugging_face(trained, exported) -> None:
  _, env, _ = trained
  for arch, path in exported.items():
    run = subprocess.run(
      [sys.executable, "-c", HF_SNIPPET, str(path), arch],
      capture_output=True,
      text=True,
      timeout=600,
      env={**os.environ, **env},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert 1 <= int(run.stdout.split()[-1]) <= 9  # new tokens (RedLLM: with the start token)


def _bits_per_byte(root: pathlib.Path, env: dict[str, str], name: str, model_args: str) -> float:
  out = root / "lm_eval" / name
  _run(
    "redllm_jax.evaluation.lm_eval_model",
    "--model",
    "redllm_jax",
    "--model_args",
    model_args,
    "--include_path",
    "tasks/own_text",
    "--tasks",
    "own_text_readmes_ppl",
    "--limit",
    "6",
    "--output_path",
    str(out),
    env=env,
  )
  (results,) = glob.glob(f"{out}/**/results_*.json", recursive=True)
  with open(results, encoding="utf-8") as f:
    return json.load(f)["results"]["own_text_readmes_ppl"]["bits_per_byte,none"]


def test_lm_eval_scores_held_out_text_from_checkpoint_and_export_alike(trained, exported) -> None:
  root, env, _ = trained
  from_checkpoint = _bits_per_byte(
    root, env, "decllm_ckpt", f"checkpoint={root}/decllm,max_length=128"
  )
  from_export = _bits_per_byte(
    root, env, "decllm_export", f"export_dir={exported['decllm']},max_length=128"
  )
  np.testing.assert_allclose(from_export, from_checkpoint, rtol=1e-6)
  red = _bits_per_byte(
    root, env, "redllm_export", f"export_dir={exported['redllm']},max_length=128"
  )
  assert 0 < from_checkpoint < 20 and 0 < red < 20
