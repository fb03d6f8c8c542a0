"""Training under any tf.distribute strategy: the loop, the schedule, and a run's lifecycle."""

from ls_keras.training.loop import (
  DIVERGED_LOSS,
  Loop,
  NonFiniteLoss,
  Schedule,
  evaluate_split,
  make_schedule,
)
from ls_keras.training.run import (
  Builder,
  CallbackFactory,
  PreparedRun,
  Runtime,
  build_classifier,
  build_network,
  load_data,
  make_optimizer,
  prepare_run,
  run_and_evaluate,
  run_prepared,
  runtime,
  train_and_evaluate,
)

__all__ = [
  "DIVERGED_LOSS",
  "Builder",
  "CallbackFactory",
  "Loop",
  "NonFiniteLoss",
  "PreparedRun",
  "Runtime",
  "Schedule",
  "build_classifier",
  "build_network",
  "evaluate_split",
  "load_data",
  "make_optimizer",
  "make_schedule",
  "prepare_run",
  "run_and_evaluate",
  "run_prepared",
  "runtime",
  "train_and_evaluate",
]
