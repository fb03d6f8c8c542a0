"""The main job: `python -m ls_keras.reproduce [--preset=fashion_mnist]`.

Runs every claim of the paper in the regime the paper studies (networks trained until they
fit their data), then writes report/index.md and report/index.html under --root: per
claim the paper's number, ours, the effect with its 95% CI across seeds and a verdict by
a printed rule, with figures, and calibration against training length. Resumable: a second
call reuses finished runs.
"""

import sys

from absl import flags

from ls_keras import cli
from ls_keras.paper import recipes


def define_flags(flag_values: flags.FlagValues) -> None:
  """Defines this command's flags on `flag_values` (by cli.run and cli.invoke, not at import)."""
  cli.define_plan_flags(
    flag_values, recipes.REPRODUCTIONS, "workdirs/reproduce", "every run and the report"
  )
  flags.adopt_module_key_flags(cli, flag_values=flag_values)  # --help lists them,
  flags.declare_key_flag("flagfile", flag_values=flag_values)  # and --flagfile.


def main(flag_values: flags.FlagValues) -> None:
  """Runs the command on parsed flags; bad input raises UserError (exit code 2 in cli)."""
  cli.start_tensorflow()
  from ls_keras.paper import reproduce as reproduce_lib  # TensorFlow starts slowly.

  result = reproduce_lib.reproduce(
    flag_values.preset,
    flag_values.root,
    flag_values.data_dir,
    flag_values.fashion_mnist_source,
    download=flag_values.download,
    data=cli.plan_data(flag_values),
  )
  if result is None:
    print(
      "Every run is finished; the worker that finished the last one writes "
      f"{flag_values.root}/report."
    )
    return
  for line in reproduce_lib.summary_lines(result):
    print(line)
  print(f"Report: {result['report']} ({result['seconds'] / 60:.1f} minutes)")


def run():
  """The console script entry point."""
  cli.run(sys.modules[__name__])


if __name__ == "__main__":
  run()
