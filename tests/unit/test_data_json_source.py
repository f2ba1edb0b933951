"""Bad input is skipped and counted; missing data fails with one line naming the path."""

import collections
import gzip
import json
import logging
import os

import gin
import pytest
import seqio
import tensorflow as tf
import zstandard

import redllm_jax_tasks

from redllm_jax.data import json_source
from redllm_jax.data import prepare
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


def _texts(pattern: str) -> list[str]:
  desc = {"text": tf.io.FixedLenFeature([], tf.string)}
  ds = tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern)))
  return [tf.io.parse_single_example(r, desc)["text"].numpy().decode() for r in ds]


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


def test_convert_keeps_all_valid_records_logs_counts_and_resumes(
  raw_dir: str, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
  out = str(tmp_path / "out")
  # The absl logger's own level (set by any earlier absl.logging.set_verbosity)
  # would otherwise filter INFO before the root-level capture sees it.
  with caplog.at_level(logging.INFO, logger="absl"):
    total = prepare.convert(os.path.join(raw_dir, "*"), out, validation_fraction=0.3)
  assert total["ok"] == 60 and total["too_large"] == 3 and total["bad_json"] == 3
  assert "skipped" in caplog.text and "'too_large': 3" in caplog.text
  train, val = _texts(f"{out}/train/*.tfrecord"), _texts(f"{out}/validation/*.tfrecord")
  assert sorted(train + val) == sorted(GOOD * 3)
  assert set(train).isdisjoint(val)  # a document's split depends only on its content
  assert 0 < len(val) < len(train)
  stamp = {p: os.path.getmtime(p) for p in tf.io.gfile.glob(f"{out}/*/*.tfrecord")}
  assert prepare.convert(os.path.join(raw_dir, "*"), out, validation_fraction=0.3) == total
  assert stamp == {p: os.path.getmtime(p) for p in tf.io.gfile.glob(f"{out}/*/*.tfrecord")}


def test_no_matching_files_is_one_line_naming_path(tmp_path) -> None:
  pattern = str(tmp_path / "nothing" / "*.jsonl")
  with pytest.raises(FileNotFoundError, match=r"^No files match .*nothing/\*\.jsonl$"):
    prepare.convert(pattern, str(tmp_path / "out"))


def test_zero_valid_examples_is_one_line_naming_path(tmp_path) -> None:
  (tmp_path / "bad.jsonl").write_bytes(b"not json\n" + json.dumps({"x": 1}).encode() + b"\n")
  with pytest.raises(
    prepare.NothingConvertedError, match=r"^Zero valid examples in .*bad\.jsonl \(skipped: "
  ):
    prepare.convert(str(tmp_path / "bad.jsonl"), str(tmp_path / "out"))


def test_source_errors_name_the_path_at_read_time_only(tmp_path) -> None:
  missing = sources.TFRecordTextSource(lambda: str(tmp_path / "absent"), ["text"])  # no error yet
  with pytest.raises(FileNotFoundError, match=r"^No files match .*absent/train/\*\.tfrecord$"):
    missing.get_dataset("train")
  (tmp_path / "empty" / "train").mkdir(parents=True)
  (tmp_path / "empty" / "train" / "x.tfrecord").write_bytes(b"")
  empty = sources.TFRecordTextSource(lambda: str(tmp_path / "empty"), ["text"])
  with pytest.raises(ValueError, match=r"^Zero valid examples in .*empty/train/\*\.tfrecord$"):
    empty.get_dataset("train")


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
  with pytest.raises(FileNotFoundError, match=r"redpajama_v1/arxiv/train/\*\.tfrecord$"):
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


def test_convert_skips_bad_files_converts_the_rest_and_retries_them(tmp_path, caplog) -> None:
  raw = tmp_path / "raw"
  raw.mkdir()
  _damaged_files(raw)
  (raw / "good.jsonl").write_bytes(_many_records(50))
  out = str(tmp_path / "out")
  with caplog.at_level(logging.WARNING, logger="absl"):
    total = prepare.convert(str(raw / "*"), out, validation_fraction=0.0)
  assert total["ok"] == 50 and total["bad_files"] == 4
  for name in ("truncated.jsonl.zst", "corrupt.jsonl.zst", "truncated.jsonl.gz", "binary.jsonl"):
    assert f"Skipped bad file {raw / name}:" in caplog.text
  assert len(_texts(f"{out}/train/*.tfrecord")) == 50  # nothing of the bad files is kept
  assert not tf.io.gfile.glob(f"{out}/*/*.tmp")
  assert len(tf.io.gfile.glob(f"{out}/{prepare.STATS_DIR}/*.json")) == 1  # only good is done
  # Repaired, a bad file converts on the next run; the good one is not redone.
  (raw / "truncated.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(_many_records(7)))
  total = prepare.convert(str(raw / "*"), out, validation_fraction=0.0)
  assert total["ok"] == 57 and total["bad_files"] == 3
