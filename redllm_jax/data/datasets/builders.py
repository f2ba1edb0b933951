"""The TFDS builders of every corpus the project reads (engine: `text_builder.py`).

  tfds build redllm_redpajama_v1 --imports=redllm_jax.data.datasets \
      --manual_dir=/raw/redpajama --data_dir=$REDLLM_DATA_DIR [--config=arxiv]
  (add --beam_pipeline_options=runner=DirectRunner,direct_num_workers=8, or a cluster
  runner, to build through Apache Beam: docs/data.md)

| dataset | configs | manual directory holds |
|---|---|---|
| redllm_redpajama_v1 | the seven subsets | RedPajama-Data-1T's {subset}/ folders |
| redllm_flan | default | FLAN JSON lines with inputs/targets |
| redllm_paloma | one per source | Paloma's {source}/val/ and {source}/test/ |
| redllm_demo | the demo corpus's collections (and `demo_family_config`) | what `redllm_jax.demo.corpus` writes |
| redllm_files | made at run time (`files_config`) | a user's own files (absolute glob) |
"""

import tensorflow_datasets as tfds

from redllm_jax.data.datasets.text_builder import TextBuilder, TextConfig

# Version 1.0.0 of each: the first TFDS release of the converter that `prepare` was.
_RELEASE_NOTES = {
  "1.0.0": "First TFDS release: the content-hashed splits and bad-input counts of "
  "redllm_jax.data.prepare, with each input's SHA-256 in the metadata."
}

REDPAJAMA_SUBSETS = ("arxiv", "book", "c4", "common_crawl", "github", "stackexchange", "wikipedia")
# RedPajama-Data-1T's layout: common_crawl/{snapshot}/*.jsonl.zst, the rest {subset}/*.jsonl.
_REDPAJAMA_GLOBS = {"common_crawl": "common_crawl/*/*.jsonl*"}

# Source folders of Paloma v1 (allenai/paloma).
PALOMA_SOURCES = (
  "4chan_meta_sep",
  "c4_100_domains",
  "c4_en",
  "dolma-v1_5",
  "dolma_100_programing_languages",
  "dolma_100_subreddits",
  "falcon-refinedweb",
  "gab",
  "m2d2_s2orc_unsplit",
  "m2d2_wikipedia_unsplit",
  "manosphere_meta_sep",
  "mc4",
  "ptb",
  "redpajama",
  "twitterAAE_HELM_fixed",
  "wikitext_103",
)

DEMO_VALIDATION_FRACTION = 0.1


def _demo_config(name: str, **kwargs) -> TextConfig:
  return TextConfig(name=name, validation_fraction=DEMO_VALIDATION_FRACTION, **kwargs)


def demo_family_config(family: str) -> TextConfig:
  """An instruction family the demo cuts from its own train text (`demo.task_families`)."""
  return _demo_config(
    f"family_{family}", fields=("inputs", "targets"), inputs=f"families/{family}/*.jsonl"
  )


def paloma_config(source: str) -> TextConfig:
  """Any Paloma source folder: val/ is the validation split, test/ the test split."""
  return TextConfig(
    name=source,
    split_inputs={"validation": f"{source}/val/*", "test": f"{source}/test/*"},
  )


def files_config(name: str, inputs: str, validation_fraction: float) -> TextConfig:
  """A user's own files (`files_task`): an absolute glob, hashed into train/validation."""
  return TextConfig(name=name, inputs=inputs, validation_fraction=validation_fraction)


class RedllmRedpajamaV1(TextBuilder):
  """RedPajama V1 (1.2T tokens), one config per subset, 0.1% held out as validation."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = _RELEASE_NOTES
  BUILDER_CONFIGS = [
    TextConfig(name=s, inputs=_REDPAJAMA_GLOBS.get(s, f"{s}/*.jsonl*"), validation_fraction=0.001)
    for s in REDPAJAMA_SUBSETS
  ]


class RedllmFlan(TextBuilder):
  """FLAN as inputs/targets strings, 1% held out as validation."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = _RELEASE_NOTES
  BUILDER_CONFIGS = [
    TextConfig(
      name="default", fields=("inputs", "targets"), inputs="*.jsonl*", validation_fraction=0.01
    )
  ]


class RedllmPaloma(TextBuilder):
  """Paloma's evaluation sources, validation and test as published."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = _RELEASE_NOTES
  BUILDER_CONFIGS = [paloma_config(s) for s in PALOMA_SOURCES]


class RedllmDemo(TextBuilder):
  """The demo corpus (`redllm_jax.demo.corpus` writes its raw JSON lines), 10% validation,
  in input order: the SentencePiece model and the instruction families cut from its
  train text are the ones the converter before TFDS gave (same text, same order)."""

  KEEP_INPUT_ORDER = True
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = _RELEASE_NOTES
  BUILDER_CONFIGS = [
    _demo_config("wikipedia", inputs="wikipedia/*.jsonl"),
    _demo_config("book", inputs="book/*.jsonl"),
    _demo_config("flan", fields=("inputs", "targets"), inputs="flan/*.jsonl"),
    _demo_config("pydoc", split_inputs={"validation": "pydoc/*.jsonl"}),
  ]


class RedllmFiles(TextBuilder):
  """A user's own files: `default` reads every file of the manual directory; the
  files_task path makes a config per set of files (`files_config`)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = _RELEASE_NOTES
  BUILDER_CONFIGS = [TextConfig(name="default", inputs="*", validation_fraction=0.05)]
