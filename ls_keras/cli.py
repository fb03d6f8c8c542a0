"""Shared plumbing of the commands: flags from a config dataclass, exit code 2 on bad input.

A command module defines `define_flags(flag_values)` and `main(flag_values)`; nothing
is defined at import time, so every module imports together and tests run a command
in-process with `invoke(module, argv)`. `run(module)` is the console entry point. A config
field's `help` and `choices` become its flag's help and enum, so flags and configs
never drift apart.
"""

import dataclasses
import errno
import logging as std_logging
import os
import sys
import tempfile
import typing
from typing import Optional, Sequence, Tuple

from absl import app, flags, logging

from ls_keras.core import config as config_lib
from ls_keras.core import datasets as datasets_lib
from ls_keras.core.errors import RunPreempted, UserError

FLAGS = flags.FLAGS
EXIT_BAD_INPUT = 2
# SIGTERM/SIGINT: a checkpoint of the step reached was saved; rerun to resume (sysexits'
# EX_TEMPFAIL, "try again later"), told apart from bad input (2) and crashes (1).
EXIT_PREEMPTED = 75


def define_config_flags(cls, flag_values: flags.FlagValues) -> None:
  """Defines one absl flag per field of the config dataclass `cls`, each with a validator."""
  hints = typing.get_type_hints(cls)
  fv = {"flag_values": flag_values}
  for f in dataclasses.fields(cls):
    kind, default, help_text = hints[f.name], f.default, f.metadata.get("help", f.name)
    choices = f.metadata.get("choices")
    if choices is not None:
      flags.DEFINE_enum(f.name, default, list(choices), help_text, **fv)
    elif kind is bool:
      flags.DEFINE_bool(f.name, default, help_text, **fv)
    elif kind is int:
      flags.DEFINE_integer(f.name, default, help_text, **fv)
    elif kind is float:
      flags.DEFINE_float(f.name, default, help_text, **fv)
    elif kind is str:
      flags.DEFINE_string(f.name, default, help_text, **fv)
    else:  # A tuple of numbers.
      flags.DEFINE_list(f.name, [str(v) for v in default], help_text, **fv)
    flags.register_validator(f.name, _validator(f.name, kind), message=f"invalid --{f.name}", **fv)


def _convert(name: str, kind, value):
  if typing.get_origin(kind) is tuple:
    element = typing.get_args(kind)[0]
    try:
      return tuple(element(v) for v in value)
    except ValueError as e:
      raise UserError(
        f"--{name}={','.join(value)} is not allowed: give a comma-separated list of "
        f"{element.__name__} numbers."
      ) from e
  return value


def _validator(name, kind):
  def check(value):
    try:
      config_lib.check_field(name, _convert(name, kind, value))
    except UserError as e:
      raise flags.ValidationError(str(e)) from e
    return True

  return check


def define_folder_flag(name: str, default: str, help_text: str, flag_values) -> None:
  """A string flag naming a folder to write into; an empty value is refused at parsing.

  An empty path means the current directory to every file function, so `--workdir=` would
  train into wherever the command was started (a home directory, a repository).
  """
  flags.DEFINE_string(name, default, help_text, flag_values=flag_values)
  flags.register_validator(
    name,
    bool,
    message=f"--{name} is empty: give a folder (an empty path would mean the current directory).",
    flag_values=flag_values,
  )


def define_workdir_flags(flag_values: flags.FlagValues, default: str, what: str) -> None:
  """--workdir (default `default`, holding everything `what` writes) and --overwrite."""
  define_folder_flag("workdir", default, f"Folder for everything {what} writes.", flag_values)
  flags.DEFINE_bool(
    "overwrite",
    False,
    "Delete the ls_keras workdir at --workdir (a different or broken run) and start afresh. "
    "Never deletes a folder that is not an ls_keras workdir.",
    flag_values=flag_values,
  )


def define_plan_flags(
  flag_values: flags.FlagValues, registry, default_root: str, what: str
) -> None:
  """--preset (a key of `registry`), --root (where `what` goes), and the data flags."""
  fv = {"flag_values": flag_values}
  flags.DEFINE_enum("preset", next(iter(registry)), list(registry), _describe(registry), **fv)
  define_folder_flag("root", default_root, f"Folder for {what}.", flag_values)
  flags.DEFINE_string("data_dir", "", "TFDS data directory (empty: TFDS' default).", **fv)
  flags.DEFINE_string(
    "fashion_mnist_source", "", "Folder with the Fashion-MNIST IDX files (empty: Debian's).", **fv
  )
  flags.DEFINE_bool(
    "download",
    True,
    "Download and prepare a TFDS data set missing from --data_dir on first use "
    "(--nodownload: refuse, saying how to prepare it elsewhere).",
    **fv,
  )
  flags.DEFINE_string(
    "dataset",
    "",
    "Run the preset on this data set instead of its own: any --dataset value of train "
    "(a TFDS name, folder:PATH, npz:PATH). Empty: the preset's.",
    **fv,
  )
  flags.DEFINE_integer(
    "validation_size", 0, "Validation examples of --dataset (0: the preset's).", **fv
  )
  flags.DEFINE_integer("image_size", 0, "Resize --dataset's images to NxN (0: native).", **fv)
  flags.DEFINE_string(
    "augmentation", "", "shift, crop_flip, flip, none or auto (empty: the preset's).", **fv
  )


def plan_data(flag_values: flags.FlagValues) -> dict:
  """The data overrides of a plan command's flags, for `recipes.with_data`."""
  return {
    "dataset": flag_values.dataset,
    "validation_size": flag_values.validation_size,
    "image_size": flag_values.image_size,
    "augmentation": flag_values.augmentation,
  }


def _describe(registry) -> str:
  """'name: first line of its docstring; ...' for a --preset help."""
  return "; ".join(
    f"{name}: {fn.__doc__.splitlines()[0].rstrip('.')}" for name, fn in registry.items()
  )


def config_from_flags(cls, flag_values: flags.FlagValues, **overrides):
  """The frozen, validated config built from the parsed flags (plus `overrides`).

  Path settings (fields marked `path`, and the path in --dataset=folder:PATH or npz:PATH)
  given on the command line are made absolute here, against the current directory, so
  config.json records where the run really reads.
  """
  hints = typing.get_type_hints(cls)
  values = {
    f.name: _convert(f.name, hints[f.name], flag_values[f.name].value)
    for f in dataclasses.fields(cls)
    if f.name in flag_values and f.name not in overrides
  }
  for f in dataclasses.fields(cls):
    if f.metadata.get("path") and f.name in values:
      values[f.name] = config_lib.absolute_path(values[f.name])
  if "dataset" in values:  # folder:PATH and npz:PATH: recorded with an absolute PATH.
    values["dataset"] = datasets_lib.absolute_dataset(values["dataset"])
  config = cls(**values, **overrides)
  config_lib.validate(config)
  return config


class _OnlyOurInfo(std_logging.Filter):
  """Lets ls_keras' own INFO lines through absl's handler; others' only from WARNING up.

  Also drops TensorFlow's retracing warning about our training loop's functions: a sweep
  builds a new loop, and traces its functions once, for every run it trains in the process,
  which TensorFlow counts as retracing one function. Its warning about a user's functions
  passes.
  """

  def filter(self, record):
    ours = f"{os.sep}ls_keras{os.sep}" in record.pathname
    if _OUR_RETRACING in record.getMessage() and "triggered tf.function retracing" in (
      record.getMessage()
    ):
      return False
    return record.levelno >= std_logging.WARNING or ours


_OUR_RETRACING = "<function Loop.__init__.<locals>."


class _Plain(std_logging.Formatter):
  """Our lines as plain sentences: 'message' for information, 'warning: message' above it."""

  def format(self, record):
    message = record.getMessage()
    if record.exc_info:
      message += "\n" + self.formatException(record.exc_info)
    if record.levelno >= std_logging.WARNING:
      return f"{record.levelname.lower()}: {message}"
    return message


def _setup_logging(flag_values: flags.FlagValues) -> None:
  if "verbosity" in flag_values and flag_values["verbosity"].present:
    return  # The user chose; show everything at that level, with absl's prefixes.
  logging.set_verbosity(logging.INFO)
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _OnlyOurInfo) for f in handler.filters):
    handler.addFilter(_OnlyOurInfo())
  handler.setFormatter(_Plain())


# TensorFlow's start-up lines that say nothing to act on; written by its C++ runtime to
# the process' stderr before any logging setting applies (TF_CPP_MIN_LOG_LEVEL included).
_CHATTER = (
  "All log messages before absl::InitializeLog()",
  "oneDNN custom operations are on",
  "This TensorFlow binary is optimized to use available CPU instructions",
  "To enable the following instructions:",
  "Could not find cuda drivers on your machine",
)
_NO_DRIVER = "Could not find cuda drivers on your machine"
_CUINIT = "failed call to cuInit"


def start_tensorflow() -> None:
  """Imports TensorFlow and lists its devices, passing on only the start-up lines that matter.

  Its notices on every start (oneDNN, CPU instructions, no CUDA driver) and its C++ INFO
  lines are dropped, and so is the `cuInit` error where no CUDA driver is installed (a CPU
  machine, where it reads like a failure but is none). Every other line, real warnings and
  errors included, is passed on. Commands call this just before their first TensorFlow
  work, so answers that need none (a finished run, a bad flag) come without TensorFlow's
  start-up time.
  """
  if "tensorflow" in sys.modules:
    return
  # TensorFlow's C++ INFO lines (buffer sizes, op placement) are for its developers; its
  # warnings and errors still show. A user's own setting wins.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      import tensorflow as tf  # pylint: disable=import-outside-toplevel

      tf.config.list_physical_devices()  # CUDA's initialisation prints here.
    finally:
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      lines = captured.read().decode("utf-8", "replace").splitlines(keepends=True)
  sys.stderr.writelines(tensorflow_lines_worth_showing(lines))


def tensorflow_lines_worth_showing(lines: Sequence[str]) -> list:
  """The lines of TensorFlow's start-up output a user needs (see `start_tensorflow`)."""
  no_driver = any(_NO_DRIVER in line for line in lines)
  return [
    line
    for line in lines
    if not any(c in line for c in _CHATTER) and not (no_driver and _CUINIT in line)
  ]


# What an OS error means, in words, and what the user does about it (`os_error_words`).
_OS_ERRORS = {
  errno.ENOSPC: ("the disk is full", "Free space"),
  errno.EDQUOT: ("the disk quota is used up", "Free space or raise the quota"),
  errno.EROFS: ("the folder is read-only", "Make it writable or give another folder"),
  errno.EACCES: ("permission is denied", "Make it writable for you or give another folder"),
  errno.EPERM: (
    "the operation is not permitted",
    "Make it writable for you or give another folder",
  ),
  errno.ENAMETOOLONG: ("the path is too long", "Give a shorter path"),
  errno.EMFILE: ("too many files are open", "Raise the open-file limit (ulimit -n)"),
  errno.EIO: ("the disk reported an input/output error", "Check the disk"),
}
RERUN = "rerun the same command: a training run resumes from its last checkpoint"


def os_error_words(code: Optional[int]) -> Tuple[str, str]:
  """(the cause in words, what to do) for an errno; a generic pair for the others."""
  if code in _OS_ERRORS:
    return _OS_ERRORS[code]
  reason = os.strerror(code).lower() if code else "the file system refused"
  return reason, "Fix that"


def os_error_message(code: Optional[int], where: str) -> str:
  """The one paragraph that answers an OS error `code` (errno) on `where` (a path or message)."""
  cause, action = os_error_words(code)
  detail = f" ({os.strerror(code)})" if code in _OS_ERRORS else ""
  verb = "write" if code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS) else "access"
  return f"cannot {verb} {where}: {cause}{detail}. {action}, then {RERUN}."


def _file_system_error(e: BaseException) -> Optional[str]:
  """The message for an OS or TensorFlow file-system error; None for any other exception.

  TensorFlow (checkpoints, SavedModels, summaries) raises its own error types for a full
  disk or a read-only folder; their message ends with the OS' wording, which gives the errno.
  TensorFlow is looked up, not imported: commands that never load it stay fast.
  """
  if isinstance(e, OSError) and e.errno is not None:
    where = " and ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
    return os_error_message(e.errno, where or "a file")
  tf = sys.modules.get("tensorflow")
  errors = getattr(tf, "errors", None)
  if errors is None or not isinstance(e, errors.OpError):
    return None
  text = str(getattr(e, "message", e)).strip().splitlines()
  text = text[0][:500] if text else ""
  codes = [*_OS_ERRORS, *sorted(set(errno.errorcode) - set(_OS_ERRORS))]  # Known ones first.
  code = next(
    (c for c in codes if f"; {os.strerror(c)}" in text or f": {os.strerror(c)}" in text), None
  )
  if code is None:
    return None
  for separator in ("; ", " : ", ": "):  # TensorFlow's "PATH; reason": the reason follows.
    text = text.replace(f"{separator}{os.strerror(code)}", "")
  return os_error_message(code, text)


def _guarded(main, flag_values: flags.FlagValues) -> int:
  """Runs `main`; bad input and file-system errors become one paragraph and exit code 2."""
  try:
    main(flag_values)
  except UserError as e:
    sys.stderr.write(f"error: {e}\n")
    return EXIT_BAD_INPUT
  except RunPreempted as e:
    sys.stderr.write(f"preempted: {e}\n")
    return EXIT_PREEMPTED
  except Exception as e:  # pylint: disable=broad-except  # Re-raised unless a file-system error.
    message = _file_system_error(e)
    if message is None:
      raise
    sys.stderr.write(f"error: {message}\n")
    return EXIT_BAD_INPUT
  return 0


def reuse_or_claimable(config, kind: str, workdir: str, overwrite: bool) -> Optional[dict]:
  """What `train` or `distill` can answer before starting TensorFlow.

  Returns the metrics of this very run when the workdir already holds it finished (nothing
  to do), else None once the workdir may be used.

  Raises:
    WorkdirError: the workdir holds another or a broken run, is not a workdir, or another
      live process owns it.
  """
  from ls_keras.core import lease  # pylint: disable=import-outside-toplevel
  from ls_keras.core import workdir as workdir_lib  # pylint: disable=import-outside-toplevel

  run_dir = workdir_lib.Workdir(workdir)
  finished = run_dir.finished_metrics(config, kind, overwrite)
  if finished is None:
    lease.check_free(run_dir.path, "one run")
  return finished


def _parse_error(e: Exception, argv: Sequence[str]) -> str:
  """The message for a refused command line: absl's, or a flagfile that is not text."""
  if isinstance(e, UnicodeDecodeError):
    files = [a.split("=", 1)[1] for a in argv if a.startswith("--flagfile=")]
    bad = next((f for f in files if not _is_text(f)), None)
    which = f"--flagfile={bad}" if bad else "a --flagfile (or one it includes)"
    return (
      f"{which} is not a text file: byte {e.object[e.start]:#04x} at position {e.start} is not "
      "UTF-8. Give a file of --flag=value lines."
    )
  return str(e)


def _is_text(path: str) -> bool:
  try:
    with open(path, encoding="utf-8") as f:
      f.read()
  except UnicodeDecodeError:
    return False
  except OSError:
    return True  # absl says what is wrong with a missing or unreadable file.
  return True


def invoke(command, argv: Sequence[str]) -> int:
  """Runs a command module in this process with flags of its own; returns its exit code.

  Same parsing, validation and error handling as the console entry point: bad input
  prints one paragraph to stderr and returns 2.

  Args:
    command: a module with `define_flags(flag_values)` and `main(flag_values)`.
    argv: the command-line arguments, without the program name.
  """
  flag_values = flags.FlagValues()
  command.define_flags(flag_values)
  try:
    flag_values(["ls_keras", *argv])
  except (flags.Error, UnicodeDecodeError) as e:
    sys.stderr.write(f"error: {_parse_error(e, argv)}\n")
    return EXIT_BAD_INPUT
  return _guarded(command.main, flag_values)


def run(command) -> None:
  """The console entry point of a command module: parse flags, run, exit 2 on bad input."""

  def parse(argv):
    command.define_flags(FLAGS)
    try:
      return FLAGS(argv)
    except (flags.Error, UnicodeDecodeError) as e:
      sys.stderr.write(f"error: {_parse_error(e, argv)}\nPass --helpfull to see every flag.\n")
      sys.exit(EXIT_BAD_INPUT)

  def main(argv):
    del argv
    _setup_logging(FLAGS)
    sys.exit(_guarded(command.main, FLAGS))

  app.run(main, flags_parser=parse)
