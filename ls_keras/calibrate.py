"""Calibration of trained runs: `python -m ls_keras.calibrate --workdir=RUN [--workdir=RUN ...]`.

Writes calibration.json and reliability.png into each run (and the diagram into its
TensorBoard), plus a joint reliability diagram and a Table 3 in --output_dir.
"""

import sys

from absl import flags

from ls_keras import cli
from ls_keras.core.checks import MAX_BINS


def define_flags(flag_values: flags.FlagValues) -> None:
  """Defines this command's flags on `flag_values` (by cli.run and cli.invoke, not at import)."""
  fv = {"flag_values": flag_values}
  flags.DEFINE_multi_string("workdir", [], "A finished training run (repeat for several).", **fv)
  cli.define_folder_flag(
    "output_dir", "workdirs/calibration", "Where the joint diagram and table go.", flag_values
  )
  flags.DEFINE_integer(
    "num_bins",
    15,
    f"Equal-width confidence bins for ECE, 1-{MAX_BINS} (the paper: 15).",
    **fv,
  )


def main(flag_values: flags.FlagValues) -> None:
  """Runs the command on parsed flags; bad input raises UserError (exit code 2 in cli)."""
  from ls_keras.calibration import report as calibration_report

  summary = calibration_report.calibrate_runs(
    flag_values.workdir, flag_values.output_dir, flag_values.num_bins
  )
  print(summary["table"])
  print(f"Wrote {flag_values.output_dir}/reliability.png, table3.md and calibration.json.")


def run():
  """The console script entry point."""
  cli.run(sys.modules[__name__])


if __name__ == "__main__":
  run()
