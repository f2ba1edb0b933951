"""Plain text becomes documents: whole small files, long files cut at blank lines, bad
input skipped and counted, every compression read alike."""

import collections
import gzip

import pytest
import zstandard

from redllm_jax.data import json_source
from redllm_jax.data import text_source

README = "# Title\n\n  indented code\n\nA paragraph\nover two lines.\n"


def _docs(data: bytes, **kwargs) -> tuple[list[str], dict[str, int]]:
  counts: collections.Counter = collections.Counter()
  docs = [r["text"] for r in text_source.text_documents(iter(data.split(b"\n")), counts, **kwargs)]
  return docs, dict(counts)


def test_a_small_file_is_one_document_kept_byte_for_byte() -> None:
  assert _docs(b"\n\n" + README.encode() + b"\n\n") == ([README.rstrip("\n")], {"ok": 1})


def test_a_long_file_is_cut_at_blank_lines_into_documents_of_about_the_size() -> None:
  paragraphs = [f"Paragraph {i}. " + "word " * (i % 7 + 3) for i in range(200)]
  docs, counts = _docs("\n\n".join(paragraphs).encode(), document_bytes=300)
  assert counts == {"ok": len(docs)} and len(docs) > 10
  assert "\n\n".join(docs) == "\n\n".join(paragraphs)  # nothing lost, nothing reordered
  assert all(len(d.encode()) >= 300 for d in docs[:-1])
  assert all(len(d.encode()) < 300 + 60 for d in docs)  # each ends at the first break after 300
  assert all(d.split("\n\n")[0] in paragraphs for d in docs)  # cuts fall between paragraphs


def test_bad_input_is_skipped_and_counted() -> None:
  assert _docs(b"  \n\n\t\n") == ([], {"empty": 1})
  assert _docs(b"caf\xe9 in latin-1\n") == ([], {"bad_utf8": 1})
  huge = b"keep me\n\n" + b"x" * 500 + b"\nrest of the huge paragraph\n\nand keep this"
  assert _docs(huge, max_doc_bytes=200, document_bytes=5) == (
    ["keep me", "and keep this"],
    {"ok": 2, "too_large": 1},
  )


@pytest.mark.parametrize(
  "name, compress",
  [
    ("README.md", lambda b: b),
    ("book.txt.gz", gzip.compress),
    ("guide.rst.zst", zstandard.ZstdCompressor().compress),
  ],
)
def test_plain_text_files_read_alike_in_every_compression(tmp_path, name, compress) -> None:
  (tmp_path / name).write_bytes(compress(README.encode()))
  counts: collections.Counter = collections.Counter()
  assert text_source.is_plain_text(name)
  records = list(text_source.read_records(str(tmp_path / name), ["text"], counts))
  assert records == [{"text": README.rstrip("\n")}] and counts == {"ok": 1}


def test_json_lines_and_other_names_stay_json_lines(tmp_path) -> None:
  assert not any(map(text_source.is_plain_text, ["a.jsonl", "a.jsonl.gz", "a.json", "METADATA"]))
  (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(b'{"text": "one"}\n{"text": "two"}\n'))
  counts: collections.Counter = collections.Counter()
  assert [
    r["text"] for r in text_source.read_records(str(tmp_path / "a.jsonl.gz"), ["text"], counts)
  ] == ["one", "two"]


def test_plain_text_has_no_fields_but_text_and_binary_is_a_bad_file(tmp_path) -> None:
  (tmp_path / "q.txt").write_text("question?\n")
  with pytest.raises(json_source.BadFileError, match=r"q\.txt: plain text has only a text field"):
    list(
      text_source.read_records(
        str(tmp_path / "q.txt"), ["inputs", "targets"], collections.Counter()
      )
    )
  (tmp_path / "image.md").write_bytes(b"\x89PNG\x00\x00" * 50)
  with pytest.raises(json_source.BadFileError, match=r"image\.md: binary content"):
    list(text_source.read_records(str(tmp_path / "image.md"), ["text"], collections.Counter()))
