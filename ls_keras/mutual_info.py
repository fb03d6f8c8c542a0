"""Figure 6: `python -m ls_keras.mutual_info --workdir=RUN_A0 --workdir=RUN_LS`.

Plots the I(X; logit difference) series that training recorded (train with
--mi_every_steps=N), or with --recompute estimates it afresh from each run's checkpoints.
"""

import sys

from absl import flags

from ls_keras import cli


def define_flags(flag_values: flags.FlagValues) -> None:
  """Defines this command's flags on `flag_values` (by cli.run and cli.invoke, not at import)."""
  fv = {"flag_values": flag_values}
  flags.DEFINE_multi_string("workdir", [], "A finished training run (repeat for several).", **fv)
  cli.define_folder_flag(
    "output_dir", "workdirs/mutual_information", "Where the plot and JSON go.", flag_values
  )
  flags.DEFINE_bool("recompute", False, "Estimate afresh from the runs' saved checkpoints.", **fv)
  flags.DEFINE_string(
    "data_dir",
    "",
    "With --recompute: TFDS data directory holding the runs' data set, prepared (empty: TFDS' "
    "default). Read only: analyses never prepare data, nor read it from where a run's "
    "config.json says.",
    **fv,
  )
  flags.declare_key_flag("flagfile", flag_values=flag_values)  # --help lists it.


def main(flag_values: flags.FlagValues) -> None:
  """Runs the command on parsed flags; bad input raises UserError (exit code 2 in cli)."""
  cli.start_tensorflow()
  from ls_keras.mutual_information import report as mutual_info_report

  results = mutual_info_report.plot_runs(
    flag_values.workdir, flag_values.output_dir, flag_values.recompute, flag_values.data_dir
  )
  for path, series in results.items():
    print(f"{path}: " + ", ".join(f"step {p['step']}: {p['mi']:.3f}" for p in series))
  print(f"Wrote {flag_values.output_dir}/mutual_information.png and mutual_information.json.")


def run():
  """The console script entry point."""
  cli.run(sys.modules[__name__])


if __name__ == "__main__":
  run()
