"""Your own text as a seqio task, by gin alone: no Python module, no PYTHONPATH.

  MIXTURE_OR_TASK_NAME = @files_task()
  files_task.name = 'own_text'
  files_task.data = '/my/docs/*.md'    # raw files, or a folder that `prepare` wrote
  files_task.vocabulary = %VOCABULARY

Gin calls `files_task()` when a command (train, eval, export, ...) first reads
MIXTURE_OR_TASK_NAME: it registers a pretraining-style task (text -> EOS-ended
documents -> full-length chunks, exactly as RedPajama's) and returns its name,
so every consumer of the macro (EVAL_TASKS too) sees a registered task.

Raw files (JSON lines or plain text, see `text_source`) are converted once by
`prepare` into {cache_dir}/{name}-{key}/, where the key hashes every file's path,
size and modification time and the conversion settings: a second run, or the
other architecture's run, reads the same TFRecords; a changed file gets a fresh
conversion. The split is `prepare`'s content hash with `validation_fraction`
(`vocabulary --files` skips the same records). On a pod, run `prepare` once and
name its output folder instead, so hosts do not each convert.
"""

import hashlib
import json
import os

import gin
import seqio
import tensorflow as tf

from redllm_jax.data import json_source
from redllm_jax.data import paths
from redllm_jax.data import prepare
from redllm_jax.data import task_builders
from redllm_jax.data import text_source
from redllm_jax.errors import ConfigError

# Small corpora of your own need a larger held-out share than RedPajama's 0.001
# to have any validation text at all: 5% of 200 READMEs is about 10 of them.
DEFAULT_VALIDATION_FRACTION = 0.05

_registered: dict[str, tuple] = {}  # Task name -> (TFRecord folder, vocabulary) it reads.


@gin.configurable
def files_task(
  name: str = gin.REQUIRED,
  data: str = gin.REQUIRED,
  vocabulary: seqio.Vocabulary = gin.REQUIRED,
  validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
  cache_dir: str | None = None,
) -> str:
  """Registers `name` over `data` (a glob of raw files or a `prepare` output folder)
  and returns `name`; raw files are converted on the first call (see module doc)."""
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
  """The TFRecord folder of `data`: itself if `prepare` wrote it, else its cached conversion."""
  if tf.io.gfile.isdir(data):
    if not tf.io.gfile.exists(os.path.join(data, "stats.json")):
      raise ConfigError(
        f"files_task.data {data} is a folder that `prepare` did not write (no "
        f"stats.json): name its files with a glob, e.g. {data}/*.txt"
      )
    return data
  try:
    files = json_source.list_files(data)
  except json_source.NoFilesError as e:
    raise ConfigError(f"files_task.data: {e}") from None
  out = os.path.join(
    cache_dir or os.path.join(paths.cache_root(), "files_tasks"),
    f"{name}-{_key(files, validation_fraction)}",
  )
  try:
    prepare.convert(data, out, validation_fraction=validation_fraction)
  except prepare.NothingConvertedError as e:
    raise ConfigError(f"files_task.data: {e}") from None
  return out


def _key(files: list[str], validation_fraction: float) -> str:
  stats = [(f, tf.io.gfile.stat(f).length, tf.io.gfile.stat(f).mtime_nsec) for f in files]
  settings = [
    validation_fraction,
    text_source.DEFAULT_DOCUMENT_BYTES,
    json_source.DEFAULT_MAX_DOC_BYTES,
  ]
  return hashlib.sha1(json.dumps([settings, stats]).encode()).hexdigest()[:12]
