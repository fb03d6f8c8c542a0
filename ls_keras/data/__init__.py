"""Input pipelines: TFDS data sets, image folders and arrays, split as in the paper, augmented."""

from ls_keras.core.datasets import SPECS, DatasetSpec
from ls_keras.data.pipeline import (
  Splits,
  augment_batch,
  class_examples,
  eval_batches,
  load_splits,
  load_run_splits,
  resolve,
  split_names,
  train_batches,
)

__all__ = [
  "SPECS",
  "DatasetSpec",
  "Splits",
  "augment_batch",
  "class_examples",
  "eval_batches",
  "load_splits",
  "load_run_splits",
  "resolve",
  "split_names",
  "train_batches",
]
