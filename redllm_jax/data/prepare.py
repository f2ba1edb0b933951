r"""One-time conversion of JSON-lines shards to TFRecord shards that tasks read.

  python -m redllm_jax.data.prepare --input_glob='/raw/arxiv/*.jsonl.zst' \
      --output_dir=$REDLLM_DATA_DIR/redpajama_v1/arxiv --fields=text

Why convert: tf.data cannot read .zst, cannot skip bad JSON lines, and a
Python generator source cannot be checkpointed mid-stream (resumable input).
Each input file becomes one TFRecord per split (so multi-host sharding is by
file), written atomically, followed by a per-input stats file; a re-run skips
inputs whose stats file exists (resumable). Inputs convert in parallel.
Train/validation assignment hashes the record's content: deterministic,
independent of file order and parallelism, and duplicates never straddle splits.
"""
import collections
import hashlib
import json
import multiprocessing
import os
from typing import Sequence

from absl import logging
import tensorflow as tf

from redllm_jax.data import json_source

STATS_DIR = "_stats"


def split_of(record: dict[str, str], fields: Sequence[str], validation_fraction: float) -> str:
  """'validation' for a deterministic `validation_fraction` of records, else 'train'."""
  digest = hashlib.sha1("\x00".join(record[f] for f in fields).encode("utf-8")).digest()
  return "validation" if int.from_bytes(digest[:8], "big") < validation_fraction * 2**64 else "train"


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
) -> dict[str, int]:
  """Converts one input file; returns its counts (ok, skips, examples per split)."""
  stem = _stem(path)
  stats_path = os.path.join(output_dir, STATS_DIR, stem + ".json")
  if tf.io.gfile.exists(stats_path):
    with tf.io.gfile.GFile(stats_path) as f:
      return json.load(f)
  counts: collections.Counter = collections.Counter()
  writers: dict[str, tf.io.TFRecordWriter] = {}
  for record in json_source.read_json_lines(path, fields, counts, max_doc_bytes):
    split = force_split or split_of(record, fields, validation_fraction)
    if split not in writers:
      tf.io.gfile.makedirs(os.path.join(output_dir, split))
      writers[split] = tf.io.TFRecordWriter(os.path.join(output_dir, split, stem + ".tfrecord.tmp"))
    writers[split].write(_example(record))
    counts[f"split:{split}"] += 1
  for split, writer in writers.items():
    writer.close()
    final = os.path.join(output_dir, split, stem + ".tfrecord")
    tf.io.gfile.rename(final + ".tmp", final, overwrite=True)
  tf.io.gfile.makedirs(os.path.dirname(stats_path))
  with tf.io.gfile.GFile(stats_path, "w") as f:
    json.dump(dict(counts), f)
  return dict(counts)


def _convert_star(args: tuple) -> dict[str, int]:
  return convert_file(*args)


def convert(
    input_glob: str,
    output_dir: str,
    fields: Sequence[str] = ("text",),
    validation_fraction: float = 0.001,
    force_split: str | None = None,
    max_doc_bytes: int = json_source.DEFAULT_MAX_DOC_BYTES,
    num_workers: int = 1,
) -> dict[str, int]:
  """Converts every file matching `input_glob`; returns and logs summed counts.

  Raises one-line errors when nothing matches or nothing valid was found.
  """
  files = json_source.list_files(input_glob)
  jobs = [(p, output_dir, tuple(fields), validation_fraction, force_split, max_doc_bytes) for p in files]
  if num_workers > 1 and len(files) > 1:
    # spawn, not fork: forking a process that already runs TF threads can hang.
    with multiprocessing.get_context("spawn").Pool(min(num_workers, len(files))) as pool:
      per_file = list(pool.imap_unordered(_convert_star, jobs))
  else:
    per_file = [convert_file(*job) for job in jobs]
  total: collections.Counter = collections.Counter()
  for counts in per_file:
    total.update(counts)
  skipped = {r: total[r] for r in json_source.SKIP_REASONS if total[r]}
  logging.info("Converted %s -> %s: %d ok, skipped %s", input_glob, output_dir, total["ok"], skipped)
  if not total["ok"]:
    raise ValueError(f"Zero valid examples in {input_glob} (skipped: {skipped})")
  with tf.io.gfile.GFile(os.path.join(output_dir, "stats.json"), "w") as f:
    json.dump(dict(total), f, indent=1, sort_keys=True)
  return dict(total)


def main(argv: Sequence[str]) -> None:
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top

  f = flags.FLAGS
  convert(
      f.input_glob,
      f.output_dir,
      fields=f.fields,
      validation_fraction=f.validation_fraction,
      force_split=f.force_split,
      max_doc_bytes=f.max_doc_bytes,
      num_workers=f.num_workers,
  )


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=g-import-not-at-top,g-multiple-import

  flags.DEFINE_string("input_glob", None, "JSON-lines files (.jsonl/.gz/.zst), local or gs://.", required=True)
  flags.DEFINE_string("output_dir", None, "e.g. $REDLLM_DATA_DIR/redpajama_v1/arxiv", required=True)
  flags.DEFINE_list("fields", ["text"], "String fields to keep: text (RedPajama, Paloma) or inputs,targets (FLAN).")
  flags.DEFINE_float("validation_fraction", 0.001, "Content-hashed fraction held out as `validation`.")
  flags.DEFINE_string("force_split", None, "Put every record in this split (e.g. validation for Paloma val/).")
  flags.DEFINE_integer("max_doc_bytes", json_source.DEFAULT_MAX_DOC_BYTES, "Skip (and count) longer lines.")
  flags.DEFINE_integer("num_workers", os.cpu_count() or 1, "Parallel input files.")
  app.run(main)
