"""Calibration (paper Section 3): ECE, MCE, NLL, Brier, reliability bins, temperature scaling.

Pure functions of (logits, labels) first; then a streaming Keras metric. ECE follows
Naeini et al. 2015 as Guo et al. 2017 ("On Calibration of Modern Neural Networks") use it:
equal-width bins over the top-1 confidence, ECE = sum_b (n_b / n) |acc_b - conf_b|,
computed by `tfp.stats.expected_calibration_error`. Temperature scaling is Guo et al.'s.
"""

import dataclasses
from typing import Dict

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from ls_keras.core import checks, numerics
from ls_keras.core.errors import UserError

DEFAULT_BINS = 15  # The paper's (and Guo et al.'s) 15 equal-width bins.


def expected_calibration_error(
  labels, logits=None, probs=None, num_bins: int = DEFAULT_BINS
) -> float:
  """ECE = sum over confidence bins of (n_b / n) |accuracy_b - confidence_b| (paper Section 3).

  The paper's calibration measure (Table 3): equal-width bins over the top-1 confidence
  (Naeini et al. 2015; Guo et al. 2017), computed by `tfp.stats.expected_calibration_error`.

  Args:
    labels: integer class indices [N] or [N, 1] (e.g. int64), or one-hot [N, K].
    logits: float raw scores [N, K] (finite; rows that are probabilities are refused); or
      instead
    probs: float probabilities [N, K] in [0, 1], rows summing to 1.
    num_bins: equal-width bins over [0, 1] (the paper: 15).

  Returns:
    ECE as a Python float, a fraction in [0, 1] (0: perfectly calibrated).

  Raises:
    UserError: bad labels, logits or probabilities (see `ls_keras.core.checks`), or
      num_bins outside 1-1000.
  """
  checks.num_bins(num_bins)
  logits, labels = checks.predictions(labels, logits, probs)
  return float(
    tfp.stats.expected_calibration_error(
      num_bins, logits=tf.constant(logits, tf.float32), labels_true=tf.constant(labels)
    )
  )


def bin_statistics(
  labels, logits=None, probs=None, num_bins: int = DEFAULT_BINS
) -> Dict[str, np.ndarray]:
  """Per-bin count, mean confidence and accuracy: the reliability diagram's data (paper Figure 2).

  Binning is tfp's (`tf.histogram_fixed_width_bins` over [0, 1]), so these bins give
  exactly tfp's ECE; reliability diagrams as in Guo et al. 2017.

  Args:
    labels: integer class indices [N] or [N, 1] (e.g. int64), or one-hot [N, K].
    logits: float raw scores [N, K] (finite; rows that are probabilities are refused); or
      instead
    probs: float probabilities [N, K] in [0, 1], rows summing to 1.
    num_bins: equal-width bins over [0, 1] (the paper: 15).

  Returns:
    "count" (examples), "confidence" (mean top-1 probability) and "accuracy" (fraction
    correct): float64 arrays [num_bins], empty bins having confidence and accuracy NaN;
    "edges": float64 bin edges [num_bins + 1] on the probability scale [0, 1].

  Raises:
    UserError: as `expected_calibration_error`.
  """
  checks.num_bins(num_bins)
  logits, labels = checks.predictions(labels, logits, probs)
  # float32, as tfp computes its ECE, so that bins match it example for example.
  probs = tf.nn.softmax(tf.constant(logits, tf.float32), axis=-1)
  confidence = tf.reduce_max(probs, -1)
  bins = tf.histogram_fixed_width_bins(confidence, [0.0, 1.0], nbins=num_bins).numpy()
  confidence = confidence.numpy().astype(np.float64)
  correct = (probs.numpy().argmax(-1) == labels).astype(np.float64)
  count = np.bincount(bins, minlength=num_bins).astype(np.float64)
  with np.errstate(invalid="ignore", divide="ignore"):
    mean_confidence = np.bincount(bins, confidence, num_bins) / count
    accuracy = np.bincount(bins, correct, num_bins) / count
  edges = np.linspace(0.0, 1.0, num_bins + 1)
  return {"count": count, "confidence": mean_confidence, "accuracy": accuracy, "edges": edges}


def summary(labels, logits=None, probs=None, num_bins: int = DEFAULT_BINS) -> Dict[str, float]:
  """Accuracy, NLL, Brier score, ECE and MCE of one set of predictions (paper Section 3).

  The measures the paper and Guo et al. 2017 compare calibration by; MCE, the largest
  bin gap, is Naeini et al. 2015's.

  Args:
    labels: integer class indices [N] or [N, 1] (e.g. int64), or one-hot [N, K].
    logits: float raw scores [N, K] (finite; rows that are probabilities are refused); or
      instead
    probs: float probabilities [N, K] in [0, 1], rows summing to 1.
    num_bins: equal-width bins for ECE and MCE (the paper: 15).

  Returns:
    Python floats: accuracy (fraction); nll (nats per example); brier (sum over classes
    of squared probability errors, mean over examples, in [0, 2]); ece and mce (fractions:
    the weighted mean and the largest bin gap); and num_examples, an int.

  Raises:
    UserError: as `expected_calibration_error`.
  """
  logits, labels = checks.predictions(labels, logits, probs)
  log_probs = numerics.log_softmax(logits)
  probs = np.exp(log_probs)
  one_hot = np.eye(logits.shape[1])[labels]
  stats = bin_statistics(labels, logits=logits, num_bins=num_bins)
  gaps = np.abs(stats["accuracy"] - stats["confidence"])
  filled = stats["count"] > 0
  return {
    "accuracy": float(np.mean(probs.argmax(-1) == labels)),
    "nll": float(-np.mean(log_probs[np.arange(len(labels)), labels])),
    "brier": float(np.mean(np.sum((probs - one_hot) ** 2, axis=-1))),
    "ece": expected_calibration_error(labels, logits=logits, num_bins=num_bins),
    "mce": float(gaps[filled].max()) if filled.any() else 0.0,
    "num_examples": int(len(labels)),
  }


class Temperature(float):
  """A fitted temperature: a float, plus `at_bound` when the search ended at one of its bounds.

  `at_bound` is "" for an interior optimum, "min" when NLL still fell at the smallest T
  searched (the data are separated perfectly: the optimum is T -> 0, and T is clipped), and
  "max" when it still fell at the largest (the logits carry no usable signal, e.g. all
  equal: the optimum is T -> infinity). A float subclass, so every use of a temperature
  as a number (arithmetic, JSON, formatting) is unchanged.
  """

  at_bound: str

  def __new__(cls, value: float, at_bound: str = ""):
    """T (> 0) and which bound it lies at ("", "min" or "max")."""
    t = super().__new__(cls, value)
    t.at_bound = at_bound
    return t

  def bound_warning(self) -> str:
    """One sentence saying what a T at a bound means, or "" for an interior optimum."""
    if self.at_bound == "min":
      return (
        f"T = {float(self):g} is the smallest temperature searched: the fit data are "
        "classified perfectly (every example's true class has the top logit by a margin), so "
        "the negative log-likelihood keeps falling as T -> 0 and no finite temperature is "
        "optimal; fit T on held-out data the model gets some examples wrong on."
      )
    if self.at_bound == "max":
      return (
        f"T = {float(self):g} is the largest temperature searched: the logits carry no "
        "signal about the labels on the fit data (e.g. they are all equal), so the "
        "negative log-likelihood keeps falling as T grows; the model predicts no better "
        "than chance there."
      )
    return ""


def fit_temperature(
  labels, logits, *, min_temperature: float = 1e-2, max_temperature: float = 1e2
) -> Temperature:
  """The T > 0 minimising NLL(softmax(logits / T), labels): temperature scaling (paper Table 3).

  Temperature scaling is Guo et al. 2017's post-hoc calibration, the paper's baseline for
  label smoothing's (Section 3, Table 3, Figure 2).

  NLL is convex in beta = 1/T, with derivative mean(E_p[z] - z_y) increasing in beta, so
  bisection on that derivative (in log beta) finds the unique optimum from any data: no
  start point, no step size, no divergence.

  Args:
    labels: integer class indices [N] or [N, 1] (e.g. int64), or one-hot [N, K].
    logits: float raw scores [N, K] (finite; not probabilities, see `ls_keras.core.checks`).
    min_temperature: the smallest T returned (the optimum of separable data, where NLL
      keeps falling as T -> 0, lies below it).
    max_temperature: the largest T returned.

  Returns:
    T, dimensionless (> 1: the model was over-confident), as a `Temperature`: a float whose
    `at_bound` says "min" or "max" when the optimum lies beyond the search range (then T is
    that bound; `bound_warning()` says why in words), "" otherwise.

  Raises:
    UserError: bad labels or logits (see `ls_keras.core.checks`): logits that are probabilities
      (rows non-negative, summing to 1) are refused, naming the fix.
  """
  logits, labels = checks.predictions(labels, logits)
  z_true = logits[np.arange(len(labels)), labels]

  def slope(beta):  # d NLL / d beta
    p = numerics.softmax(beta * logits)
    return float(np.mean((p * logits).sum(-1) - z_true))

  lo, hi = np.log(1.0 / max_temperature), np.log(1.0 / min_temperature)
  if slope(np.exp(lo)) >= 0:
    return Temperature(max_temperature, "max")
  if slope(np.exp(hi)) <= 0:
    return Temperature(min_temperature, "min")
  for _ in range(60):  # 60 halvings of a width-9.2 interval: far below float32 resolution.
    mid = 0.5 * (lo + hi)
    if slope(np.exp(mid)) > 0:
      hi = mid
    else:
      lo = mid
  return Temperature(float(1.0 / np.exp(0.5 * (lo + hi))))


@dataclasses.dataclass(frozen=True)
class TemperatureScaling:
  """A fitted temperature and the `summary` of held-out predictions before and after it.

  What `temperature_scale` returns: the paper's Table 3 columns "baseline" and
  "temperature scaling" for one model (Guo et al. 2017).

  Attributes:
    temperature: the fitted T, dimensionless; `temperature.at_bound` ("", "min" or
      "max") says whether the fit hit a search bound.
    before: `summary` of the eval predictions at T = 1 (accuracy, nll in nats, brier,
      ece, mce, num_examples).
    after: `summary` of the eval predictions divided by T.
  """

  temperature: Temperature
  before: Dict[str, float]
  after: Dict[str, float]

  @property
  def at_bound(self) -> bool:
    """Whether T is a bound of the search rather than an optimum (see `Temperature`)."""
    return bool(getattr(self.temperature, "at_bound", ""))


def temperature_scale(
  fit_labels, fit_logits, eval_labels=None, eval_logits=None, num_bins: int = DEFAULT_BINS
) -> TemperatureScaling:
  """Fits T on (fit_labels, fit_logits); reports metrics before and after on the eval data.

  Temperature scaling as Guo et al. 2017 and the paper's Table 3: T is fitted by NLL on
  held-out (validation) data and judged on the test data.

  Args:
    fit_labels: labels of the held-out data T is fitted on: class indices [N] / [N, 1]
      (e.g. int64) or one-hot [N, K].
    fit_logits: float logits [N, K] of that data.
    eval_labels: labels of the data T is judged on, [M] / [M, 1] / [M, K] (default: the
      fit data).
    eval_logits: float logits [M, K] of that data.
    num_bins: equal-width bins for ECE (the paper: 15).

  Returns:
    A TemperatureScaling: the fitted `Temperature` and the `summary` of the eval data's
    predictions before (logits) and after (logits / T).

  Raises:
    UserError: only one of eval_labels and eval_logits; bad labels or logits in either
      pair (probabilities included: see `fit_temperature`); or num_bins outside 1-1000.
  """
  if (eval_labels is None) != (eval_logits is None):
    raise UserError(
      "give both eval_labels and eval_logits, or neither (then the fit data is used)."
    )
  t = fit_temperature(fit_labels, fit_logits)
  if eval_logits is None:
    eval_labels, eval_logits = fit_labels, fit_logits
  eval_logits, eval_labels = checks.predictions(eval_labels, eval_logits)
  return TemperatureScaling(
    t,
    summary(eval_labels, logits=eval_logits, num_bins=num_bins),
    summary(eval_labels, logits=eval_logits / t, num_bins=num_bins),
  )


def class_indices_tensor(y_true, num_classes: int) -> tf.Tensor:
  """Integer labels [N] (int64) from integer [N] / [N, 1] or one-hot [N, K] labels, in a graph.

  The graph counterpart of `ls_keras.core.checks.class_indices`, for the streaming ECE.
  The form is read from the static shape: rank 1, or a last axis of 1, means class indices
  (floating ones must be whole numbers, asserted when the graph runs).

  Args:
    y_true: a tensor (or array) of labels in one of the forms above, any numeric dtype.
    num_classes: K, the predictions' width (the static last axis of the logits).

  Returns:
    An int64 tensor [N] of class indices.

  Raises:
    UserError: a static shape that is none of those forms.
  """
  y_true = tf.convert_to_tensor(y_true)
  rank = y_true.shape.rank
  if rank == 1 or (rank == 2 and y_true.shape[-1] == 1):
    indices = tf.reshape(y_true, [-1])
    if not y_true.dtype.is_integer:
      tf.debugging.assert_equal(indices, tf.round(indices), "labels must be whole class indices")
    return tf.cast(indices, tf.int64)
  if rank == 2 and y_true.shape[-1] == num_classes:
    return tf.argmax(y_true, -1)
  raise UserError(
    f"labels of shape {y_true.shape} do not fit predictions over {num_classes} classes: give "
    "integer class indices (N,) or (N, 1), or one-hot (N, K)."
  )


@keras.saving.register_keras_serializable(package="ls_keras")
class ExpectedCalibrationError(keras.metrics.Metric):
  """Streaming ECE of logits against integer ([N], [N, 1]) or one-hot labels; equals the batch ECE.

  The paper's calibration measure (Section 3, Table 3; Naeini et al. 2015, Guo et al.
  2017) as a keras.metrics.Metric. Its state is per-bin sums (count, confidence, correct),
  which add up across batches and replicas, so the value is the same however the data
  was split. A model compiled with it loads in plain Keras once `ls_keras.calibration` is
  imported.

  Args:
    num_bins: equal-width confidence bins over [0, 1] (the paper: 15).
    name: the metric's name in Keras' logs.
    **kwargs: passed to keras.metrics.Metric (e.g. dtype).

  Raises:
    UserError: num_bins outside 1-1000 (at construction); labels whose static shape fits
      none of the label forms (in `update_state`). Bad label or logit values in a graph
      raise tf.errors.InvalidArgumentError when the step runs.
  """

  def __init__(self, num_bins: int = DEFAULT_BINS, name: str = "ece", **kwargs):
    super().__init__(name=name, **kwargs)
    checks.num_bins(num_bins)
    self.num_bins = int(num_bins)
    self.count = self.add_variable((self.num_bins,), "zeros", name="count")
    self.confidence = self.add_variable((self.num_bins,), "zeros", name="confidence")
    self.correct = self.add_variable((self.num_bins,), "zeros", name="correct")

  def update_state(self, y_true, y_pred, sample_weight=None):
    """Adds a batch's examples to the per-bin sums.

    Args:
      y_true: class indices [N] / [N, 1] (any integer dtype, or whole floats) or one-hot
        [N, K].
      y_pred: logits [N, K] (cast to float32; raw scores, not probabilities).
      sample_weight: optional per-example weights [N] (cast to float32); default 1 each.

    Raises:
      UserError: labels whose static shape does not fit the logits' K classes.
    """
    logits = tf.cast(y_pred, tf.float32)
    labels = class_indices_tensor(y_true, logits.shape[-1])
    # In a graph (model.evaluate) values cannot raise UserError; these fail the step loudly.
    num_classes = tf.cast(tf.shape(logits)[-1], tf.int64)
    tf.debugging.assert_non_negative(labels, "ECE: labels must be class indices >= 0")
    tf.debugging.assert_less(labels, num_classes, "ECE: labels must be smaller than the classes")
    tf.debugging.assert_all_finite(logits, "ECE: logits must be finite")
    probs = tf.nn.softmax(logits, axis=-1)
    confidence = tf.reduce_max(probs, -1)
    correct = tf.cast(tf.equal(tf.argmax(probs, -1), labels), tf.float32)
    weight = (
      tf.ones_like(confidence)
      if sample_weight is None
      else tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
    )
    bins = tf.histogram_fixed_width_bins(confidence, [0.0, 1.0], nbins=self.num_bins)
    self.count.assign_add(tf.math.unsorted_segment_sum(weight, bins, self.num_bins))
    self.confidence.assign_add(
      tf.math.unsorted_segment_sum(weight * confidence, bins, self.num_bins)
    )
    self.correct.assign_add(tf.math.unsorted_segment_sum(weight * correct, bins, self.num_bins))

  def result(self):
    """ECE of everything added since the last reset: a float32 scalar tensor in [0, 1]."""
    total = tf.maximum(tf.reduce_sum(self.count), 1.0)
    return tf.reduce_sum(tf.abs(self.correct - self.confidence)) / total

  def get_config(self):
    """Keras serialisation: the number of bins."""
    return {**super().get_config(), "num_bins": self.num_bins}
