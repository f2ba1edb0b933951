"""Only commands define command-line flags: importing every library module of the
package (each one without a `__main__` block) defines no absl flag of ours."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]

_CHECK = """
import importlib, sys
from absl import flags
for name in sys.argv[1:]:
  importlib.import_module(name)
ours = sorted(f"{n} (from {flags.FLAGS.find_module_defining_flag(n)})" for n in flags.FLAGS
              if (flags.FLAGS.find_module_defining_flag(n) or "").startswith("redllm_jax"))
print("\\n".join(ours))
"""


def _library_modules() -> list[str]:
  names = []
  for path in sorted((ROOT / "redllm_jax").rglob("*.py")):
    if 'if __name__ == "__main__":' in path.read_text():
      continue  # a command: its flags are its own
    parts = path.relative_to(ROOT).with_suffix("").parts
    names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
  return names


def test_importing_library_modules_defines_no_flags_of_ours():
  modules = _library_modules()
  assert "redllm_jax.trainer" in modules and "redllm_jax.gin_utils" in modules
  run = subprocess.run(
    [sys.executable, "-c", _CHECK, *modules], cwd=ROOT, capture_output=True, text=True, timeout=600
  )
  assert run.returncode == 0, run.stderr[-3000:]
  assert run.stdout.strip() == "", run.stdout
