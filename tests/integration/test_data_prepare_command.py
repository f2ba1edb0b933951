"""`python -m redllm_jax.data.prepare` as a user runs it: bad files never stop the glob."""

import gzip
import json
import subprocess
import sys

import zstandard


def _prepare(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-m", "redllm_jax.data.prepare", *args],
    capture_output=True,
    text=True,
    timeout=300,
  )


def _records(n: int) -> bytes:
  return b"".join(
    json.dumps({"text": f"line {i} of a document"}).encode() + b"\n" for i in range(n)
  )


def test_bad_files_are_named_and_skipped_and_the_rest_converts(tmp_path) -> None:
  (tmp_path / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(_records(30)))
  (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(_records(3000))[:500])
  (tmp_path / "c.jsonl").write_bytes(b"\x00\x01binary" * 100)
  run = _prepare(
    f"--input_glob={tmp_path}/*.jsonl*", f"--output_dir={tmp_path}/out", "--num_workers=2"
  )
  assert run.returncode == 0, run.stderr
  counts = json.loads(run.stdout.strip().splitlines()[-1])
  assert counts["ok"] == 30 and counts["bad_files"] == 2
  assert "Traceback" not in run.stderr
  assert "b.jsonl.gz: Compressed file ended" in run.stderr and "c.jsonl: binary" in run.stderr


def test_nothing_converted_is_one_line_and_exit_2(tmp_path) -> None:
  (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(_records(3000))[:500])
  for pattern in (f"{tmp_path}/*.jsonl.gz", f"{tmp_path}/missing/*.jsonl"):
    run = _prepare(f"--input_glob={pattern}", f"--output_dir={tmp_path}/out")
    assert run.returncode == 2
    errors = [l for l in run.stderr.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in run.stderr, run.stderr


def _texts(pattern: str) -> list[str]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  # only this test reads TFRecords

  desc = {"text": tf.io.FixedLenFeature([], tf.string)}
  return [
    tf.io.parse_single_example(r, desc)["text"].numpy().decode()
    for r in tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern)))
  ]


def test_plain_text_files_convert_as_documents(tmp_path) -> None:
  raw = tmp_path / "raw"
  raw.mkdir()
  (raw / "notes.txt.gz").write_bytes(gzip.compress(b"First note.\n\nIts second paragraph.\n"))
  (raw / "README.md").write_text("# A package\n\nWhat it does.\n")
  (raw / "cut.txt.gz").write_bytes(gzip.compress(_records(3000))[:500])
  run = _prepare(f"--input_glob={raw}/*", f"--output_dir={tmp_path}/out", "--validation_fraction=0")
  assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
  counts = json.loads(run.stdout.strip().splitlines()[-1])
  assert counts["ok"] == 2 and counts["bad_files"] == 1 and "bad_json" not in counts
  assert "cut.txt.gz: Compressed file ended" in run.stderr
  assert sorted(_texts(f"{tmp_path}/out/train/*.tfrecord")) == [
    "# A package\n\nWhat it does.",
    "First note.\n\nIts second paragraph.",
  ]


def test_two_runs_converting_one_folder_at_once_both_succeed(tmp_path) -> None:
  """As a DecLLM and a RedLLM run of one files_task do on their first start."""
  raw = tmp_path / "raw"
  raw.mkdir()
  docs = [f"Document {i}. " + "text " * (i + 1) for i in range(40)]
  for i, doc in enumerate(docs):
    (raw / f"{i}.txt").write_text(doc)
  args = [
    sys.executable,
    "-m",
    "redllm_jax.data.prepare",
    f"--input_glob={raw}/*.txt",
    f"--output_dir={tmp_path}/out",
    "--validation_fraction=0",
    "--num_workers=1",
  ]
  runs = [
    subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(2)
  ]
  for run in runs:
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 0 and "Traceback" not in stderr, stderr
  assert sorted(_texts(f"{tmp_path}/out/train/*.tfrecord")) == sorted(docs)
  assert not list((tmp_path / "out").rglob("*.tmp"))
