"""Shared plumbing of the entry points: flags from a config dataclass, exit code 2 on bad input.

Entry modules call `define_flags(ConfigClass)` at import time; the dataclass field's
`help` and `choices` become the flag's help and enum, so flags and configs never drift.
"""

import dataclasses
import sys
import typing

from absl import app, flags, logging

from ls_keras import config as config_lib
from ls_keras.errors import UserError

FLAGS = flags.FLAGS


def define_flags(cls, flag_values: flags.FlagValues = FLAGS) -> None:
  """Defines one absl flag per field of `cls` (unless already defined), each with a validator."""
  hints = typing.get_type_hints(cls)
  fv = {"flag_values": flag_values}
  for f in dataclasses.fields(cls):
    if f.name in flag_values:
      continue
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
    else:  # Tuple[int, ...]
      flags.DEFINE_list(f.name, [str(v) for v in default], help_text, **fv)
    flags.register_validator(f.name, _validator(f.name, kind), message=f"invalid --{f.name}", **fv)


def _convert(kind, value):
  if typing.get_origin(kind) is tuple:
    try:
      return tuple(int(v) for v in value)
    except ValueError as e:
      raise UserError(f"{','.join(value)} is not a list of integers.") from e
  return value


def _validator(name, kind):
  def check(value):
    try:
      config_lib.check_field(name, _convert(kind, value))
    except UserError as e:
      raise flags.ValidationError(str(e)) from e
    return True
  return check


def config_from_flags(cls, flag_values: flags.FlagValues = FLAGS, **overrides):
  """The frozen config built from the parsed flags."""
  hints = typing.get_type_hints(cls)
  values = {f.name: _convert(hints[f.name], flag_values[f.name].value)
            for f in dataclasses.fields(cls) if f.name in flag_values and f.name not in overrides}
  config = cls(**values, **overrides)
  config_lib.validate(config)
  return config


def _parse(argv):
  try:
    return FLAGS(argv)
  except flags.Error as e:
    sys.stderr.write(f"error: {e}\nPass --helpfull to see every flag.\n")
    sys.exit(2)


def run(main) -> None:
  """app.run(main), turning bad flags and UserErrors into a one-paragraph message and exit 2."""
  def guarded(argv):
    if not FLAGS["verbosity"].present:  # Keep TF/TFDS chatter out; --verbosity=0 shows it.
      logging.set_verbosity(logging.WARNING)
    try:
      main(argv)
    except UserError as e:
      sys.stderr.write(f"error: {e}\n")
      sys.exit(2)
  app.run(guarded, flags_parser=_parse)
