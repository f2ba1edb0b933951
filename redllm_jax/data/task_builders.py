"""Helpers that register the project's seqio tasks (used by `redllm_jax_tasks`)."""

import functools
from typing import Callable, Sequence

import seqio

from redllm_jax.data import preprocessors
from redllm_jax.data import sources
from redllm_jax.data.datasets import text_builder


def built(
  root_fn: Callable[[], str], builder: type[text_builder.TextBuilder], config: str
) -> Callable[[], str]:
  """A zero-arg function giving where `builder` writes `config` under the data root
  {root_fn()}/{dataset}/{config}/{version}, evaluated when called (gin applies)."""
  return functools.partial(_built_dir, root_fn, builder, config)


def _built_dir(
  root_fn: Callable[[], str], builder: type[text_builder.TextBuilder], config: str
) -> str:
  return text_builder.dataset_dir(root_fn(), builder, config)


def register_text_task(
  name: str,
  dir_fn: Callable[[], str],
  vocabulary: seqio.Vocabulary,
  splits: Sequence[str] = ("train", "validation"),
) -> seqio.Task:
  """Pretraining-style task (RedPajama, Paloma): `text` -> full-length `targets` chunks."""
  return seqio.TaskRegistry.add(
    name,
    source=sources.TfdsTextSource(dir_fn, splits),
    preprocessors=list(preprocessors.PRETRAIN_PREPROCESSORS),
    output_features={"targets": seqio.Feature(vocabulary, add_eos=True)},
    metric_fns=[],
  )


def register_rehearsal_task(
  name: str, dir_fn: Callable[[], str], vocabulary: seqio.Vocabulary
) -> seqio.Task:
  """Pretraining text in the instruction format, to mix into tuning: chunks of
  inputs + targets tokens split in two, each part EOS-ended as a FLAN example's is, so
  that tuning keeps what pretraining taught in the format the tuned model is asked in."""
  return seqio.TaskRegistry.add(
    name,
    source=sources.TfdsTextSource(dir_fn),
    preprocessors=list(preprocessors.REHEARSAL_PREPROCESSORS),
    output_features={
      "inputs": seqio.Feature(vocabulary, add_eos=True),
      "targets": seqio.Feature(vocabulary, add_eos=True),
    },
    metric_fns=[],
  )


def register_flan_task(
  name: str, dir_fn: Callable[[], str], vocabulary: seqio.Vocabulary
) -> seqio.Task:
  """Instruction-tuning task: `inputs`/`targets` strings -> EOS-terminated token ids."""
  return seqio.TaskRegistry.add(
    name,
    source=sources.TfdsTextSource(dir_fn),
    preprocessors=list(preprocessors.FINETUNE_PREPROCESSORS),
    output_features={
      "inputs": seqio.Feature(vocabulary, add_eos=True),
      "targets": seqio.Feature(vocabulary, add_eos=True),
    },
    metric_fns=[],
  )
