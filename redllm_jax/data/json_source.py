"""Robust reading of JSON-lines shards (.jsonl, .jsonl.gz, .jsonl.zst; local or gs://).

Bad records are skipped and counted, never fatal: one broken line must not
lose the rest of a multi-GB shard. A file that cannot be read to its end
(corrupt or truncated compression, binary content) raises `BadFileError`, so the
caller can skip that file, name it, and never mistake it for a complete one.
"""

import collections
import contextlib
import gzip
import hashlib
import json
import zlib
from typing import IO, Callable, Iterable, Iterator, Sequence

import tensorflow as tf
import zstandard

# 16 MiB: far above RedPajama's typical documents, small enough that one
# runaway record cannot blow up tokenization memory.
DEFAULT_MAX_DOC_BYTES = 16 * 1024 * 1024

SKIP_REASONS = ("bad_json", "bad_utf8", "missing_field", "empty", "too_large")


# Reading in chunks of this size bounds memory for files with few newlines.
_CHUNK_BYTES = 1 << 20


class NoFilesError(FileNotFoundError):
  pass


class BadFileError(Exception):
  """A file that stops before its end: the message says why and after how many records."""


def list_files(pattern: str) -> list[str]:
  """Sorted matches of a glob (local or gs://); one-line error when none match."""
  files = sorted(tf.io.gfile.glob(pattern))
  if not files:
    raise NoFilesError(f"No files match {pattern}")
  return files


def _chunks(raw: IO[bytes]) -> Iterator[bytes]:
  while chunk := raw.read(_CHUNK_BYTES):
    yield chunk


def _zstd_chunks(raw: IO[bytes]) -> Iterator[bytes]:
  """Decompressed chunks of every frame; a frame cut short is an error.

  zstandard's stream reader returns a clean end of file for a truncated frame, so
  frames are decoded one by one and each must reach its end.
  """
  decoder, pending = None, False
  for chunk in _chunks(raw):
    while chunk:
      decoder = decoder or zstandard.ZstdDecompressor().decompressobj()
      yield decoder.decompress(chunk)
      pending = not decoder.eof
      chunk = decoder.unused_data if decoder.eof else b""
      decoder = None if decoder.eof else decoder
  if pending:
    raise BadFileError("truncated zstd frame")


def _gzip_chunks(raw: IO[bytes]) -> Iterator[bytes]:
  with gzip.GzipFile(fileobj=raw) as f:
    yield from _chunks(f)


def _decompressed(path: str, raw: IO[bytes]) -> Iterator[bytes]:
  if path.endswith(".gz"):
    return _gzip_chunks(raw)
  if path.endswith(".zst"):
    return _zstd_chunks(raw)
  return _chunks(raw)


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
  """Lines of a byte stream; a NUL byte (never in JSON or text) means a binary file."""
  rest = b""
  for chunk in chunks:
    if b"\0" in chunk:
      raise BadFileError("binary content (NUL bytes)")
    *lines, rest = (rest + chunk).split(b"\n")
    yield from lines
  if rest:
    yield rest


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
  """Yields {field: str} per valid line; counts `ok` and each skip reason.

  Raises BadFileError when the file cannot be read to its end; the records
  yielded before that are real, but the file is incomplete.
  """

  def records(lines: Iterator[bytes]) -> Iterator[dict[str, str]]:
    for line in lines:
      if not line.strip():
        continue  # blank separator lines are not records
      record, reason = _parse_line(line, fields, max_doc_bytes)
      counts[reason or "ok"] += 1
      if record is not None:
        yield record

  return read_file(path, counts, records)


def read_file(
  path: str,
  counts: collections.Counter,
  records: Callable[[Iterator[bytes]], Iterator[dict[str, str]]],
) -> Iterator[dict[str, str]]:
  """`records(lines)` over a (decompressed) file's lines, with every read failure
  raised as one BadFileError naming the path and the records counted before it."""
  with _read_errors(path, lambda: f" after {_records(counts)} records"):
    with tf.io.gfile.GFile(path, "rb") as raw:
      yield from records(_lines(_decompressed(path, raw)))


def check_file(path: str) -> tuple[str, int]:
  """Reads a file to its end, decompressed: (SHA-256 of its bytes, its size), or
  BadFileError naming it, before a builder keeps any of its records."""
  with _read_errors(path, lambda: ""):
    with tf.io.gfile.GFile(path, "rb") as f:
      raw = _Hashing(f)
      for _ in _lines(_decompressed(path, raw)):
        pass
      while raw.read(_CHUNK_BYTES):  # bytes past a compressed stream's end count too
        pass
  return raw.digest.hexdigest(), raw.size


class _Hashing:
  """A binary file read through, hashed and counted on the way."""

  def __init__(self, f: IO[bytes]):
    self._f, self.digest, self.size = f, hashlib.sha256(), 0

  def read(self, n: int = -1) -> bytes:
    data = self._f.read(n)
    self.digest.update(data)
    self.size += len(data)
    return data


@contextlib.contextmanager
def _read_errors(path: str, progress: Callable[[], str]) -> Iterator[None]:
  """Every read failure as one BadFileError naming the path (and `progress()`)."""
  try:
    yield
  except BadFileError as e:
    raise BadFileError(f"{path}: {e}{progress()}") from None
  except (OSError, EOFError, zlib.error, zstandard.ZstdError, tf.errors.OpError) as e:
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise BadFileError(f"{path}: {reason}{progress()}") from None


def _records(counts: collections.Counter) -> int:
  return sum(counts[reason] for reason in ("ok", *SKIP_REASONS))
