"""The engine of every corpus builder: string fields read from raw files into a TFDS
dataset, on one machine or through Apache Beam.

Inputs are JSON lines (`.jsonl`, `.gz`, `.zst`) or plain text (`.txt`, `.md`, `.rst`,
also compressed), local or `gs://`, found by globs under the manual directory (an
absolute glob stands alone). A config either hashes each record's content into
train/validation (`validation_fraction`: deterministic, independent of file order and
workers, duplicates never straddle splits) or reads each split from its own files
(`split_inputs`, as Paloma publishes val/ and test/).

Bad input never stops a build: a bad record is skipped and counted by reason
(`json_source.SKIP_REASONS`); a file that cannot be read to its end (truncated or
corrupt compression, binary content) is skipped whole and named with the reason. Each input's SHA-256, size and
counts, the totals and the bad files go into the dataset's metadata
(`metadata.json`); a build that finds no valid record fails with one line.

Plain path: `download_and_prepare()` / `tfds build`. Beam path: the same with a runner
(`DownloadConfig(beam_runner=..., beam_options=...)`, `tfds build
--beam_pipeline_options=runner=...`); each input file is read once, by one worker,
and the two paths write the same examples in the same order.
"""

import collections
import contextlib
import dataclasses
import hashlib
import io
import json
import os
from typing import Any, Iterator, Mapping, Sequence

from absl import logging as absl_logging
import tensorflow as tf
import tensorflow_datasets as tfds

from redllm_jax.data import json_source, text_source

Job = tuple[str, str | None]  # (input path, the split every record goes to, or None: hashed)
_REPORTS_DIR = "_input_reports"  # Per-input reports, merged into the metadata, then removed.


class NothingBuiltError(ValueError):
  """No valid record in any readable input: one line."""


@dataclasses.dataclass(eq=False)
class TextConfig(tfds.core.BuilderConfig):
  """What a builder config reads: string `fields`, from `inputs` (one glob, hashed into
  train/validation) or `split_inputs` ({split: glob}, every record of a glob in its split).
  Globs are under the manual directory unless absolute."""

  fields: tuple[str, ...] = ("text",)
  inputs: str = ""
  validation_fraction: float = 0.001
  split_inputs: Mapping[str, str] = dataclasses.field(default_factory=dict)
  max_doc_bytes: int = json_source.DEFAULT_MAX_DOC_BYTES
  document_bytes: int = text_source.DEFAULT_DOCUMENT_BYTES


@dataclasses.dataclass(frozen=True)
class Reading:
  """How one input is read (picklable: Beam ships it to its workers)."""

  fields: tuple[str, ...]
  validation_fraction: float
  max_doc_bytes: int
  document_bytes: int
  reports_dir: str


def split_of(record: Mapping[str, str], fields: Sequence[str], validation_fraction: float) -> str:
  """'validation' for a deterministic `validation_fraction` of records, else 'train'."""
  digest = hashlib.sha1("\x00".join(record[f] for f in fields).encode("utf-8")).digest()
  return (
    "validation" if int.from_bytes(digest[:8], "big") < validation_fraction * 2**64 else "train"
  )


def input_stem(path: str) -> str:
  """Basename plus a hash of the full path: unique even when subfolders reuse names."""
  base = os.path.basename(path).split(".")[0]
  return f"{base}-{hashlib.sha1(path.encode()).hexdigest()[:8]}"


def job_examples(job: Job, reading: Reading) -> Iterator[tuple[str, str, dict[str, str]]]:
  """(split, key, example) for each valid record of one input; writes its report last.

  The input is first read to its end (its checksum on the way): one that stops early
  or is binary gives no record at all, so a damaged file is never taken for a whole
  one. Keys number the input's records, the same whichever split reads them.
  """
  path, force_split = job
  stem = input_stem(path)
  counts: collections.Counter = collections.Counter()
  sha256 = size = error = None
  try:
    sha256, size = json_source.check_file(path)
    records = text_source.read_records(
      path, reading.fields, counts, reading.max_doc_bytes, reading.document_bytes
    )
    for index, record in enumerate(records):
      split = force_split or split_of(record, reading.fields, reading.validation_fraction)
      counts[f"split:{split}"] += 1
      yield split, f"{stem}:{index:010d}", record
  except json_source.BadFileError as e:
    error = str(e)
  report = {"path": path, "sha256": sha256, "bytes": size, "counts": dict(counts), "error": error}
  _write_json(os.path.join(reading.reports_dir, stem + ".json"), report)


def _write_json(path: str, value: Any) -> None:
  """Written whole or not at all: a retried Beam worker rewrites the same file."""
  tmp = f"{path}.{os.getpid()}.tmp"
  with tf.io.gfile.GFile(tmp, "w") as f:
    json.dump(value, f, sort_keys=True)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def summarize(reports: Sequence[Mapping[str, Any]], root: str) -> dict[str, Any]:
  """The metadata of a build: totals, bad files by name, and each input's checksum."""
  total: collections.Counter = collections.Counter()
  for report in reports:
    total.update(report["counts"])
  bad = sorted(r["error"] for r in reports if r["error"])

  def name(path: str) -> str:  # Relative to the manual directory: the same on every machine.
    return (
      path[len(root) :].lstrip("/") if root and path.startswith(root.rstrip("/") + "/") else path
    )

  return {
    "ok": total["ok"],
    "skipped": {r: total[r] for r in json_source.SKIP_REASONS if total[r]},
    "splits": {k.split(":", 1)[1]: v for k, v in sorted(total.items()) if k.startswith("split:")},
    "bad_files": len(bad),
    "bad_file_reasons": bad,
    "inputs": {
      name(r["path"]): {"sha256": r["sha256"], "bytes": r["bytes"], "counts": r["counts"]}
      for r in sorted(reports, key=lambda r: r["path"])
    },
  }


def dataset_dir(root: str, builder: type["TextBuilder"], config: str) -> str:
  """Where `builder` writes `config` under a TFDS data directory."""
  return os.path.join(root, builder.name, config, str(builder.VERSION))


def build(
  builder: type["TextBuilder"],
  config: "TextConfig",
  data_dir: str,
  manual_dir: str | None = None,
) -> tfds.core.DatasetBuilder:
  """Builds (or finds) `config` inside the project's commands: quiet (tfds's progress
  bars, config warnings and download messages would bury a command's own lines), and
  another process finishing the same build first is fine (a DecLLM and a RedLLM run of
  one files_task start together): tfds renames its temporary folder into place, so
  the second rename fails, over a complete dataset."""
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)
  tfds.display_progress_bar(False)
  try:
    made = builder(config=config, data_dir=data_dir)
    try:
      with contextlib.redirect_stdout(io.StringIO()):  # "Downloading ...", of nothing
        made.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
        )
    except OSError:
      if not tf.io.gfile.exists(os.path.join(os.fspath(made.data_dir), "dataset_info.json")):
        raise
  finally:
    tfds.display_progress_bar(True)
    absl_logging.set_verbosity(verbosity)
  return made


class TextBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of the corpus builders (`builders.py`): subclasses name the dataset, its
  version and configs."""

  # False: examples are stored in the order of their keys' hashes (tfds's default
  # shuffle); True: in input order (each file's records in turn, files sorted).
  KEEP_INPUT_ORDER = False
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    "Nothing is downloaded: put the published files under the manual directory "
    "(`--manual_dir` / `DownloadConfig(manual_dir=...)`) as docs/data.md lays out."
  )

  def _info(self) -> tfds.core.DatasetInfo:
    fields = self.builder_config.fields
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict({f: tfds.features.Text() for f in fields}),
      metadata=tfds.core.MetadataDict(),
      disable_shuffling=self.KEEP_INPUT_ORDER,
      homepage="https://arxiv.org/abs/2510.26622",
    )

  def _download_and_prepare(self, dl_manager, download_config) -> None:
    self._use_beam = bool(download_config.beam_runner or download_config.beam_options)
    self._beam_reads: dict[int, Any] = {}
    reports_dir = os.path.join(os.fspath(self.data_dir), _REPORTS_DIR)
    tf.io.gfile.makedirs(reports_dir)
    self._reading = Reading(
      fields=tuple(self.builder_config.fields),
      validation_fraction=self.builder_config.validation_fraction,
      max_doc_bytes=self.builder_config.max_doc_bytes,
      document_bytes=self.builder_config.document_bytes,
      reports_dir=reports_dir,
    )
    try:
      super()._download_and_prepare(dl_manager, download_config)
    except AssertionError as e:  # tfds cannot write a split without examples
      if "No examples were yielded" not in str(e):
        raise
      raise NothingBuiltError(
        f"{self.name}/{self.builder_config.name}: a split got no record from {self._globs} "
        f"(validation_fraction {self.builder_config.validation_fraction} held out none of "
        "its documents: raise it, or 0 for no validation split)"
      ) from None
    reports = []
    for path in sorted(tf.io.gfile.glob(os.path.join(reports_dir, "*.json"))):
      with tf.io.gfile.GFile(path) as f:
        reports.append(json.load(f))
    tf.io.gfile.rmtree(reports_dir)
    summary = summarize(reports, os.fspath(self._manual_root))
    if not summary["ok"]:
      raise NothingBuiltError(
        f"Zero valid examples in {self._globs} (skipped: {summary['skipped']}"
        + (f"; bad files: {summary['bad_file_reasons'][0]})" if summary["bad_files"] else ")")
      )
    self.info.metadata.update(summary)

  def _split_generators(self, dl_manager) -> dict[str, Any]:
    config = self.builder_config
    self._manual_root = self._manual_dir(dl_manager)
    if config.split_inputs:
      self._globs = list(config.split_inputs.values())
      plan = {s: [(p, s) for p in self._files(g)] for s, g in config.split_inputs.items()}
    else:
      self._globs = [config.inputs]
      files = self._files(config.inputs)
      splits = ("train", "validation") if config.validation_fraction > 0 else ("train",)
      plan = {s: [(p, None) for p in files] for s in splits}
    return {split: self._generate_examples(plan, split) for split in plan}

  def _manual_dir(self, dl_manager) -> str:
    # An absolute glob needs no manual directory; tfds asserts one exists when asked.
    config = self.builder_config
    globs = [g for g in (config.inputs, *config.split_inputs.values()) if g]
    if all(g.startswith(("/", "gs://")) for g in globs):
      return ""
    return os.fspath(dl_manager.manual_dir)

  def _files(self, pattern: str) -> list[str]:
    return json_source.list_files(os.path.join(self._manual_root, pattern))

  def _generate_examples(self, plan: Mapping[str, Sequence[Job]], split: str):
    """(key, example) of `split`: a generator over its inputs on the plain path; on
    Beam, a PTransform selecting from one read of every split's inputs."""
    if self._use_beam:
      return self._beam_examples(sorted({job for jobs in plan.values() for job in jobs}), split)
    return self._plain_examples(plan[split], split)

  def _plain_examples(self, jobs: Sequence[Job], split: str) -> Iterator[tuple[str, dict]]:
    for job in jobs:
      for record_split, key, example in job_examples(job, self._reading):
        if record_split == split:
          yield key, example

  def _beam_examples(self, jobs: Sequence[Job], split: str):
    beam = tfds.core.lazy_imports.apache_beam
    reading = self._reading

    def expand(begin):
      # Every split selects from one read of the inputs, made by the first split.
      pipeline = begin.pipeline
      if id(pipeline) not in self._beam_reads:
        self._beam_reads[id(pipeline)] = (
          pipeline
          | "Inputs" >> beam.Create(list(jobs))
          | "Spread" >> beam.Reshuffle()
          | "Read" >> beam.FlatMap(job_examples, reading)
        )
      return (
        self._beam_reads[id(pipeline)]
        | f"Select_{split}" >> beam.Filter(lambda row, s=split: row[0] == s)
        | f"Key_{split}" >> beam.Map(lambda row: (row[1], row[2]))
      )

    return beam.ptransform_fn(expand)()
