"""One distillation run: a student trained against a teacher into its own workdir (Section 4)."""

import os
from typing import Sequence

import numpy as np

from ls_keras import training
from ls_keras.core import checks
from ls_keras.core import config as config_lib
from ls_keras.core.errors import UserError
from ls_keras.core.workdir import Workdir
from ls_keras.distillation.distiller import (
  Distiller,
  check_compatible,
  equivalent_smoothing,
  load_teacher,
  teacher_format,
)


def distill_and_evaluate(
  config: config_lib.DistillConfig,
  workdir: str,
  overwrite: bool = False,
  verbose: bool = True,
  trust_saved_model: bool = False,
  callbacks: Sequence[training.CallbackFactory] = (),
) -> dict:
  """Distils config.teacher into a student trained into `workdir`; returns the student's metrics.

  The metrics include the teacher's equivalent smoothing gamma at config.temperature over
  the student's training set. Same workdir semantics as training: finished runs are
  reused, unfinished ones resume.

  `trust_saved_model` allows a SavedModel teacher (see `distiller.teacher_format`). It is an
  argument, not a config field: it says whether the user trusts a file's author, not how the
  run trains, so it is neither part of the run's identity nor recorded in config.json (a
  student resumed with a trusted SavedModel teacher must pass it again).

  `callbacks` are as in `training.run_and_evaluate`; their `network` is the student.

  Raises:
    UserError: bad settings, teacher, data or workdir (nothing written), or divergence.
  """
  config_lib.validate(config)
  teacher_format(config.teacher, trust_saved_model)  # Refuses before anything is loaded.
  run_dir = Workdir(workdir)
  teacher = os.path.abspath(config.teacher)
  if teacher == run_dir.path or teacher.startswith(run_dir.path + os.sep):
    raise UserError(
      f"--teacher={config.teacher} lies inside --workdir={workdir}: the student's run would "
      "replace its own teacher. Give the student another workdir."
    )

  def build(rt: training.Runtime, schedule: training.Schedule):
    with rt.strategy.scope():
      teacher = load_teacher(config.teacher, trust_saved_model)
      check_compatible(teacher, rt.splits.spec.image_shape, rt.splits.num_classes)
      student = training.build_network(config, rt.splits)
      distiller = Distiller(
        teacher,
        student,
        config.temperature,
        config.beta,
        config.alpha,
        config.t_squared,
        loss_scale=config.loss_scale,
        teacher_term=config.teacher_term,
        name="distiller",
      )
      distiller.compile(optimizer=training.make_optimizer(config, schedule.total_steps))
    teacher_logits, labels = training.evaluate_split(
      training.Loop(teacher, rt.strategy),
      rt.splits.train,
      rt.splits.num_classes,
      config.batch_size * 2,
    )
    if not np.all(np.isfinite(teacher_logits)):
      raise UserError(
        f"--teacher={config.teacher} gives NaN or infinite logits on the training data; it is "
        "broken (for instance a run that diverged). Use another teacher."
      )
    if checks.looks_like_probabilities(teacher_logits):
      raise UserError(
        f"--teacher={config.teacher} outputs probabilities, not logits: on the training data "
        "every row of its outputs is non-negative and sums to 1 (a final softmax). The "
        "distillation loss applies softmax(teacher / T) itself. Give a teacher whose output "
        "is the pre-softmax logits (re-save it without the final softmax)."
      )
    extra = {
      "equivalent_smoothing": equivalent_smoothing(teacher_logits, labels, config.temperature),
      "teacher_train_accuracy": float(np.mean(teacher_logits.argmax(-1) == labels)),
      "teacher": os.path.abspath(config.teacher),
    }
    return distiller, student, extra

  return training.run_and_evaluate(config, "distill", workdir, build, overwrite, verbose, callbacks)
