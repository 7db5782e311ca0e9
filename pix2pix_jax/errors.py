"""The errors a user can cause, each with the exit code the command line reports for it.

Every exception here is *expected*: its message names the culprit and the fix, so the command
line prints it as one `error: ...` block without a traceback (`cli.py`). Each class also derives
from the built-in exception that code catching errors by kind expects (`ValueError`, ...).
"""

from __future__ import annotations

# The command is right but the run could not be done: data missing or unreadable, a damaged
# checkpoint, a full disk, a non-finite loss.
EXIT_FAILURE = 1
# The command is wrong and changing it fixes it: a flag, a config value, a step, a path given
# that does not exist, a config whose model is not the run's.
EXIT_USAGE = 2


class Pix2pixError(Exception):
  """An expected failure whose message says what is wrong and how to fix it."""
  exit_code = EXIT_FAILURE


class UsageError(Pix2pixError, ValueError):
  """A flag, argument or combination of them that cannot work."""
  exit_code = EXIT_USAGE


class PathNotFoundError(UsageError, FileNotFoundError):
  """A path given on the command line (or in the config) that does not exist or holds nothing
  usable: a --workdir without checkpoints, an --input, a .pth file."""


class ConfigError(UsageError):
  """A config with invalid values; `problems` holds one line per problem, each naming the key
  as typed on the command line (`--config.optim.lr`), its value and what is allowed."""

  def __init__(self, problems: list[str]):
    self.problems = list(problems)
    if len(self.problems) == 1:
      message = self.problems[0]
    else:
      message = f"the config has {len(self.problems)} problems:\n" + "\n".join(self.problems)
    super().__init__(message)


class DataNotFoundError(Pix2pixError, FileNotFoundError):
  """Data the run needs is not on this machine (and could not be fetched)."""


class InputError(Pix2pixError, ValueError):
  """An input file that cannot be used: corrupt, truncated, of an unusable size or layout."""


class StorageError(Pix2pixError, OSError):
  """A bucket or storage endpoint that cannot be used: credentials, network, permissions."""


class MissingExtraError(Pix2pixError, ImportError):
  """A mode needs a package of an optional extra that is not installed."""

  def __init__(self, what: str, package: str, extra: str):
    super().__init__(f"{what} needs {package}, which is not installed: "
                     f"pip install -e \".[{extra}]\" (the {extra} extra)")
