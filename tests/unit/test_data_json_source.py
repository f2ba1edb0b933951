"""Bad input is skipped and counted; missing data fails with one line naming the path."""

import collections
import gzip
import json
import os

import gin
import pytest
import seqio
import zstandard

import redllm_jax_tasks

from redllm_jax.data import json_source
from redllm_jax.data import sources

GOOD = [f"document number {i} " * 5 for i in range(20)]


def _bad_file_bytes() -> bytes:
  lines = [json.dumps({"text": t, "meta": {}}).encode() for t in GOOD[:10]]
  lines += [
    b'{"text": "unterminated',  # malformed JSON
    json.dumps({"meta": "no text field"}).encode(),  # missing field
    json.dumps({"text": 7}).encode(),  # wrong type counts as missing
    json.dumps({"text": "   "}).encode(),  # empty text
    b'{"text": "bad \xff\xfe bytes"}',  # invalid UTF-8
    b'{"text": "lone \\ud800 surrogate"}',  # valid JSON, not encodable as UTF-8
    json.dumps({"text": "x" * (50 * 1024 * 1024)}).encode(),  # one 50 MB document
    b"",  # blank line: not a record
  ]
  lines += [json.dumps({"text": t}).encode() for t in GOOD[10:]]  # the rest survives
  return b"\n".join(lines) + b"\n"


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
  raw = tmp_path_factory.mktemp("raw")
  data = _bad_file_bytes()
  (raw / "a.jsonl").write_bytes(data)
  (raw / "b.jsonl.gz").write_bytes(gzip.compress(data))
  (raw / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
  return str(raw)


@pytest.mark.parametrize("name", ["a.jsonl", "b.jsonl.gz", "c.jsonl.zst"])
def test_bad_lines_are_skipped_and_counted(raw_dir: str, name: str) -> None:
  counts: collections.Counter = collections.Counter()
  texts = [
    r["text"] for r in json_source.read_json_lines(os.path.join(raw_dir, name), ["text"], counts)
  ]
  assert texts == GOOD
  assert dict(counts) == {
    "ok": 20,
    "bad_json": 1,
    "missing_field": 2,
    "empty": 1,
    "bad_utf8": 2,
    "too_large": 1,
  }


def test_max_doc_size_is_configurable(raw_dir: str) -> None:
  counts: collections.Counter = collections.Counter()
  list(
    json_source.read_json_lines(
      os.path.join(raw_dir, "a.jsonl"), ["text"], counts, max_doc_bytes=100
    )
  )
  assert counts["too_large"] == 21  # every GOOD line is ~120 bytes of JSON


def test_no_matching_files_is_one_line_naming_path(tmp_path) -> None:
  pattern = str(tmp_path / "nothing" / "*.jsonl")
  with pytest.raises(FileNotFoundError, match=r"^No files match .*nothing/\*\.jsonl$"):
    json_source.list_files(pattern)


def test_source_errors_name_the_path_at_read_time_only(tmp_path) -> None:
  missing = sources.TfdsTextSource(lambda: str(tmp_path / "absent"))  # no error yet
  with pytest.raises(sources.MissingDatasetError, match=r"^No TFDS dataset at .*absent: build"):
    missing.get_dataset("train")


def test_real_tasks_register_without_data_and_fail_clearly_when_read(tmp_path, monkeypatch) -> None:
  import redllm_jax_tasks  # noqa: F401  # registering must not need the data

  expected = {f"redpajama_v1_{s}" for s in redllm_jax_tasks.redpajama.SUBSETS}
  assert expected | {"flan", "paloma_c4_en", "paloma_dolma_v1_5", "demo_flan"} <= set(
    seqio.TaskRegistry.names()
  )
  task = seqio.get_mixture_or_task("redpajama_v1_arxiv")
  monkeypatch.delenv("REDLLM_DATA_DIR", raising=False)
  with pytest.raises(ValueError, match="REDLLM_DATA_DIR"):
    task.get_dataset({"targets": 8}, split="train")
  monkeypatch.setenv("REDLLM_DATA_DIR", str(tmp_path))
  with pytest.raises(FileNotFoundError, match=r"redllm_redpajama_v1/arxiv/1\.0\.0: build"):
    task.get_dataset({"targets": 8}, split="train")


def test_mixture_rates_default_to_llama_and_follow_gin() -> None:
  mixture = seqio.get_mixture_or_task("redpajama_v1")
  rates = {t.name: mixture.get_rate(t) for t in mixture.tasks}
  assert rates["redpajama_v1_common_crawl"] == 67.0 and rates["redpajama_v1_stackexchange"] == 2.0
  assert sum(rates.values()) == pytest.approx(100.0)
  with gin.unlock_config():
    gin.parse_config("redllm_jax_tasks.redpajama.redpajama_rates.rates = {'c4': 30.0}")
  assert mixture.get_rate(seqio.get_mixture_or_task("redpajama_v1_c4")) == 30.0
  assert redllm_jax_tasks.redpajama.redpajama_rates()["github"] == 4.5


def _many_records(n: int) -> bytes:
  return b"".join(json.dumps({"text": f"record {i} {'x' * 40}"}).encode() + b"\n" for i in range(n))


def _damaged_files(folder) -> dict[str, bytes]:
  """Files that stop before their end, as seen in real downloads, by name."""
  data = _many_records(20000)
  zst = zstandard.ZstdCompressor(write_checksum=True).compress(data)  # as the zstd CLI writes
  flipped = bytearray(zst)
  flipped[len(zst) // 2] ^= 0xFF
  files = {
    "truncated.jsonl.zst": zst[: len(zst) // 2],
    "corrupt.jsonl.zst": bytes(flipped),
    "truncated.jsonl.gz": gzip.compress(data)[:5000],
    "binary.jsonl": bytes(range(256)) * 20,
  }
  for name, content in files.items():
    (folder / name).write_bytes(content)
  return files


def test_files_that_stop_early_raise_naming_path_and_progress(tmp_path) -> None:
  files = _damaged_files(tmp_path)
  reasons = {
    "truncated.jsonl.zst": "truncated zstd frame",
    "corrupt.jsonl.zst": "checksum",
    "truncated.jsonl.gz": "end-of-stream",
    "binary.jsonl": "binary content",
  }
  for name in files:
    counts: collections.Counter = collections.Counter()
    with pytest.raises(
      json_source.BadFileError, match=f"{name}: .*{reasons[name]}.* after \\d+ records"
    ):
      list(json_source.read_json_lines(str(tmp_path / name), ["text"], counts))
  counts = collections.Counter()
  with pytest.raises(json_source.BadFileError):
    for _ in json_source.read_json_lines(str(tmp_path / "truncated.jsonl.zst"), ["text"], counts):
      pass
  assert 0 < counts["ok"] < 20000  # the records before the damage were read, and counted


def test_multi_frame_zstd_reads_every_frame(tmp_path) -> None:
  data = _many_records(100)
  zst = zstandard.ZstdCompressor().compress(data)
  (tmp_path / "two.jsonl.zst").write_bytes(zst + zst)
  counts: collections.Counter = collections.Counter()
  assert (
    len(list(json_source.read_json_lines(str(tmp_path / "two.jsonl.zst"), ["text"], counts))) == 200
  )
