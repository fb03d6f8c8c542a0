"""Distil a teacher into a student: `python -m ls_keras.distill --teacher=RUN --temperature=T --beta=B`.

The student trains into its own --workdir with the same outputs as `train`; its metrics
record the teacher's equivalent smoothing gamma. Student flags are the train flags.
"""

import json

from absl import flags

from ls_keras import cli
from ls_keras import distillation

cli.define_flags(distillation.DistillConfig)
flags.DEFINE_string("workdir", "workdirs/student", "Folder for everything the student's run writes.")
flags.DEFINE_bool("overwrite", False, "Delete a workdir holding a different run and start afresh.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  config = cli.config_from_flags(distillation.DistillConfig)
  metrics = distillation.distill_and_evaluate(config, FLAGS.workdir, overwrite=FLAGS.overwrite)
  print(json.dumps({"equivalent_smoothing": metrics["equivalent_smoothing"],
                    **{split: metrics[split] for split in ("validation", "test")}}, indent=2))


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
