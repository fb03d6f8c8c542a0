"""Figure 5: `python -m ls_keras.kd_sweep --preset=fashion_mnist --root=workdirs/kd_sweep`.

Trains teachers over an alpha grid, distils the hard-target teacher at growing T and the
LS teachers at T = 1, trains students directly with alpha = gamma, over several seeds,
plus the fully connected anecdote; then writes kd_sweep.md, kd_sweep.json and figure5.png
into --root. Rerunning reuses finished runs and resumes an interrupted one.
"""

import sys

from absl import flags

from ls_keras import cli
from ls_keras.paper import recipes


def define_flags(flag_values: flags.FlagValues) -> None:
  """Defines this command's flags on `flag_values` (by cli.run and cli.invoke, not at import)."""
  cli.define_plan_flags(
    flag_values, recipes.SWEEPS, "workdirs/kd_sweep", "one workdir per run, and the results"
  )
  flags.adopt_module_key_flags(cli, flag_values=flag_values)  # --help lists them,
  flags.declare_key_flag("flagfile", flag_values=flag_values)  # and --flagfile.


def main(flag_values: flags.FlagValues) -> None:
  """Runs the command on parsed flags; bad input raises UserError (exit code 2 in cli)."""
  cli.start_tensorflow()
  from ls_keras.experiments import kd_sweep as sweep

  data = recipes.preset_data(
    flag_values.data_dir, flag_values.fashion_mnist_source, flag_values.download
  )
  preset = recipes.with_data(
    recipes.lookup(recipes.SWEEPS, flag_values.preset)(data), **cli.plan_data(flag_values)
  )
  report = sweep.run_sweep(preset, flag_values.root)
  if report is None:
    print(
      "Every run is finished; the worker that finished the last one writes "
      f"{flag_values.root}/kd_sweep.md."
    )
    return
  print(report["table"])
  print(f"Wrote {flag_values.root}/kd_sweep.md, kd_sweep.json and figure5.png.")


def run():
  """The console script entry point."""
  cli.run(sys.modules[__name__])


if __name__ == "__main__":
  run()
