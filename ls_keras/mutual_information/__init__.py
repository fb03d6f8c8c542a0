"""Mutual information between example index and logits (paper Figure 6); `report` for runs."""

from ls_keras.mutual_information.callback import (
  LogitDifferences,
  MutualInformationCallback,
  recompute_from_checkpoints,
)
from ls_keras.mutual_information.estimator import check_settings, mutual_information

__all__ = [
  "LogitDifferences",
  "MutualInformationCallback",
  "check_settings",
  "mutual_information",
  "recompute_from_checkpoints",
]
