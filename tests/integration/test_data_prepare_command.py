"""`python -m redllm_jax.data.prepare` as a user runs it: bad files never stop the glob."""
import gzip
import json
import subprocess
import sys

import zstandard


def _prepare(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "redllm_jax.data.prepare", *args],
                        capture_output=True, text=True, timeout=300)


def _records(n: int) -> bytes:
  return b"".join(json.dumps({"text": f"line {i} of a document"}).encode() + b"\n" for i in range(n))


def test_bad_files_are_named_and_skipped_and_the_rest_converts(tmp_path) -> None:
  (tmp_path / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(_records(30)))
  (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(_records(3000))[:500])
  (tmp_path / "c.jsonl").write_bytes(b"\x00\x01binary" * 100)
  run = _prepare(f"--input_glob={tmp_path}/*.jsonl*", f"--output_dir={tmp_path}/out",
                 "--num_workers=2")
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
