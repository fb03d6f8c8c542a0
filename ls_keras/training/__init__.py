"""Training under any tf.distribute strategy: the loop, a run's lifecycle, checkpoints, export."""

from ls_keras.training.loop import (
  DIVERGED_LOSS,
  Loop,
  NonFiniteLoss,
  Schedule,
  evaluate_split,
  make_schedule,
)
from ls_keras.training.run import (
  Job,
  Runtime,
  build_classifier,
  build_network,
  load_data,
  make_optimizer,
  prepare_job,
  recorded_statistics,
  resumed_statistics,
  run_job,
  runtime,
  train_and_evaluate,
)

__all__ = [
  "DIVERGED_LOSS",
  "Job",
  "Loop",
  "NonFiniteLoss",
  "Runtime",
  "Schedule",
  "build_classifier",
  "build_network",
  "evaluate_split",
  "load_data",
  "make_optimizer",
  "make_schedule",
  "prepare_job",
  "recorded_statistics",
  "resumed_statistics",
  "run_job",
  "runtime",
  "train_and_evaluate",
]
