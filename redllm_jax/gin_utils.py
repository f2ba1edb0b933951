"""Gin and command-line plumbing for the entry points, in T5X's shape.

Gin entry points (train, eval, infer, export, extrapolation, attention, harness)
end with `gin_utils.run(__spec__.name)`: `--gin_file=runs/eval.gin` is looked up in
the repo's `gin/` folder (then `--gin_search_paths`), `--gin.MACRO=value` is
shorthand for `--gin_bindings=MACRO=value`, and the module's `main()` calls its
gin-configurable function, whose arguments the run gins bind. Run gins mark the
values a user must give as `MACRO = %gin.REQUIRED`.

Every configuration mistake is one line on stderr and exit code 2: a missing
required macro, a macro given on the command line that no gin file reads (a
typo), an unknown parameter, a gin syntax error. Flag-based commands (bench,
memory_plan, model_info, reproduce, vocabulary, ...) get the same handling from
`run_flags`.
"""

import contextlib
import difflib
import importlib
import os
import pathlib
import re
import sys
from typing import Callable, Iterator, Sequence

from absl import app, flags, logging
import gin
from gin import config as gin_config

from redllm_jax import multihost
from redllm_jax.errors import ConfigError, first_line

GIN_DIR = pathlib.Path(__file__).resolve().parent.parent / "gin"


_REQUIRED = re.compile(
  r"^(\w+)/macro\.value set to `%gin\.REQUIRED` but not subsequently overridden"
)
_REQUIRED_PARAMETER = re.compile(
  r"^([\w.]+) set to `%gin\.REQUIRED` but not subsequently overridden"
)
# Gin's words for reading a macro that no file or flag sets.
_UNSET_MACRO = re.compile(
  r"macro\(\) missing 1 required positional argument: 'value'.*"
  r"in scope '(\w+)'",
  re.DOTALL,
)
_MACRO_BINDING = re.compile(r"^\s*([A-Z][A-Z0-9_]*)\s*=")


def rewrite_gin_args(argv: Sequence[str]) -> list[str]:
  """Turns `--gin.NAME=value` into `--gin_bindings=NAME=value`."""
  return [
    f"--gin_bindings={arg[len('--gin.') :]}" if arg.startswith("--gin.") else arg for arg in argv
  ]


_referenced_macros: set[str] = set()


@gin_config.register_finalize_hook
def _record_referenced_macros(config: dict) -> None:
  """Remembers which macros some binding reads (finalize hooks see the whole config)."""
  _referenced_macros.clear()
  for reference in gin_config.iterate_references(config):
    scope, selector = reference.config_key
    if selector == "gin.macro":
      _referenced_macros.add(scope)


@contextlib.contextmanager
def _in_gin_dir() -> Iterator[None]:
  """Parses from the repo's gin/ folder, so its relative includes resolve there first.

  Gin tries every path against the working directory before its search paths,
  and its package reader crashes on a folder of the working directory that shares
  a name with ours (the demo's `runs/`, say). Users' own relative files are made
  absolute before the switch, and the working directory is also a search path.
  """
  cwd = os.getcwd()
  os.chdir(GIN_DIR)
  try:
    yield
  finally:
    os.chdir(cwd)


def parse_gin(
  gin_files: Sequence[str],
  bindings: Sequence[str],
  search_paths: Sequence[str] = (),
  finalize: bool = True,
) -> None:
  """Parses gin files and bindings; any gin error becomes a one-line ConfigError.

  With `finalize`, required macros must be set and every macro bound in
  `bindings` must be read by some gin binding.
  """
  files = [os.path.abspath(f) if os.path.isfile(f) else f for f in gin_files]
  for path in (*search_paths, os.getcwd()):
    gin.add_config_file_search_path(os.path.abspath(path))
  # Gin logs an error for every search-path miss on the way to a hit; real
  # failures are raised, so mute its logging while parsing.
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.FATAL)
  try:
    with _in_gin_dir():
      gin.parse_config_files_and_bindings(list(files), list(bindings), finalize_config=False)
    if finalize:
      gin.finalize()
  except (ValueError, KeyError, IOError, NameError, TypeError, AttributeError, SyntaxError) as e:
    raise ConfigError(_explain(e)) from None
  except Exception as e:  # pylint: disable=broad-except  # e.g. tokenize.TokenError
    raise ConfigError(f"gin: {first_line(e)}") from None
  finally:
    logging.set_verbosity(verbosity)
  if finalize:
    _check_command_line_macros(bindings)


def _explain(error: BaseException) -> str:
  """Gin's message, or for a macro that is required or read but never set, a plain one."""
  text = str(error)
  missing = _REQUIRED.match(text) or _UNSET_MACRO.search(text)
  if missing:
    name = missing.group(1)
    return f"missing required gin macro {name}: pass --gin.{name}=..."
  parameter = _REQUIRED_PARAMETER.match(text)
  if parameter:  # models/common.gin leaves the dimensions to a size gin.
    hint = (
      " (add a size, e.g. --gin_file=models/sizes/150m.gin)"
      if parameter.group(1).startswith("TransformerConfig.")
      else ""
    )
    return f"missing required gin binding {parameter.group(1)}{hint}"
  return f"gin: {first_line(error)}"


def _check_command_line_macros(bindings: Sequence[str]) -> None:
  """A macro set on the command line that nothing reads is a typo, not a no-op."""
  for binding in bindings:
    match = _MACRO_BINDING.match(binding)
    if match and match.group(1) not in _referenced_macros:
      name = match.group(1)
      close = difflib.get_close_matches(name, sorted(_referenced_macros), n=1)
      hint = f" (did you mean {close[0]}?)" if close else ""
      raise ConfigError(f"--gin.{name}: no gin binding reads the macro {name}{hint}")


def run(module_name: str) -> None:
  """Entry point of a gin command: parses --gin_file/--gin flags, checks the bound
  values against `validation.RULES`, then calls `module.main()`.

  `python -m pkg.mod` executes a `__main__` copy of the module, whose configurables
  gin does not bind; the imported module (the one the gin files import) runs instead.
  """

  # Imported here, not at the top: the table imports the configurables' modules, which
  # import this one; and before parsing, as gin registers no configurable after that.
  from redllm_jax import validation  # pylint: disable=g-import-not-at-top

  def main() -> None:
    parse_gin(flags.FLAGS.gin_file, flags.FLAGS.gin_bindings, flags.FLAGS.gin_search_paths)
    validation.check_bindings()
    try:
      importlib.import_module(module_name).main()
    except TypeError as e:  # A gin-bound value of the wrong type or a missing argument.
      raise ConfigError(_explain(e)) from None

  run_flags(main)


def _define_gin_flags() -> None:
  """--gin_file, --gin_bindings and --gin_search_paths, defined when a command starts
  (not at import: a module that imports this one defines no flags)."""
  if "gin_file" in flags.FLAGS:
    return
  flags.DEFINE_multi_string("gin_file", [], "Gin files to parse, in order.")
  flags.DEFINE_multi_string("gin_bindings", [], "Individual gin bindings.")
  flags.DEFINE_list("gin_search_paths", [], "Extra folders searched for gin files.")


def run_flags(main: Callable[[], None]) -> None:
  """absl entry point of every command: `--gin.X=v` accepted as a gin binding,
  warnings-level logging, and a ConfigError printed as one line with exit code 2.
  Every command takes the gin flags and the multi-process start-up flags."""
  _define_gin_flags()
  multihost.define_flags()

  def _main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    try:
      main()
    except ConfigError as e:
      print(f"error: {e.message}", file=sys.stderr)
      sys.exit(2)

  app.run(_main, argv=rewrite_gin_args(sys.argv))
