"""Plain-text inputs (.txt, .md, .rst; also .gz or .zst), and `read_records`, the one
reader of raw inputs, which picks JSON lines or plain text by the file's name.

How plain text becomes documents: a file of at most `document_bytes` (64 KiB by
default) is one document, so a package README, a doc page or a short story stays
whole. A longer file (a book, a manual) is cut at blank lines into consecutive
documents, each ending at the first paragraph break after `document_bytes`, so
that its parts can land in both the train and the validation split and none is
huge. Blank lines at a document's start or end are dropped; everything else,
newlines and indentation included, is kept byte for byte. Bad input is skipped
and counted as for JSON lines: a document that is not UTF-8 (`bad_utf8`), a file
with no text (`empty`), a paragraph longer than `max_doc_bytes` (`too_large`).
"""

import collections
import os
from typing import Iterator, Sequence

from redllm_jax.data import json_source

TEXT_SUFFIXES = (".txt", ".md", ".rst")
DEFAULT_DOCUMENT_BYTES = 64 * 1024


def is_plain_text(path: str) -> bool:
  """Plain text by name (e.g. README.md, book.txt.gz); every other file is JSON lines."""
  name = os.path.basename(path).lower()
  for compression in (".gz", ".zst"):
    name = name.removesuffix(compression)
  return name.endswith(TEXT_SUFFIXES)


def text_documents(
  lines: Iterator[bytes],
  counts: collections.Counter,
  max_doc_bytes: int = json_source.DEFAULT_MAX_DOC_BYTES,
  document_bytes: int = DEFAULT_DOCUMENT_BYTES,
) -> Iterator[dict[str, str]]:
  """{"text": document} per document of a file's lines (see the module docstring)."""
  doc: list[bytes] = []
  size, skipping, produced = 0, False, 0
  for line in lines:
    blank = not line.strip()
    if skipping:  # The rest of a paragraph too large to keep.
      skipping = not blank
      continue
    if blank and (not doc or size >= document_bytes):
      produced += yield from _emit(doc, counts)
      doc, size = [], 0
      continue
    if size + len(line) > max_doc_bytes:  # Keep the text before it; drop the paragraph's rest.
      produced += yield from _emit(doc, counts)
      counts["too_large"] += 1
      doc, size, skipping = [], 0, True
      continue
    doc.append(line)
    size += len(line) + 1
  produced += yield from _emit(doc, counts)
  if not produced and not sum(counts[r] for r in json_source.SKIP_REASONS):
    counts["empty"] += 1


def _emit(doc: list[bytes], counts: collections.Counter) -> Iterator[dict[str, str]]:
  """Yields the document (trailing blank lines dropped); returns how many it yielded."""
  while doc and not doc[-1].strip():
    doc.pop()
  if not doc:
    return 0
  try:
    text = b"\n".join(doc).decode("utf-8")
  except UnicodeDecodeError:
    counts["bad_utf8"] += 1
    return 0
  counts["ok"] += 1
  yield {"text": text}
  return 1


def read_records(
  path: str,
  fields: Sequence[str],
  counts: collections.Counter,
  max_doc_bytes: int = json_source.DEFAULT_MAX_DOC_BYTES,
  document_bytes: int = DEFAULT_DOCUMENT_BYTES,
) -> Iterator[dict[str, str]]:
  """Records of one raw input: JSON lines, or plain-text documents under `text`.

  Raises json_source.BadFileError for a file that cannot be read to its end, and
  for plain text asked for fields other than `text` (it has no others).
  """
  if not is_plain_text(path):
    return json_source.read_json_lines(path, fields, counts, max_doc_bytes)
  if tuple(fields) != ("text",):
    raise json_source.BadFileError(
      f"{path}: plain text has only a text field, not {','.join(fields)}"
    )
  return json_source.read_file(
    path, counts, lambda lines: text_documents(lines, counts, max_doc_bytes, document_bytes)
  )
