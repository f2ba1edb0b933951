"""files_task: your own files (or a built dataset's folder) as a seqio task from gin
alone, built once and cached; bad settings are one line."""

import glob
import os
import re
import subprocess
import sys

import pytest
import seqio

from redllm_jax import errors, gin_utils
from redllm_jax.data import files_task, paths, vocabulary
from redllm_jax.data.datasets import builders, text_builder

DOCS = [
  f"# Package {i}\n\nIt does thing number {i}, " + "and more " * (i % 5 + 1) for i in range(30)
]


@pytest.fixture()
def own_text(tmp_path, monkeypatch) -> str:
  """30 Markdown files and a vocabulary trained on them, a private cache; returns the glob."""
  monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
  for i, doc in enumerate(DOCS):
    (tmp_path / f"README{i}.md").write_text(doc)
  pattern = str(tmp_path / "*.md")
  vocabulary.train_sentencepiece(
    vocabulary.texts_from_files(pattern), str(tmp_path / "spm.model"), vocab_size=120
  )
  return pattern


def _parse(data: str) -> None:
  """The own-text data gin, as a command parses it."""
  gin_utils.parse_gin(
    ["data/own_text_dec.gin"],
    [f"OWN_TEXT = '{data}'", f"OWN_TEXT_VOCABULARY = '{os.path.dirname(data)}/spm.model'"],
    finalize=False,
  )


def _conversions() -> list[str]:
  pattern = os.path.join(paths.cache_root(), "files_tasks", "redllm_files", "*", "*")
  return sorted(glob.glob(os.path.join(pattern, "dataset_info.json")))


def _texts(split: str) -> list[str]:
  source = seqio.get_mixture_or_task("own_text").source
  return sorted(
    ex["text"].decode() for ex in source.get_dataset(split, shuffle=False).as_numpy_iterator()
  )


def test_a_glob_becomes_a_task_converted_once_and_again_when_a_file_changes(own_text: str) -> None:
  _parse(own_text)
  assert files_task.files_task() == "own_text"
  (stats,) = _conversions()
  train, validation = _texts("train"), _texts("validation")
  assert sorted(train + validation) == sorted(DOCS) and 0 < len(validation) < len(DOCS)
  assert train == sorted(vocabulary.texts_from_files(own_text))  # what the vocabulary read
  built = glob.glob(os.path.join(os.path.dirname(stats), "*"))
  stamps = [os.path.getmtime(p) for p in built]
  assert files_task.files_task() == "own_text"  # a second call builds nothing
  assert stamps == [os.path.getmtime(p) for p in built]
  with open(own_text.replace("*", "README0"), "a", encoding="utf-8") as f:
    f.write("\n\nA new paragraph.")
  files_task.files_task()
  assert len(_conversions()) == 2
  assert any(t.endswith("A new paragraph.") for t in _texts("train") + _texts("validation"))


def test_a_built_dataset_folder_is_read_in_place(own_text: str, tmp_path) -> None:
  config = builders.files_config("mine", own_text, validation_fraction=0.5)
  builder = text_builder.build(builders.RedllmFiles, config, str(tmp_path / "built"))
  _parse(os.fspath(builder.data_dir))
  assert files_task.files_task() == "own_text"
  assert not _conversions()
  assert len(_texts("validation")) > 5  # the build's own fraction, not the task's default


def test_two_runs_building_one_files_task_at_once_both_succeed(own_text: str, tmp_path) -> None:
  """As a DecLLM and a RedLLM run of one files_task do on their first start."""
  code = (
    "from redllm_jax.data import files_task; "
    f"files_task._prepared('own_text', {own_text!r}, 0.05, {str(tmp_path / 'cache')!r})"
  )
  runs = [
    subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    for _ in range(2)
  ]
  for run in runs:
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 0 and "Traceback" not in stderr, stderr[-2000:]
  (built,) = glob.glob(str(tmp_path / "cache" / "redllm_files" / "*" / "1.0.0"))
  assert sorted(os.listdir(os.path.dirname(built))) == ["1.0.0"]  # no temporary folder left


@pytest.mark.parametrize(
  "data, bindings, message",
  [
    ("{tmp}/none/*.md", [], r"files_task\.data: No files match .*/none/\*\.md$"),
    (
      "{tmp}",
      [],
      r"files_task\.data .* is a folder that no TFDS build wrote .* e\.g\. .*/\*\.txt$",
    ),
    ("{tmp}/*.md", ["files_task.name = 'demo_flan'"], r"'demo_flan' is already a registered task"),
  ],
)
def test_bad_settings_are_one_line(own_text: str, tmp_path, data, bindings, message) -> None:
  gin_utils.parse_gin(
    ["data/own_text_dec.gin"],
    [
      f"OWN_TEXT = '{data.format(tmp=tmp_path)}'",
      f"OWN_TEXT_VOCABULARY = '{tmp_path}/spm.model'",
      *bindings,
    ],
    finalize=False,
  )
  with pytest.raises(errors.ConfigError) as error:
    files_task.files_task()
  assert re.search(message, error.value.message)  # the one line the command prints


def test_train_with_files_matching_nothing_is_one_line_and_exit_2(tmp_path) -> None:
  run = subprocess.run(
    [
      sys.executable,
      "-m",
      "redllm_jax.train",
      "--gin_file=models/decllm.gin",
      "--gin_file=models/sizes/tiny.gin",
      "--gin_file=runs/pretrain.gin",
      "--gin_file=data/own_text_dec.gin",
      f"--gin.OWN_TEXT='{tmp_path}/none/*.txt'",
      f"--gin.OWN_TEXT_VOCABULARY='{tmp_path}/spm.model'",
      f"--gin.MODEL_DIR='{tmp_path}/run'",
      "--gin.TRAIN_STEPS=1",
      "--gin.BATCH_SIZE=2",
    ],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
  errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
  assert errors == [f"error: files_task.data: No files match {tmp_path}/none/*.txt"]
