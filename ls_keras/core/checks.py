"""One validation layer for what users hand the public functions: labels, logits, probabilities.

Every public function that takes them calls these, so a mistake is a clear `UserError`
naming what was wrong instead of a plausible but wrong number. Accepted forms:

  labels         integers of shape [N] or [N, 1] (what keras.datasets returns), or one-hot
                 of shape [N, K]; class indices in [0, K).
  logits         finite floats of shape [N, K], K >= 2, that are not probabilities (rows
                 all non-negative and summing to 1: what a final softmax outputs).
  probabilities  floats in [0, 1] of shape [N, K] whose rows sum to 1 (within 1e-3).
"""

from typing import Optional

import numpy as np

from ls_keras.core.errors import UserError

PROBABILITY_TOLERANCE = 1e-3
# Reliability bins: more than this many leave most bins empty on any test split, and a
# huge count allocates gigabytes (--num_bins=1000000000 asked for 7.45 GiB).
MAX_BINS = 1000
# Bootstrap resamples: 100,000 of 10,000 examples take about 12 minutes of CPU (calibration).
MAX_RESAMPLES = 100_000
# Fewest resamples whose 2.5th and 97.5th percentiles are distinct resamples (1 / 0.025):
# with fewer, a 95% interval is the extremes of a handful of draws, or one value.
MIN_RESAMPLES = 40


def num_bins(value, name: str = "num_bins") -> int:
  """The number of equal-width confidence bins for ECE, checked to lie in 1-MAX_BINS.

  The paper (as Guo et al. 2017) uses 15 bins (paper Section 3, Figure 2); the bound keeps
  a typo from allocating gigabytes.

  Args:
    value: the bin count, anything `int()` accepts (a flag's value, an int).
    name: the flag named in the message (without the leading --).

  Returns:
    The count as a Python int in 1-MAX_BINS.

  Raises:
    UserError: a count outside 1-MAX_BINS, naming the value and the allowed range.
  """
  if not 1 <= int(value) <= MAX_BINS:
    raise UserError(
      f"--{name}={value} is not allowed: use 1-{MAX_BINS} confidence bins (the paper uses 15)."
    )
  return int(value)


def num_resamples(value, name: str = "num_resamples", allow_none: bool = False) -> int:
  """A number of bootstrap resamples, in MIN_RESAMPLES-MAX_RESAMPLES (0 too with allow_none).

  Args:
    value: the count, anything `int()` accepts (a flag's value, an int).
    name: the flag named in the message (without the leading --).
    allow_none: whether 0 (no intervals) is allowed.

  Returns:
    The count as a Python int.

  Raises:
    UserError: a count outside the range, naming the value and the allowed range.
  """
  whole = isinstance(value, (int, np.integer)) or (isinstance(value, str) and value.isdigit())
  none = allow_none and whole and int(value) == 0
  if not none and (not whole or not MIN_RESAMPLES <= int(value) <= MAX_RESAMPLES):
    raise UserError(
      f"--{name}={value} is not allowed: use {MIN_RESAMPLES}-{MAX_RESAMPLES} bootstrap "
      f"resamples (fewer give no meaningful 95% interval){'; 0 for none' if allow_none else ''}."
    )
  return int(value)


def class_indices(labels, num_classes: Optional[int] = None, name: str = "labels") -> np.ndarray:
  """Integer class indices [N] (int64) from integer [N] / [N, 1] or one-hot [N, K] labels.

  One reading of every label form keras.datasets, TFDS and users hand over, so each
  public function gives the same answer for all of them.

  Args:
    labels: array-like class indices [N] or [N, 1] (integer or bool dtypes, or floats
      holding whole numbers), or one-hot rows [N, K] of 0s and a single 1.
    num_classes: K when known: indices must be below it and one-hot rows this wide.
    name: what the labels are called in the messages.

  Returns:
    An int64 NumPy array [N] of class indices.

  Raises:
    UserError: another shape; one-hot rows whose width is not num_classes, or that are not
      one-hot; non-integer values; or indices below 0 or at least num_classes.
  """
  labels = np.asarray(labels)
  if labels.ndim == 2 and labels.shape[1] == 1:
    labels = labels[:, 0]
  if labels.ndim == 2:
    if num_classes is not None and labels.shape[1] != num_classes:
      raise UserError(
        f"{name} are one-hot with {labels.shape[1]} columns, but there are {num_classes} classes."
      )
    values = labels.astype(np.float64)
    one_hot = np.all((values == 0) | (values == 1), axis=1) & (values.sum(1) == 1)
    if not one_hot.all():
      row = int(np.argmin(one_hot))
      raise UserError(
        f"{name} of shape {labels.shape} must be one-hot (one 1 per row, zeros elsewhere); "
        f"row {row} is {values[row][:8].tolist()}. Give integer class indices of shape (N,) or "
        "one-hot rows."
      )
    return values.argmax(1).astype(np.int64)
  if labels.ndim != 1:
    raise UserError(
      f"{name} must have shape (N,), (N, 1) or one-hot (N, K); got shape {labels.shape}."
    )
  if labels.dtype.kind not in "iub":
    as_float = labels.astype(np.float64)
    if (
      labels.dtype.kind != "f"
      or not np.all(np.isfinite(as_float))
      or np.any(as_float != np.round(as_float))
    ):
      raise UserError(
        f"{name} must be integer class indices; got values of dtype {labels.dtype} that are not "
        "whole numbers."
      )
  labels = labels.astype(np.int64)
  if labels.size and labels.min() < 0:
    raise UserError(f"{name} must be class indices >= 0; got {labels.min()}.")
  if num_classes is not None and labels.size and labels.max() >= num_classes:
    raise UserError(
      f"{name} must lie in [0, {num_classes - 1}] for {num_classes} classes; got {labels.max()}."
    )
  return labels


def logits(values, name: str = "logits") -> np.ndarray:
  """Finite float64 logits [N, K], refusing probabilities handed over in their place.

  Calibration (paper Section 3) and distillation (Section 4) apply softmax to what they
  get, so a softmax output given as logits would give a plausible but wrong number.

  Args:
    values: array-like raw scores (pre-softmax model outputs) [N, K], any float dtype.
    name: what the values are called in the messages.

  Returns:
    A float64 NumPy array [N, K].

  Raises:
    UserError: not 2-D, fewer than 2 classes, NaN / infinite entries, or rows that are
      probabilities (see `looks_like_probabilities`), with the fix in the message.
  """
  values = np.asarray(values, np.float64)
  if values.ndim != 2 or values.shape[1] < 2:
    raise UserError(
      f"{name} must have shape (examples, classes) with at least 2 classes; got shape "
      f"{values.shape}."
    )
  if not np.all(np.isfinite(values)):
    bad = int(np.sum(~np.all(np.isfinite(values), axis=1)))
    raise UserError(f"{bad} rows of the {name} hold NaN or infinite values; give finite {name}.")
  if looks_like_probabilities(values):
    raise UserError(
      f"the {name} look like probabilities, not logits: all {values.shape[0]} rows are "
      f"non-negative and sum to 1 (within {PROBABILITY_TOLERANCE:g}), as a softmax outputs. "
      "Calibration and distillation on them would be wrong (softmax is applied again). Pass them "
      "as probs= where the function takes it, or give the model's pre-softmax output (its logits)."
    )
  return values


def looks_like_probabilities(values) -> bool:
  """Whether every row of [N, K] floats (K >= 2) is non-negative and sums to 1 (within 1e-3).

  Such rows are almost surely softmax outputs handed over where logits belong: genuine
  logits are real numbers with no constraint, so a whole matrix of non-negative rows that
  each sum to 1 does not arise by chance (a single row can; the test is on all of them). A
  non-negative matrix whose rows do not all sum to 1 is accepted as logits. Vectorised:
  one pass over the array.

  Args:
    values: array-like [N, K]; anything else (other ranks, K < 2, no rows) is False.

  Returns:
    True when N >= 1, K >= 2, every entry is >= 0 and every row sum is within
    PROBABILITY_TOLERANCE of 1.
  """
  values = np.asarray(values, np.float64)
  if values.ndim != 2 or values.shape[0] == 0 or values.shape[1] < 2:
    return False
  if values.min() < 0:
    return False
  return bool(np.all(np.abs(values.sum(1) - 1.0) <= PROBABILITY_TOLERANCE))


def probabilities(values, name: str = "probs") -> np.ndarray:
  """Float64 probabilities [N, K]: entries in [0, 1], rows summing to 1.

  Args:
    values: array-like softmax outputs [N, K], any float dtype.
    name: what the values are called in the messages ("probs" adds a hint to pass
      logits= for raw scores).

  Returns:
    A float64 NumPy array [N, K] of probabilities.

  Raises:
    UserError: not 2-D with K >= 2; entries outside [0, 1] or not finite (e.g. raw
      logits); or a row whose sum is more than PROBABILITY_TOLERANCE from 1 (e.g.
      per-class sigmoid scores).
  """
  values = np.asarray(values, np.float64)
  if values.ndim != 2 or values.shape[1] < 2:
    raise UserError(
      f"{name} must have shape (examples, classes) with at least 2 classes; got shape "
      f"{values.shape}."
    )
  if not np.all(np.isfinite(values)) or values.min(initial=0.0) < 0 or values.max(initial=0.0) > 1:
    finite = values[np.isfinite(values)]
    seen = f"[{finite.min():g}, {finite.max():g}]" if finite.size else "none finite"
    hint = " (pass logits= for raw scores)" if name == "probs" else ""
    raise UserError(
      f"{name} must be probabilities in [0, 1]; got values {seen}"
      f"{'' if finite.size == values.size else ', and NaN or infinite ones'}{hint}."
    )
  sums = values.sum(1)
  if values.size and np.max(np.abs(sums - 1)) > PROBABILITY_TOLERANCE:
    row = int(np.argmax(np.abs(sums - 1)))
    raise UserError(
      f"the rows of {name} must sum to 1 (softmax outputs); row {row} sums to {sums[row]:.4f}. "
      "Per-class sigmoid scores are not a distribution over classes."
    )
  return values


def predictions(labels, logits_=None, probs=None):
  """(float64 logits [N, K], int64 labels [N]) from labels and exactly one of logits or probs.

  The one entry point of the calibration functions (paper Section 3), so they take
  logits or probabilities alike. Probabilities are turned into log-probabilities (floored
  at 1e-300), which softmax maps back to them.

  Args:
    labels: class indices [N] / [N, 1] or one-hot [N, K] (see `class_indices`).
    logits_: raw scores [N, K] (see `logits`); or instead
    probs: probabilities [N, K] (see `probabilities`).

  Returns:
    (logits, labels): float64 logits [N, K] (unnormalised log-probabilities, in nats) and
    int64 class indices [N], equally many.

  Raises:
    UserError: both or neither of logits and probs; no examples; bad labels, logits or
      probabilities (see `class_indices`, `logits`, `probabilities`); or different numbers
      of labels and predictions.
  """
  if (logits_ is None) == (probs is None):
    raise UserError("give exactly one of logits or probs.")
  if len(logits_ if logits_ is not None else probs) == 0:
    raise UserError("there are no predictions: give at least one example.")
  if logits_ is not None:
    values = logits(logits_)
  else:
    values = np.log(np.clip(probabilities(probs), 1e-300, None))
  labels = class_indices(labels, values.shape[1])
  if labels.shape[0] != values.shape[0]:
    raise UserError(
      f"{values.shape[0]} logits but {labels.shape[0]} labels: they must be equally many."
    )
  return values, labels
