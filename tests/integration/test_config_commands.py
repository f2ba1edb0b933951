"""Commands run as a user runs them, with good and bad configurations: a bad one is
one line on stderr and exit code 2, never a traceback."""
import subprocess
import sys

import pytest


def run_module(module: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                        timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
  assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
  lines = [l for l in result.stderr.strip().splitlines() if l.startswith("error")]
  assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr[-2000:]
  for word in words:
    assert word in lines[0], (word, lines[0])


def test_model_info_command_and_its_one_line_errors():
  ok = run_module("redllm_jax.tools.model_info", "--gin_file=models/decllm.gin",
                  "--gin_file=models/sizes/8b.gin")
  assert ok.returncode == 0, ok.stderr
  assert "total_params: 8,724,430,848" in ok.stdout
  biattn = run_module("redllm_jax.tools.model_info", "--gin_file=models/decllm.gin",
                      "--gin_file=models/sizes/8b.gin", "--gin.BIDIRECTIONAL_INPUTS=True")
  assert biattn.returncode == 0 and "decllm_biattn" in biattn.stdout, biattn.stderr
  assert_one_line_error(run_module("redllm_jax.tools.model_info", "--gin_file=models/decllm.gin",
                                   "--gin_file=models/sizes/8b.gin",
                                   "--gin.config.TransformerConfig.d_modle=3"), "d_modle")
  assert_one_line_error(run_module("redllm_jax.tools.model_info", "--gin_file=models/nope.gin"),
                        "nope.gin")
  assert_one_line_error(run_module("redllm_jax.tools.model_info", "--gin_file=models/redllm.gin"),
                        "d_model", "models/sizes")


def test_importing_the_model_does_not_import_tpu_kernels():
  code = ("import sys, redllm_jax.network, redllm_jax.models; "
          "print(any('pallas.ops.tpu' in m for m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "False"
