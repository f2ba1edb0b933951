"""Gin plumbing for the entry points, in T5X's shape.

`--gin_file=models/redllm_tiny.gin` is looked up on the search path (the repo's
`gin/` folder first), and `--gin.MACRO=value` is shorthand for
`--gin_bindings=MACRO=value`. A bad file or binding exits with one line and code 2.
"""
import pathlib
import sys
from typing import Any, Callable, Sequence

from absl import app, flags, logging
import gin

GIN_DIR = pathlib.Path(__file__).resolve().parent.parent / "gin"

flags.DEFINE_multi_string("gin_file", [], "Gin files to parse, in order.")
flags.DEFINE_multi_string("gin_bindings", [], "Individual gin bindings.")
flags.DEFINE_list("gin_search_paths", [], "Extra folders searched for gin files.")


class ConfigError(Exception):
  """A user-facing configuration error: printed as one line, exit code 2."""

  def __init__(self, message: str):
    super().__init__(message)
    # Gin appends "In call to configurable ..." lines to exceptions raised inside
    # configurables; the one line we print is kept here.
    self.message = message


def rewrite_gin_args(argv: Sequence[str]) -> list[str]:
  """Turns `--gin.NAME=value` into `--gin_bindings=NAME=value`."""
  return [f"--gin_bindings={arg[len('--gin.'):]}" if arg.startswith("--gin.") else arg
          for arg in argv]


def parse_gin(gin_files: Sequence[str], bindings: Sequence[str],
              search_paths: Sequence[str] = ()) -> None:
  """Parses gin files and bindings; any gin error becomes a one-line ConfigError."""
  # Our folders go before gin's default '' (the working directory): for '' gin
  # also tries a reader that imports `runs/x.gin` as the Python package `runs`, and
  # crashes on a namespace package, e.g. the `runs/` folder that the demo writes.
  prefixes = gin.config._LOCATION_PREFIXES  # pylint: disable=protected-access
  for path in reversed([*search_paths, str(GIN_DIR)]):
    if path not in prefixes:
      prefixes.insert(0, path)
  # Gin logs an error for every search-path miss on the way to a hit; real
  # failures are raised, so mute its logging while parsing.
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.FATAL)
  try:
    gin.parse_config_files_and_bindings(list(gin_files), list(bindings),
                                        finalize_config=False)
  except (ValueError, KeyError, IOError, NameError, TypeError, AttributeError) as e:
    raise ConfigError(f"gin: {first_line(e)}") from None
  finally:
    logging.set_verbosity(verbosity)


def first_line(error: BaseException) -> str:
  text = str(error).strip() or type(error).__name__
  return " ".join(line.strip() for line in text.splitlines() if line.strip())[:500]


def run(main: Callable[[], None]) -> None:
  """absl entry point: rewrites gin args, parses gin, runs `main()` with clean errors."""

  def _main(argv: Sequence[str]) -> None:
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
      parse_gin(flags.FLAGS.gin_file, flags.FLAGS.gin_bindings, flags.FLAGS.gin_search_paths)
      main()
    except ConfigError as e:
      print(f"error: {e.message}", file=sys.stderr)
      sys.exit(2)

  app.run(_main, argv=rewrite_gin_args(sys.argv))


_MISSING = object()


@gin.configurable
def _macro_value(value=gin.REQUIRED):
  return value


def macro_value(name: str, default: Any = _MISSING) -> Any:
  """The evaluated value of gin macro `name` (references such as `@get_vocabulary()`
  are called); `default` when it is unset, else a one-line ConfigError."""
  try:
    gin.query_parameter(f"%{name}")
  except ValueError:
    if default is not _MISSING:
      return default
    raise ConfigError(f"missing required gin macro {name}: pass --gin.{name}=...") from None
  gin.parse_config(f"_macro_value.value = %{name}")
  try:
    return _macro_value()
  except (ValueError, TypeError, KeyError) as e:
    raise ConfigError(f"evaluating %{name}: {first_line(e)}") from None


def check_required_macros() -> None:
  """One-line ConfigError for the first unset macro of the run gin's REQUIRED_MACROS."""
  for name in macro_value("REQUIRED_MACROS", []):
    macro_value(name)


def build_model(macro: str = "MODEL"):
  """The model a model gin binds to `%MODEL`."""
  return macro_value(macro)
