"""Knowledge distillation (paper Section 4): the loss, the Distiller, gamma, and `run`."""

from ls_keras.distillation.distiller import (
  Distiller,
  check_compatible,
  check_hyperparameters,
  check_teacher_term,
  distillation_loss,
  distillation_terms,
  equivalent_smoothing,
  load_teacher,
  logit_matching,
  teacher_format,
)

__all__ = [
  "Distiller",
  "check_compatible",
  "check_hyperparameters",
  "check_teacher_term",
  "distillation_loss",
  "distillation_terms",
  "equivalent_smoothing",
  "load_teacher",
  "logit_matching",
  "teacher_format",
]
