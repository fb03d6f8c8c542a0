"""Distil a teacher into a student: `python -m ls_keras.distill --teacher=RUN --temperature=T`.

The student trains into its own --workdir with the same outputs as `train`; its metrics
record the teacher's equivalent smoothing gamma. Student flags are the train flags.
"""

import json
import sys

from absl import flags

from ls_keras import cli
from ls_keras.core import config as config_lib


def define_flags(flag_values: flags.FlagValues) -> None:
  """Defines this command's flags on `flag_values` (by cli.run and cli.invoke, not at import)."""
  cli.define_config_flags(config_lib.DistillConfig, flag_values)
  cli.define_workdir_flags(flag_values, "workdirs/student", "the student's run")
  flags.DEFINE_bool(
    "trust_saved_model",
    False,
    "Allow a SavedModel folder as --teacher. Loading a SavedModel runs the graph stored in it "
    "(code its author wrote); without this flag only workdirs and .keras files (safe mode) are "
    "read. Not part of the run's settings.",
    flag_values=flag_values,
  )
  flags.adopt_module_key_flags(cli, flag_values=flag_values)  # --help lists them,
  flags.declare_key_flag("flagfile", flag_values=flag_values)  # and --flagfile.


def main(flag_values: flags.FlagValues) -> None:
  """Runs the command on parsed flags; bad input raises UserError (exit code 2 in cli)."""
  config = cli.config_from_flags(config_lib.DistillConfig, flag_values)
  metrics = cli.reuse_or_claimable(config, "distill", flag_values.workdir, flag_values.overwrite)
  if metrics is None:
    cli.start_tensorflow()
    from ls_keras import mutual_information  # After the quick answers.
    from ls_keras.distillation import run as distillation_run

    metrics = distillation_run.distill_and_evaluate(
      config,
      flag_values.workdir,
      overwrite=flag_values.overwrite,
      trust_saved_model=flag_values.trust_saved_model,
      callbacks=(mutual_information.callback_for_run,),
    )
  print(
    json.dumps(
      {
        "equivalent_smoothing": metrics["equivalent_smoothing"],
        **{split: metrics[split] for split in ("validation", "test")},
      },
      indent=2,
    )
  )


def run():
  """The console script entry point."""
  cli.run(sys.modules[__name__])


if __name__ == "__main__":
  run()
