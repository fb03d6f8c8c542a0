"""Train a model with label smoothing: `python -m ls_keras.train --dataset=cifar10 --alpha=0.1`.

Writes config, TensorBoard logs, checkpoints, metrics, logits and the exported model
into --workdir; rerunning the same command resumes an interrupted run.
"""

import json
import sys

from absl import flags

from ls_keras import cli
from ls_keras.core import config as config_lib


def define_flags(flag_values: flags.FlagValues) -> None:
  """Defines this command's flags on `flag_values` (by cli.run and cli.invoke, not at import)."""
  cli.define_config_flags(config_lib.TrainConfig, flag_values)
  cli.define_workdir_flags(flag_values, "workdirs/train", "the run")
  flags.adopt_module_key_flags(cli, flag_values=flag_values)  # --help lists them,
  flags.declare_key_flag("flagfile", flag_values=flag_values)  # and --flagfile.


def main(flag_values: flags.FlagValues) -> None:
  """Runs the command on parsed flags; bad input raises UserError (exit code 2 in cli)."""
  config = cli.config_from_flags(config_lib.TrainConfig, flag_values)
  metrics = cli.reuse_or_claimable(config, "train", flag_values.workdir, flag_values.overwrite)
  if metrics is None:
    cli.start_tensorflow()
    from ls_keras import mutual_information, training  # After the answers needing no TF.

    metrics = training.train_and_evaluate(
      config,
      flag_values.workdir,
      overwrite=flag_values.overwrite,
      callbacks=(mutual_information.callback_for_run,),
    )
  print(json.dumps({split: metrics[split] for split in ("validation", "test")}, indent=2))


def run():
  """The console script entry point."""
  cli.run(sys.modules[__name__])


if __name__ == "__main__":
  run()
