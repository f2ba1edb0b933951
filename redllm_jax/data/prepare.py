r"""One-time conversion of JSON-lines shards or plain-text files to the TFRecord
shards that tasks read.

  python -m redllm_jax.data.prepare --input_glob='/raw/arxiv/*.jsonl.zst' \
      --output_dir=$REDLLM_DATA_DIR/redpajama_v1/arxiv --fields=text
  python -m redllm_jax.data.prepare --input_glob="/my/docs/*/README.md" --output_dir=/data/my_docs

Files named .txt, .md or .rst (also .gz or .zst) are plain text, cut into
documents as `text_source` says (a file up to 64 KiB is one document); every
other file is JSON lines.

Why convert: tf.data cannot read .zst, cannot skip bad JSON lines, and a
Python generator source cannot be checkpointed mid-stream (resumable input).
Each input file becomes one TFRecord per split (so multi-host sharding is by
file), written atomically, followed by a per-input stats file; a re-run skips
inputs whose stats file exists (resumable). Inputs convert in parallel.
A file that cannot be read to its end (corrupt or truncated compression, binary
content) is skipped whole, named in the summary with how far it got, and not
marked done, so a re-run tries it again; the other files convert. The command
exits 0 when anything converted, else with one line and code 2.
Train/validation assignment hashes the record's content: deterministic,
independent of file order and parallelism, and duplicates never straddle splits.
"""

import collections
import dataclasses
import hashlib
import json
import multiprocessing
import os
from typing import Optional, Sequence

from absl import flags, logging
import tensorflow as tf

from redllm_jax import errors, gin_utils
from redllm_jax.data import json_source
from redllm_jax.data import text_source

STATS_DIR = "_stats"


class NothingConvertedError(ValueError):
  """No valid record in any readable file: one line."""


@dataclasses.dataclass
class FileResult:
  path: str
  counts: dict[str, int]
  error: Optional[str] = None  # Why the file was skipped (it is then not marked done).


def split_of(record: dict[str, str], fields: Sequence[str], validation_fraction: float) -> str:
  """'validation' for a deterministic `validation_fraction` of records, else 'train'."""
  digest = hashlib.sha1("\x00".join(record[f] for f in fields).encode("utf-8")).digest()
  return (
    "validation" if int.from_bytes(digest[:8], "big") < validation_fraction * 2**64 else "train"
  )


def _example(record: dict[str, str]) -> bytes:
  feature = {
    k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode("utf-8")]))
    for k, v in record.items()
  }
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _stem(path: str) -> str:
  # Basename plus a hash of the full path: unique even when subfolders reuse names.
  base = os.path.basename(path).split(".")[0]
  return f"{base}-{hashlib.sha1(path.encode()).hexdigest()[:8]}"


def convert_file(
  path: str,
  output_dir: str,
  fields: Sequence[str],
  validation_fraction: float,
  force_split: str | None,
  max_doc_bytes: int,
  document_bytes: int = text_source.DEFAULT_DOCUMENT_BYTES,
) -> FileResult:
  """Converts one input file; a file that stops early leaves no output behind."""
  stem = _stem(path)
  stats_path = os.path.join(output_dir, STATS_DIR, stem + ".json")
  if tf.io.gfile.exists(stats_path):
    with tf.io.gfile.GFile(stats_path) as f:
      return FileResult(path, json.load(f))
  counts: collections.Counter = collections.Counter()
  writers: dict[str, tf.io.TFRecordWriter] = {}

  def final(split: str) -> str:
    return os.path.join(output_dir, split, stem + ".tfrecord")

  def temporary(split: str) -> str:  # Per process: two runs converting one folder never share one.
    return f"{final(split)}.{os.getpid()}.tmp"

  try:
    for record in text_source.read_records(path, fields, counts, max_doc_bytes, document_bytes):
      split = force_split or split_of(record, fields, validation_fraction)
      if split not in writers:
        tf.io.gfile.makedirs(os.path.join(output_dir, split))
        writers[split] = tf.io.TFRecordWriter(temporary(split))
      writers[split].write(_example(record))
      counts[f"split:{split}"] += 1
  except json_source.BadFileError as e:
    for split, writer in writers.items():
      writer.close()
      tf.io.gfile.remove(temporary(split))
    return FileResult(path, {}, str(e))
  for split, writer in writers.items():
    writer.close()
    tf.io.gfile.rename(temporary(split), final(split), overwrite=True)
  tf.io.gfile.makedirs(os.path.dirname(stats_path))
  _write_json(stats_path, dict(counts))
  return FileResult(path, dict(counts))


def _write_json(path: str, value: dict) -> None:
  """Written whole or not at all (renamed into place): a reader never sees half a file."""
  tmp = f"{path}.{os.getpid()}.tmp"
  with tf.io.gfile.GFile(tmp, "w") as f:
    json.dump(value, f, indent=1, sort_keys=True)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def _convert_star(args: tuple) -> FileResult:
  return convert_file(*args)


def convert(
  input_glob: str,
  output_dir: str,
  fields: Sequence[str] = ("text",),
  validation_fraction: float = 0.001,
  force_split: str | None = None,
  max_doc_bytes: int = json_source.DEFAULT_MAX_DOC_BYTES,
  num_workers: int = 1,
  document_bytes: int = text_source.DEFAULT_DOCUMENT_BYTES,
) -> dict[str, int]:
  """Converts every file matching `input_glob`; returns and logs summed counts.

  The counts include `bad_files`, the files skipped whole (each is logged with
  its reason). Raises one-line errors when nothing matches or nothing valid was
  converted.
  """
  files = json_source.list_files(input_glob)
  jobs = [
    (p, output_dir, tuple(fields), validation_fraction, force_split, max_doc_bytes, document_bytes)
    for p in files
  ]
  if num_workers > 1 and len(files) > 1:
    # spawn, not fork: forking a process that already runs TF threads can hang.
    with multiprocessing.get_context("spawn").Pool(min(num_workers, len(files))) as pool:
      results = list(pool.imap_unordered(_convert_star, jobs))
  else:
    results = [convert_file(*job) for job in jobs]
  total: collections.Counter = collections.Counter()
  for result in results:
    total.update(result.counts)
  bad = sorted(r.error for r in results if r.error)
  for error in bad:
    logging.warning("Skipped bad file %s", error)
  if bad:
    total["bad_files"] = len(bad)
  skipped = {r: total[r] for r in json_source.SKIP_REASONS if total[r]}
  logging.info(
    "Converted %s -> %s: %d ok, skipped %s, %d bad files",
    input_glob,
    output_dir,
    total["ok"],
    skipped,
    len(bad),
  )
  if not total["ok"]:
    raise NothingConvertedError(
      f"Zero valid examples in {input_glob} (skipped: {skipped}"
      + (f"; {len(bad)} bad files, first {bad[0]})" if bad else ")")
    )
  _write_json(os.path.join(output_dir, "stats.json"), {**total, "bad_file_reasons": bad})
  return dict(total)


def main() -> None:
  f = flags.FLAGS
  try:
    total = convert(
      f.input_glob,
      f.output_dir,
      fields=f.fields,
      validation_fraction=f.validation_fraction,
      force_split=f.force_split,
      max_doc_bytes=f.max_doc_bytes,
      num_workers=f.num_workers,
      document_bytes=f.text_document_bytes,
    )
  except (json_source.NoFilesError, NothingConvertedError) as e:
    raise errors.ConfigError(str(e)) from None
  print(json.dumps(total, sort_keys=True))


if __name__ == "__main__":
  flags.DEFINE_string(
    "input_glob",
    None,
    "JSON-lines (.jsonl/.gz/.zst) or plain-text (.txt/.md/.rst, "
    "also .gz/.zst) files, local or gs://.",
    required=True,
  )
  flags.DEFINE_string("output_dir", None, "e.g. $REDLLM_DATA_DIR/redpajama_v1/arxiv", required=True)
  flags.DEFINE_list(
    "fields", ["text"], "String fields to keep: text (RedPajama, Paloma) or inputs,targets (FLAN)."
  )
  flags.DEFINE_float(
    "validation_fraction", 0.001, "Content-hashed fraction held out as `validation`."
  )
  flags.DEFINE_string(
    "force_split", None, "Put every record in this split (e.g. validation for Paloma val/)."
  )
  flags.DEFINE_integer(
    "max_doc_bytes", json_source.DEFAULT_MAX_DOC_BYTES, "Skip (and count) longer lines."
  )
  flags.DEFINE_integer("num_workers", os.cpu_count() or 1, "Parallel input files.")
  flags.DEFINE_integer(
    "text_document_bytes",
    text_source.DEFAULT_DOCUMENT_BYTES,
    "Plain text: longer files are cut at blank lines into documents of about this size.",
  )
  gin_utils.run_flags(main)
