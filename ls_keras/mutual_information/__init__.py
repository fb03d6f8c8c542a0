"""Mutual information between example index and logits (paper Figure 6); `report` for runs."""

from ls_keras.mutual_information.callback import (
  LogitDifferences,
  MutualInformationCallback,
  callback_for_run,
  recompute_from_checkpoints,
)
from ls_keras.mutual_information.estimator import check_settings, mutual_information

__all__ = [
  "LogitDifferences",
  "MutualInformationCallback",
  "callback_for_run",
  "check_settings",
  "mutual_information",
  "recompute_from_checkpoints",
]
