"""Robust reading of JSON-lines shards (.jsonl, .jsonl.gz, .jsonl.zst; local or gs://).

Bad records are skipped and counted, never fatal: one broken line must not
lose the rest of a multi-GB shard.
"""
import collections
import gzip
import io
import json
from typing import IO, Iterator, Sequence

import tensorflow as tf
import zstandard

# 16 MiB: far above RedPajama's typical documents, small enough that one
# runaway record cannot blow up tokenization memory.
DEFAULT_MAX_DOC_BYTES = 16 * 1024 * 1024

SKIP_REASONS = ("bad_json", "bad_utf8", "missing_field", "empty", "too_large")


class NoFilesError(FileNotFoundError):
  pass


def list_files(pattern: str) -> list[str]:
  """Sorted matches of a glob (local or gs://); one-line error when none match."""
  files = sorted(tf.io.gfile.glob(pattern))
  if not files:
    raise NoFilesError(f"No files match {pattern}")
  return files


def _open(path: str) -> IO[bytes]:
  raw = tf.io.gfile.GFile(path, "rb")
  if path.endswith(".gz"):
    return gzip.GzipFile(fileobj=raw)
  if path.endswith(".zst"):
    return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw))
  return raw


def _parse_line(
    line: bytes, fields: Sequence[str], max_doc_bytes: int
) -> tuple[dict[str, str] | None, str | None]:
  """Returns (record, None) or (None, skip reason)."""
  if len(line) > max_doc_bytes:
    return None, "too_large"
  try:
    text = line.decode("utf-8")
  except UnicodeDecodeError:
    return None, "bad_utf8"
  try:
    obj = json.loads(text)
  except ValueError:
    return None, "bad_json"
  if not isinstance(obj, dict) or not all(isinstance(obj.get(f), str) for f in fields):
    return None, "missing_field"
  record = {f: obj[f] for f in fields}
  if not all(v.strip() for v in record.values()):
    return None, "empty"
  try:  # JSON escapes can smuggle in lone surrogates, which are not UTF-8.
    for v in record.values():
      v.encode("utf-8")
  except UnicodeEncodeError:
    return None, "bad_utf8"
  return record, None


def read_json_lines(
    path: str,
    fields: Sequence[str],
    counts: collections.Counter,
    max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES,
) -> Iterator[dict[str, str]]:
  """Yields {field: str} per valid line; counts `ok` and each skip reason."""
  with _open(path) as f:
    for line in f:
      if not line.strip():
        continue  # blank separator lines are not records
      record, reason = _parse_line(line, fields, max_doc_bytes)
      counts[reason or "ok"] += 1
      if record is not None:
        yield record
