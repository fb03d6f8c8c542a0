"""Train a model with label smoothing: `python -m ls_keras.train --dataset=cifar10 --alpha=0.1`.

Writes config, TensorBoard logs, checkpoints, metrics, logits and the exported model
into --workdir; rerunning the same command resumes an interrupted run.
"""

import json

from absl import flags

from ls_keras import cli
from ls_keras import config as config_lib

cli.define_flags(config_lib.TrainConfig)
flags.DEFINE_string("workdir", "workdirs/train", "Folder for everything the run writes.")
flags.DEFINE_bool("overwrite", False, "Delete a workdir holding a different run and start afresh.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  config = cli.config_from_flags(config_lib.TrainConfig)
  from ls_keras import training  # Imported after flag parsing: TensorFlow starts slowly.
  metrics = training.train_and_evaluate(config, FLAGS.workdir, overwrite=FLAGS.overwrite)
  print(json.dumps({split: metrics[split] for split in ("validation", "test")}, indent=2))


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
