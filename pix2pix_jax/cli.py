"""How the command-line entry points parse their flags and report errors.

`run(work, argv)` parses absl flags (again and again in one process, so that tests can call an
entry point's `main(argv)`), runs `work`, and prints every *expected* error (`exit_code`) as an
`error: ...` block with exit code 2 (usage) or 1 (failure; `errors.py`). Anything else is a bug
and keeps its traceback; `--traceback` (or PIX2PIX_TRACEBACK=1) prints expected ones' too.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import traceback
from typing import Callable, Sequence

import ml_collections
from absl import app, flags, logging

from pix2pix_jax import errors

TRACEBACK_FLAG = "--traceback"
TRACEBACK_ENV = "PIX2PIX_TRACEBACK"
_CONFIG_NOT_LOADED = "Configuration is not available because of an earlier failure to load: "
_TYPE_NAMES = {"int": "an integer", "float": "a number", "bool": "True or False",
               "str": "a string"}


# ---------------------------------------------------------------------------- which errors

def exit_code(error: BaseException) -> int | None:
  """The exit code for an expected error; None for an unexpected one (a bug).

  Expected: the `errors.Pix2pixError` family (raised where the fact is known), absl's flag
  errors and `OSError`s from the operating system.
  """
  if isinstance(error, errors.Pix2pixError):
    return error.exit_code
  if isinstance(error, (flags.Error, app.UsageError)):
    return errors.EXIT_USAGE
  if isinstance(error, OSError) and error.errno is not None:  # the operating system said no
    return errors.EXIT_FAILURE
  return None


def message(error: BaseException) -> str:
  """The error as printed: `error: ` and its message, further lines indented by two spaces so
  that the block reads as one."""
  if isinstance(error, OSError) and error.strerror and error.filename:
    text = f"{error.filename}: {error.strerror}"
  else:
    text = str(error).strip() or type(error).__name__
  first, *rest = text.splitlines()
  return "\n".join([f"error: {first}"] + [f"  {line}" if line.strip() else "" for line in rest])


def wants_traceback(argv: Sequence[str]) -> bool:
  return TRACEBACK_FLAG in argv or os.environ.get(TRACEBACK_ENV, "") not in ("", "0")


def report(error: BaseException, *, show_traceback: bool = False) -> int:
  """Prints an expected error as the last lines of the output; returns its exit code."""
  code = exit_code(error)
  logging.flush()
  sys.stdout.flush()
  if show_traceback:
    traceback.print_exception(error)
  print(message(error), file=sys.stderr, flush=True)
  return code


# ---------------------------------------------------------------------------- flags

def new_flag_values() -> flags.FlagValues:
  """Flags of an entry point's own, apart from absl's global FLAGS (whose flags launch.py
  defines), with --help and absl's logging flags (--verbosity, --logtostderr, ...)."""
  flag_values = flags.FlagValues()
  for flag in flags.FLAGS.get_flags_for_module("absl.logging"):
    flag_values[flag.name] = flag
  flags.DEFINE_bool("help", False, "Show this help and exit.", flag_values=flag_values)
  return flag_values


def _config_flag_names(flag_values: flags.FlagValues) -> list[str]:
  """The config-file flags (ml_collections' DEFINE_config_file) among `flag_values`."""
  return [name for name in flag_values if flag_values[name].flag_type() == "config object"]


def _reset(flag_values: flags.FlagValues) -> None:
  """Forgets a previous parse: defaults back, and the `--config.KEY` flags ml_collections
  defined for the previous config removed."""
  configs = _config_flag_names(flag_values)
  for name in list(flag_values):
    if any(name.startswith(f"{config}.") for config in configs):
      delattr(flag_values, name)
  flag_values.unparse_flags()


def _config_path(argv: Sequence[str], name: str) -> str | None:
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{name}="):
      return arg.split("=", 1)[1]
    if arg == f"--{name}" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _unknown_key(argv: Sequence[str], flag_values: flags.FlagValues, name: str) -> str | None:
  """The first `--NAME.KEY=...` of argv whose key the config NAME lacks, with suggestions."""
  path = _config_path(argv, name)
  if path is None:
    return None
  try:
    config = flag_values[name].parser.parse(path)  # the config file alone, no overrides
  except Exception:  # pylint: disable=broad-except
    return None
  if not isinstance(config, ml_collections.ConfigDict):  # it failed to load
    return None
  for arg in argv:
    match = re.match(rf"--(?:no)?{re.escape(name)}\.([^=]+)", arg)
    if not match:
      continue
    node, known = config, []
    for part in match.group(1).split("."):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        options = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
        close = difflib.get_close_matches(part, options, n=1)
        where = ".".join([name] + known)
        hint = (f"; did you mean --{where}.{close[0]}?" if close else
                f"; {where} has {', '.join(sorted(options))}" if options else "")
        return f"{arg}: no such config key ({where} has no field {part!r}){hint}"
      node, known = node[part], known + [part]
  return None


def _config_load_error(argv: Sequence[str], name: str, error_text: str) -> str:
  path = _config_path(argv, name) or ""
  file_part = path.split(":", 1)[0]
  if file_part and not os.path.isfile(file_part):
    return (f"--{name}={path}: no such config file; give a config module, e.g. "
            f"--{name}=configs/facades.py")
  reason = error_text.split(_CONFIG_NOT_LOADED, 1)[-1].strip()
  return f"--{name}={path}: {reason}"


def _flag_error(error: Exception, argv: Sequence[str], flag_values: flags.FlagValues) -> str:
  """One clear message for a failed parse, naming the flag or config key at fault."""
  text = str(error)
  configs = _config_flag_names(flag_values)
  if isinstance(error, flags.UnrecognizedFlagError):
    for name in configs:
      if error.flagname.startswith(f"{name}."):
        return (f"--{error.flagname}: overrides of --{name} need --{name}=FILE before them "
                f"(e.g. --{name}=configs/saved.py:WORKDIR to change a run's own config)")
    close = re.search(r"Did you mean: (.*) \?$", text)
    return f"--{error.flagname}: unknown flag" + (
        f"; did you mean --{close.group(1).split(', ')[0]}?" if close else
        " (--helpfull lists them)")
  if "Traceback (most recent call last)" in text:  # an exception inside a config file
    lines = [l for l in text.splitlines() if l.strip()]
    flag = re.match(r"flag (--[^=]+=[^:]*):", text)
    return f"{flag.group(1) if flag else 'config'}: {lines[-1].strip()}"
  several = re.match(r"flags [^:]*: (.*)", text, re.S)  # a validator of several flags
  if several:
    return several.group(1)
  match = re.match(r"flag --([^=]+)=(.*?): (.*)", text, re.S)
  if isinstance(error, flags.IllegalFlagValueError) and match:
    name, value, reason = match.groups()
    if "must have a value other than None" in reason:
      return f"--{name} is required: {flag_values[name].help}"
    wanted = _TYPE_NAMES.get(flag_values[name].flag_type()) if name in flag_values else None
    if wanted and " is not " not in reason:  # not a value of the type (bounds say "is not")
      return f"--{name}={value}: must be {wanted}"
    return f"--{name}={value}: {reason}"
  for name in configs:
    if _CONFIG_NOT_LOADED in text:
      return _config_load_error(argv, name, text)
    unknown = _unknown_key(argv, flag_values, name)
    if unknown:
      return unknown
  return text.splitlines()[0] if text else type(error).__name__


def parse_flags(argv: Sequence[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
  """Parses `argv` into `flag_values` (again, when an earlier call parsed others); returns the
  arguments left. Raises `errors.UsageError` naming the flag or config key at fault."""
  argv = list(argv)
  _reset(flag_values)
  saved_argv = sys.argv
  sys.argv = argv  # config flags read their --config.KEY overrides from sys.argv
  try:
    rest = flag_values(argv)
  except SyntaxError as e:  # a config file that is not valid Python: its file, line and caret
    where = next((f"--{n}={_config_path(argv, n)}" for n in _config_flag_names(flag_values)
                  if _config_path(argv, n)), "the config file")
    detail = "".join(traceback.format_exception_only(e)).rstrip()
    raise errors.UsageError(f"{where} is not valid Python:\n{detail}") from None
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError, OSError) as e:
    raise errors.UsageError(_flag_error(e, argv, flag_values)) from e
  finally:
    sys.argv = saved_argv
  for name in _config_flag_names(flag_values):
    value = flag_values[name].value
    if value is not None and not isinstance(value, ml_collections.ConfigDict):
      try:
        getattr(value, "lock")  # a config that failed to load raises its error here
      except OSError as e:
        raise errors.UsageError(_config_load_error(argv, name, str(e))) from None
  return rest


# ---------------------------------------------------------------------------- running

def run(work: Callable[[list[str]], object], argv: Sequence[str] | None = None,
        flag_values: flags.FlagValues = flags.FLAGS) -> int:
  """Parses `argv` (default sys.argv), calls `work(remaining argv)`; returns the exit code.

  Expected errors are printed as `error: ...` last, with exit code 2 (usage) or 1 (failure);
  unexpected ones propagate with their traceback.
  """
  argv = list(sys.argv if argv is None else argv)
  show_traceback = wants_traceback(argv)
  argv = [a for a in argv if a != TRACEBACK_FLAG]
  if flag_values is flags.FLAGS:
    app.define_help_flags()  # --help, --helpfull as under app.run
  elif any(arg in ("-h", "--help", "-help", "--helpfull") for arg in argv[1:]):
    print(sys.modules[work.__module__].__doc__ or "", flag_values.get_help(), sep="\n")
    return 0
  try:
    rest = parse_flags(argv, flag_values)
    if not flags.FLAGS.is_parsed():  # absl's logging (and grain) look at the global flags
      flags.FLAGS.mark_as_parsed()
    logging.use_absl_handler()
    if flag_values["verbosity"].using_default_value:
      flag_values.verbosity = 0  # INFO, as app.run sets it
    work(rest)
  except Exception as e:  # pylint: disable=broad-except
    if exit_code(e) is None:
      raise
    return report(e, show_traceback=show_traceback)
  return 0


def call(work: Callable[[], object]) -> int:
  """Runs `work()` (an entry point that parses its own arguments, e.g. with argparse) with the
  same reporting as `run`; returns the exit code."""
  show_traceback = wants_traceback(sys.argv)
  sys.argv = [a for a in sys.argv if a != TRACEBACK_FLAG]
  try:
    result = work()
  except Exception as e:  # pylint: disable=broad-except
    if exit_code(e) is None:
      raise
    return report(e, show_traceback=show_traceback)
  return result if isinstance(result, int) else 0
