"""The lm-eval model `redllm_jax`, run as a user runs it: lm-eval's CLI in a subprocess on
local YAML tasks over JSON files, offline, against a checkpoint and an export of each
variant. Its per-item log-likelihoods (`--log_samples`) must equal the project's own
scoring of the same strings, one unpadded row at a time; rolling log-likelihoods the
pretraining layout's; generations greedy `predict_batch`'s."""

import functools
import glob
import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pydoc_data.topics
import pytest
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from conftest import init, make_model
from redllm_jax import checkpoints
from redllm_jax.data import vocabulary
from redllm_jax.decoding import DecodingConfig
from redllm_jax.evaluation import export, lm_eval_model
from redllm_jax.functional import EOS_ID
from redllm_jax.errors import ConfigError

pytest.importorskip("lm_eval")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOCAB_SIZE = 4096  # the demo vocabulary's
MAX_LENGTH = 128
MAX_GEN_TOKS = 6

MC_YAML = """task: t_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
fewshot_split: test
output_type: multiple_choice
doc_to_text: "{{{{inputs}}}}"
doc_to_choice: "{{{{options}}}}"
doc_to_target: label
target_delimiter: "\\n"
fewshot_delimiter: "\\n\\n"
metric_list:
  - metric: acc
"""
GEN_YAML = """task: t_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{inputs}}}}"
doc_to_target: "{{{{targets[0]}}}}"
generation_kwargs:
  until: ["ing"]
  max_gen_toks: {max_gen_toks}
metric_list:
  - metric: exact_match
"""
ROLL_YAML = """task: t_roll
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - metric: word_perplexity
"""


def _perturbed_params(model):
  """Initial parameters moved off their init values (norm scales too), deterministic."""
  rng = np.random.RandomState(7)
  return jax.tree.map(
    lambda p: jnp.asarray(np.asarray(p) + 0.1 * rng.standard_normal(p.shape).astype(np.float32)),
    init(model),
  )


@functools.lru_cache(maxsize=None)
def _saved(arch: str, root: str, vocab: str):
  """A checkpoint (recording its vocabulary) and an export of one variant."""
  model = make_model(arch, vocab_size=VOCAB_SIZE)
  params = _perturbed_params(model)
  run_dir = os.path.join(root, arch)
  checkpointer = checkpoints.Checkpointer(run_dir, 1, async_save=False)
  meta = dict(model.describe(), vocabulary=vocabulary.record_vocabulary(run_dir, vocab))
  checkpointer.save(2, params, {"unused": jnp.zeros(2)}, meta, force=True)
  checkpointer.wait()
  export.export(model, params, run_dir + "_export", vocab)
  return model, params, run_dir


@pytest.fixture(scope="module")
def setup(demo_root, tmp_path_factory):
  root = str(tmp_path_factory.mktemp("lm_eval"))
  vocab = os.path.join(demo_root, "vocab", "spm_4096_bpe.model")
  tasks = os.path.join(root, "tasks")
  os.makedirs(tasks)
  with open(os.path.join(REPO, "tasks", "harness", "demo_qa_mc.jsonl")) as f:
    mc = [ex for ex in map(json.loads, f) if max(map(len, ex["options"])) <= 60][:4]
  gen = [{"inputs": ex["inputs"], "targets": [ex["options"][ex["label"]]]} for ex in mc[:2]]
  topics = pydoc_data.topics.topics
  roll = [{"text": topics[k][:1500]} for k in sorted(topics) if len(topics[k]) >= 1500][:2]
  for name, rows, template in (
    ("mc", mc, MC_YAML),
    ("gen", gen, GEN_YAML),
    ("roll", roll, ROLL_YAML),
  ):
    data = os.path.join(tasks, f"{name}.jsonl")
    with open(data, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in rows)
    with open(os.path.join(tasks, f"{name}.yaml"), "w") as f:
      f.write(template.format(data=data, max_gen_toks=MAX_GEN_TOKS))
  return root, vocab, tasks


def _run_lm_eval(model_args: str, tasks_dir: str, out_dir: str, *extra: str):
  env = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HOME": os.path.join(out_dir, "hf"),
  }
  return subprocess.run(
    [
      sys.executable,
      "-m",
      "redllm_jax.evaluation.lm_eval_model",
      "--model",
      "redllm_jax",
      "--model_args",
      model_args,
      "--include_path",
      tasks_dir,
      *extra,
      "--output_path",
      out_dir,
    ],
    capture_output=True,
    text=True,
    timeout=600,
    env=env,
    cwd=REPO,
  )


def _samples(out_dir: str, task: str) -> list[dict]:
  (path,) = glob.glob(os.path.join(out_dir, "*", f"samples_{task}_*.jsonl"))
  with open(path) as f:
    return [json.loads(line) for line in f]


def _reference_score(model, params, prompt, answer):
  """One unpadded row through `prefix_lm_batch` + `score_batch`: (log-likelihood, greedy)."""
  batch = model.prefix_lm_batch([prompt], [answer])
  score, greedy = model.score_batch(params, batch, return_greedy=True)
  return float(score[0]), bool(greedy[0])


def _reference_rolling(model, params, tokens):
  """Each chunk scored in the pretraining layout where it is a whole window: DecLLM
  [BOS, chunk] (`pretraining_batch`), RedLLM a window split in the middle."""
  total = 0.0
  if model.architecture == "redllm":
    half = MAX_LENGTH // 2
    for start in range(0, len(tokens), half):
      chunk, context = tokens[start : start + half], tokens[max(0, start - half) : start]
      if len(chunk) == half and len(context) == half:
        batch = model.pretraining_batch(np.array([context + chunk]))
      else:  # the document's first chunk (empty encoder) and a short last one
        batch = model.prefix_lm_batch([context], [chunk])
      total += float(model.score_batch(params, batch)[0])
    return total
  for start in range(0, len(tokens), MAX_LENGTH):
    chunk = tokens[start : start + MAX_LENGTH]
    total += float(model.score_batch(params, model.pretraining_batch(np.array([chunk])))[0])
  return total


def _reference_generation(model, params, sp, prompt, add_eos):
  ids = list(sp.encode(prompt)) + ([EOS_ID] if add_eos else [])
  out = model.predict_batch(
    params,
    np.array([ids], np.int32),
    np.array([len(ids)], np.int32),
    jax.random.key(0),
    DecodingConfig(max_new_tokens=MAX_GEN_TOKS),
  )
  tokens = [int(t) for t in out.tokens[0]]
  tokens = tokens[: tokens.index(EOS_ID)] if EOS_ID in tokens else tokens
  return sp.decode(tokens).split("ing", 1)[0]


def _check_against_project(setup, arch: str, source: str, add_eos: bool, tmp_path):
  root, vocab, tasks = setup
  model, params, run_dir = _saved(arch, root, vocab)
  where = f"checkpoint={run_dir}" if source == "checkpoint" else f"export_dir={run_dir}_export"
  out = str(tmp_path / "out")
  run = _run_lm_eval(
    f"{where},add_eos={add_eos},max_length={MAX_LENGTH}",
    tasks,
    out,
    "--tasks",
    "t_mc,t_gen,t_roll",
    "--num_fewshot",
    "1",
    "--log_samples",
    "--batch_size",
    "8",
  )
  assert run.returncode == 0, run.stderr[-3000:]
  sp = spm.SentencePieceProcessor(model_file=vocab)
  encode = lambda text: list(sp.encode(text)) + ([EOS_ID] if add_eos else [])
  mc = _samples(out, "t_mc")
  assert len(mc) == 4
  for sample in mc:
    for args, resp in zip(sample["arguments"].values(), sample["resps"]):
      context, continuation = args["arg_0"], args["arg_1"]
      assert "\n\n" in context  # one exemplar before the question
      prompt, answer = encode(context), encode(continuation)
      assert len(prompt) + len(answer) <= MAX_LENGTH  # nothing cut: the plain layout
      expected, greedy = _reference_score(model, params, prompt, answer)
      got = float(resp[0][0])
      assert got == pytest.approx(expected, rel=1e-5, abs=1e-5), (arch, source, context)
      assert (resp[0][1] == "True") == greedy
  for sample in _samples(out, "t_roll"):
    tokens = list(sp.encode(sample["doc"]["text"]))
    assert len(tokens) > MAX_LENGTH  # several windows
    got = float(sample["resps"][0][0])
    assert got == pytest.approx(_reference_rolling(model, params, tokens), rel=1e-5, abs=1e-5)
  for sample in _samples(out, "t_gen"):
    context = sample["arguments"]["gen_args_0"]["arg_0"]
    assert sample["resps"][0][0] == _reference_generation(model, params, sp, context, add_eos)


# Minutes each (lm-eval's CLI in a subprocess, three task kinds): the slow suite.
@pytest.mark.slow
@pytest.mark.parametrize(
  "arch,source,add_eos",
  [
    ("redllm", "checkpoint", True),
    ("redllm", "export", False),
    ("decllm_biattn", "export", False),
    ("decllm", "checkpoint", True),
    ("decllm", "export", False),
    ("decllm_biattn", "checkpoint", True),
  ],
)
def test_lm_eval_scores_equal_the_project_scoring_every_variant(
  setup, arch, source, add_eos, tmp_path
):
  _check_against_project(setup, arch, source, add_eos, tmp_path)


def test_rolling_windows_score_every_token_exactly_once():
  tokens = list(range(2, 39))
  for context, chunk in ((0, 8), (4, 4), (16, 16), (3, 5)):
    pairs = lm_eval_model.rolling_windows(tokens, context, chunk)
    assert [t for _, c in pairs for t in c] == tokens  # each once, in order
    position = 0
    for before, scored in pairs:
      assert before == tokens[max(0, position - context) : position]
      assert 0 < len(scored) <= chunk
      position += len(scored)
  assert lm_eval_model.rolling_windows([], 4, 4) == []


def test_long_requests_keep_the_answer_and_the_end_of_the_prompt():
  assert lm_eval_model.fit([1, 2, 3], [4, 5], 4) == ([2, 3], [4, 5])
  assert lm_eval_model.fit([1, 2, 3], [4, 5, 6, 7, 8], 4) == ([], [4, 5, 6, 7])
  assert lm_eval_model.fit([1, 2], [4], 8) == ([1, 2], [4])


def test_stop_strings_cut_at_the_earliest():
  assert lm_eval_model.cut_at_stop("a cat. sat\n\nb", ["\n\n", "."]) == "a cat"
  assert lm_eval_model.cut_at_stop("no stop", ["", "zz"]) == "no stop"


def test_bad_model_args_are_one_line(setup, tmp_path):
  _, _, tasks = setup
  run = _run_lm_eval(
    f"checkpoint={tmp_path}/missing", tasks, str(tmp_path / "out"), "--tasks", "t_mc"
  )
  assert run.returncode == 2, run.stderr[-2000:]
  assert "Traceback" not in run.stderr, run.stderr[-2000:]
  assert run.stderr.strip().splitlines()[-1] == (
    f"error: checkpoint path does not exist: {tmp_path}/missing"
  )
  for kwargs, message in (
    ({}, "needs exactly one of"),
    ({"export_dir": str(tmp_path / "missing")}, "export file not found"),
  ):
    with pytest.raises(ConfigError, match=message):
      lm_eval_model.load(**kwargs)


def test_unknown_model_args_are_an_error_before_loading(tmp_path):
  """A typo (add_eso=True) is a ConfigError naming it, not a silent default; what lm-eval
  itself adds (max_batch_size, device) passes, to the next error: the missing checkpoint."""
  missing = str(tmp_path / "missing")
  with pytest.raises(ConfigError, match=r"unknown model args add_eso, max_len; valid: checkpoint"):
    lm_eval_model.RedLLMJax(checkpoint=missing, add_eso=True, max_len=256)
  with pytest.raises(ConfigError, match="checkpoint path does not exist"):
    lm_eval_model.RedLLMJax(checkpoint=missing, batch_size=8, max_batch_size=64, device="cuda")


def test_bad_vocab_is_one_line(tmp_path):
  """A missing or non-SentencePiece vocab= is a ConfigError; for an export, a vocab= that
  is not its spm.model (sha256) too, naming both files."""
  garbage = tmp_path / "garbage.model"
  garbage.write_bytes(b"not a model")
  for vocab, message in (
    (str(tmp_path / "nope.model"), "vocab: Vocabulary file not found"),
    (str(garbage), "vocab: Not a SentencePiece model"),
    (str(tmp_path), "vocab: "),
  ):
    with pytest.raises(ConfigError, match=message):
      lm_eval_model.load(checkpoint=str(tmp_path / "missing"), vocab=vocab)
  own = vocabulary.train_sentencepiece(
    list(pydoc_data.topics.topics.values())[:40], str(tmp_path / "own.model"), vocab_size=300
  )
  proto = sentencepiece_model_pb2.ModelProto.FromString(open(own, "rb").read())
  proto.normalizer_spec.name = proto.normalizer_spec.name + "_other"  # valid, other bytes
  other = tmp_path / "other.model"
  other.write_bytes(proto.SerializeToString())
  same = tmp_path / "same.model"
  same.write_bytes(open(own, "rb").read())
  model = make_model("redllm", vocab_size=512)
  out = str(tmp_path / "export")
  export.export(model, init(model), out, own)
  exported = os.path.join(out, "spm.model")
  with pytest.raises(
    ConfigError,
    match=re.escape(f"vocab={other} is not the export's vocabulary {exported} (sha256 differs)"),
  ):
    lm_eval_model.load(export_dir=out, vocab=str(other))
  assert lm_eval_model.load(export_dir=out, vocab=str(same))[2] == str(same)
  assert lm_eval_model.load(export_dir=out)[2] == exported
