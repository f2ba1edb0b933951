"""The TFDS builders (`redllm_jax/data/datasets`): the plain and Beam paths give the same
examples and counts, bad input is named and counted in the metadata, `tfds build` works."""

import gzip
import json
import os
import subprocess
import sys

import pytest
import tensorflow_datasets as tfds
import zstandard

from redllm_jax.data.datasets import builders
from redllm_jax.data.datasets import text_builder


def _jsonl(texts: list[str]) -> bytes:
  return b"".join(json.dumps({"text": t}).encode() + b"\n" for t in texts)


def _write_arxiv(raw) -> None:
  """Three good inputs (one zstd, one gzip), bad lines in them, truncated gzip and zstd
  files and a binary one."""
  (raw / "arxiv").mkdir(parents=True)
  docs = [[f"paper {i}.{j}: " + "words " * (j % 7 + 1) for j in range(1500)] for i in range(3)]
  (raw / "arxiv" / "a.jsonl").write_bytes(_jsonl(docs[0]) + b"{not json\n" + b'{"id": 3}\n')
  (raw / "arxiv" / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(_jsonl(docs[1])))
  (raw / "arxiv" / "c.jsonl.gz").write_bytes(gzip.compress(_jsonl(docs[2])))
  (raw / "arxiv" / "d.jsonl.gz").write_bytes(gzip.compress(_jsonl(docs[0]))[:300])
  (raw / "arxiv" / "e.jsonl").write_bytes(b"\x00\x01binary" * 50)
  zst = zstandard.ZstdCompressor().compress(_jsonl(docs[1]))
  (raw / "arxiv" / "f.jsonl.zst").write_bytes(zst[: len(zst) // 2])


def _build(raw, out, beam_options=None) -> tfds.core.DatasetBuilder:
  builder = builders.RedllmRedpajamaV1(config="arxiv", data_dir=str(out))
  config = tfds.download.DownloadConfig(manual_dir=str(raw), beam_options=beam_options)
  builder.download_and_prepare(download_config=config)
  return builder


def _examples(builder, split: str) -> list[bytes]:
  return [x["text"] for x in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False))]


def test_plain_build_counts_and_names_bad_input_in_the_metadata(tmp_path) -> None:
  _write_arxiv(tmp_path / "raw")
  builder = _build(tmp_path / "raw", tmp_path / "out")
  meta = builder.info.metadata
  assert meta["skipped"] == {"bad_json": 1, "missing_field": 1}
  assert meta["bad_files"] == 3
  reasons = " ".join(meta["bad_file_reasons"])
  assert "d.jsonl.gz: Compressed file ended" in reasons and "e.jsonl: binary" in reasons
  assert "f.jsonl.zst: truncated zstd frame" in reasons
  # Nothing of a damaged file is kept, not even the records before its fault.
  assert meta["inputs"]["arxiv/d.jsonl.gz"] == {"sha256": None, "bytes": None, "counts": {}}
  assert meta["ok"] == 4500
  assert (
    builder.info.splits["train"].num_examples + builder.info.splits["validation"].num_examples
    == (meta["ok"])
  )
  assert meta["splits"]["validation"] == builder.info.splits["validation"].num_examples
  assert len(meta["inputs"]["arxiv/a.jsonl"]["sha256"]) == 64
  assert meta["inputs"]["arxiv/b.jsonl.zst"]["bytes"] == os.path.getsize(
    tmp_path / "raw" / "arxiv" / "b.jsonl.zst"
  )
  # Content-hashed splits: the hash decides, and the same text is in one split only.
  for split in ("train", "validation"):
    for text in _examples(builder, split)[:50]:
      assert text_builder.split_of({"text": text.decode()}, ["text"], 0.001) == split
  # Read back from its directory alone, as the seqio tasks do, with the same version.
  again = tfds.builder_from_directory(str(tmp_path / "out" / "redllm_redpajama_v1/arxiv/1.0.0"))
  assert again.info.metadata["ok"] == meta["ok"] and str(again.info.version) == "1.0.0"


def test_beam_direct_runner_builds_the_same_dataset(tmp_path) -> None:
  pytest.importorskip("apache_beam", reason="the Beam path needs the `beam` extra")
  from apache_beam.options import pipeline_options  # pylint: disable=g-import-not-at-top

  _write_arxiv(tmp_path / "raw")
  plain = _build(tmp_path / "raw", tmp_path / "plain")
  options = pipeline_options.PipelineOptions(["--runner=DirectRunner", "--direct_num_workers=2"])
  beam = _build(tmp_path / "raw", tmp_path / "beam", beam_options=options)
  for split in ("train", "validation"):
    assert _examples(beam, split) == _examples(plain, split)
    assert beam.info.splits[split].num_examples == plain.info.splits[split].num_examples
  assert dict(beam.info.metadata) == dict(plain.info.metadata)


def test_paloma_reads_each_split_from_its_own_folder(tmp_path) -> None:
  for folder, n in (("val", 5), ("test", 7)):
    (tmp_path / "raw" / "c4_en" / folder).mkdir(parents=True)
    texts = [f"{folder} document {i}" for i in range(n)]
    (tmp_path / "raw" / "c4_en" / folder / "x.jsonl.gz").write_bytes(gzip.compress(_jsonl(texts)))
  builder = builders.RedllmPaloma(config="c4_en", data_dir=str(tmp_path / "out"))
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "raw"))
  )
  assert {s: i.num_examples for s, i in builder.info.splits.items()} == {
    "validation": 5,
    "test": 7,
  }
  assert all(t.startswith(b"test ") for t in _examples(builder, "test"))


def test_nothing_valid_is_one_line(tmp_path) -> None:
  (tmp_path / "raw" / "arxiv").mkdir(parents=True)
  (tmp_path / "raw" / "arxiv" / "a.jsonl").write_bytes(b"{bad\n" * 3)
  with pytest.raises(text_builder.NothingBuiltError, match="Zero valid examples|got no record"):
    _build(tmp_path / "raw", tmp_path / "out")


def test_tfds_build_command_as_a_user_runs_it(tmp_path) -> None:
  raw = tmp_path / "raw"
  (raw / "c4").mkdir(parents=True)
  (raw / "c4" / "c4-0000.jsonl").write_bytes(_jsonl([f"web page {i}" for i in range(3000)]))
  tfds_cli = os.path.join(os.path.dirname(sys.executable), "tfds")
  args = [tfds_cli, "build", "redllm_redpajama_v1", "--imports=redllm_jax.data.datasets"]
  args += ["--config=c4", f"--manual_dir={raw}", f"--data_dir={tmp_path / 'out'}"]
  run = subprocess.run(args, capture_output=True, text=True, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  info = json.loads((tmp_path / "out/redllm_redpajama_v1/c4/1.0.0/dataset_info.json").read_text())
  counts = {s["name"]: int(s["shardLengths"][0]) for s in info["splits"]}
  assert sum(counts.values()) == 3000 and counts["validation"] > 0
  meta = json.loads((tmp_path / "out/redllm_redpajama_v1/c4/1.0.0/metadata.json").read_text())
  assert meta["ok"] == 3000 and meta["bad_files"] == 0
