"""The errors a user sees as one line: configuration mistakes (exit 2) and runs that
cannot go on. Core modules raise these; only the commands (`gin_utils.run`,
`gin_utils.run_flags`) turn them into a line on stderr and an exit code."""


class ConfigError(Exception):
  """A user-facing configuration error: printed as one line, exit code 2."""

  def __init__(self, message: str):
    super().__init__(message)
    # Gin appends "In call to configurable ..." lines to exceptions raised inside
    # configurables; the one line we print is kept here.
    self.message = message


class TrainingError(Exception):
  """A run that cannot go on (e.g. a non-finite loss): printed as one line."""


def first_line(error: BaseException) -> str:
  """The error's text on one line (its lines joined), at most 500 characters."""
  text = str(error).strip() or type(error).__name__
  return " ".join(line.strip() for line in text.splitlines() if line.strip())[:500]
