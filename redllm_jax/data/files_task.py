"""Your own text as a seqio task, by gin alone: no Python module, no PYTHONPATH.

  MIXTURE_OR_TASK_NAME = @files_task()
  files_task.name = 'own_text'
  files_task.data = '/my/docs/*.md'    # raw files, or a dataset folder a TFDS build wrote
  files_task.vocabulary = %VOCABULARY

Gin calls `files_task()` when a command (train, eval, export, ...) first reads
MIXTURE_OR_TASK_NAME: it registers a pretraining-style task (text -> EOS-ended
documents -> full-length chunks, exactly as RedPajama's) and returns its name,
so every consumer of the macro (EVAL_TASKS too) sees a registered task.

Raw files (JSON lines or plain text, see `text_source`) are built once by the
`redllm_files` TFDS builder into {cache_dir}/redllm_files/{name}-{key}/1.0.0, where
the key hashes every file's path, size and modification time and the settings: a
second run, or the other architecture's run, reads the same dataset; a changed file
gets a fresh build. The split is the builders' content hash with
`validation_fraction` (`vocabulary --files` skips the same records). On a pod, build
once (`tfds build redllm_files --manual_dir=...`) and name the dataset's folder
instead, so hosts do not each build.
"""

import hashlib
import json
import os

import gin
import seqio
import tensorflow as tf

from redllm_jax.data import json_source
from redllm_jax.data import paths
from redllm_jax.data import task_builders
from redllm_jax.data import text_source
from redllm_jax.data.datasets import builders, text_builder
from redllm_jax.errors import ConfigError

# Small corpora of your own need a larger held-out share than RedPajama's 0.001
# to have any validation text at all: 5% of 200 READMEs is about 10 of them.
DEFAULT_VALIDATION_FRACTION = 0.05

_registered: dict[str, tuple] = {}  # Task name -> (dataset folder, vocabulary) it reads.


@gin.configurable
def files_task(
  name: str = gin.REQUIRED,
  data: str = gin.REQUIRED,
  vocabulary: seqio.Vocabulary = gin.REQUIRED,
  validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
  cache_dir: str | None = None,
) -> str:
  """Registers `name` over `data` (a glob of raw files or a built dataset's folder)
  and returns `name`; raw files are built on the first call (see module doc)."""
  root = _prepared(name, data, validation_fraction, cache_dir)
  if _registered.get(name) == (root, vocabulary):
    return name
  if name in _registered:  # Same process, another config (tests, notebooks).
    seqio.TaskRegistry.remove(name)
  elif name in seqio.TaskRegistry.names() or name in seqio.MixtureRegistry.names():
    raise ConfigError(
      f"files_task.name {name!r} is already a registered task or mixture; choose another name"
    )
  task_builders.register_text_task(name, lambda: root, vocabulary)
  _registered[name] = (root, vocabulary)
  return name


def _prepared(name: str, data: str, validation_fraction: float, cache_dir: str | None) -> str:
  """The built dataset of `data`: itself if it is one, else its cached build."""
  if tf.io.gfile.isdir(data):
    if not tf.io.gfile.exists(os.path.join(data, "dataset_info.json")):
      raise ConfigError(
        f"files_task.data {data} is a folder that no TFDS build wrote (no "
        f"dataset_info.json): name its files with a glob, e.g. {data}/*.txt"
      )
    return data
  try:
    files = json_source.list_files(data)
  except json_source.NoFilesError as e:
    raise ConfigError(f"files_task.data: {e}") from None
  config = builders.files_config(
    f"{name}-{_key(files, validation_fraction)}", data, validation_fraction
  )
  root = cache_dir or os.path.join(paths.cache_root(), "files_tasks")
  built = text_builder.dataset_dir(root, builders.RedllmFiles, config.name)
  if not tf.io.gfile.exists(os.path.join(built, "dataset_info.json")):
    print(f"files_task {name}: building {len(files)} files into {built} (once)")
  try:
    text_builder.build(builders.RedllmFiles, config, root)
  except text_builder.NothingBuiltError as e:
    raise ConfigError(f"files_task.data: {e}") from None
  return built


def _key(files: list[str], validation_fraction: float) -> str:
  stats = [(f, tf.io.gfile.stat(f).length, tf.io.gfile.stat(f).mtime_nsec) for f in files]
  settings = [
    validation_fraction,
    text_source.DEFAULT_DOCUMENT_BYTES,
    json_source.DEFAULT_MAX_DOC_BYTES,
  ]
  return hashlib.sha1(json.dumps([settings, stats]).encode()).hexdigest()[:12]
