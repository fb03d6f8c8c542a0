"""Calibration (paper Section 3): ECE, MCE, NLL, Brier, reliability bins, temperature scaling.

Pure functions of (logits, labels) first; then a streaming Keras metric. ECE follows
Naeini et al. 2015 as Guo et al. 2017 ("On Calibration of Modern Neural Networks") use it:
equal-width bins over the top-1 confidence, ECE = sum_b (n_b / n) |acc_b - conf_b|,
computed by `tfp.stats.expected_calibration_error`. Temperature scaling is Guo et al.'s.
Beside ECE-15, the measures later work reports (adaptive ECE, classwise ECE, RMS
calibration error), each with a bootstrap interval over the examples (`bootstrap_intervals`).
"""

import dataclasses
import functools
from typing import Dict, Sequence

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
  confidence, correct = _top1(labels[None], logits[None])
  count, confidence_sum, correct_sum = (
    x[0] for x in _bin_sums(_equal_width_bins(confidence, num_bins), num_bins, confidence, correct)
  )
  with np.errstate(invalid="ignore", divide="ignore"):
    mean_confidence = confidence_sum / count
    accuracy = correct_sum / count
  edges = np.linspace(0.0, 1.0, num_bins + 1)
  return {"count": count, "confidence": mean_confidence, "accuracy": accuracy, "edges": edges}


def _top1(labels: np.ndarray, logits: np.ndarray):
  """Top-1 confidence (float32) and correctness (bool), both [..., N], of logits [..., N, K].

  From a float32 softmax, as `tfp.stats.expected_calibration_error` computes them, so that
  binned measures put every example in tfp's bin.
  """
  probs = tf.nn.softmax(tf.constant(logits, tf.float32), axis=-1).numpy()
  return probs.max(-1), probs.argmax(-1) == labels


def _equal_width_bins(values: np.ndarray, num_bins: int) -> np.ndarray:
  """Indices in [0, num_bins) of float32 values in [0, 1], any shape: tfp's equal-width bins."""
  return tf.histogram_fixed_width_bins(values, [0.0, 1.0], nbins=num_bins).numpy()


def _bin_sums(bins: np.ndarray, num_bins: int, *values: np.ndarray):
  """Per row of bins [G, N]: the count [G, num_bins] and the sum of each of `values` [G, N]."""
  groups = bins.shape[0]
  ids = (bins + num_bins * np.arange(groups)[:, None]).ravel()
  size = groups * num_bins
  sums = [np.bincount(ids, minlength=size)] + [
    np.bincount(ids, np.ravel(v).astype(np.float64), minlength=size) for v in values
  ]
  return tuple(x.reshape(groups, num_bins).astype(np.float64) for x in sums)


# Each measure is a statistic of per-example features: `features(labels [N], logits [N, K],
# num_bins)` gives arrays whose first axis is the example; `statistic(features with a
# leading resample axis [R, N, ...], num_bins)` gives float64 [R]. The data itself is the
# one resample R = 1 of every example once; `bootstrap_intervals` gathers the features of
# its resamples, so a resample is measured exactly as the data is, without recomputing a
# softmax or a bin.


def _top1_features(labels, logits, num_bins):
  """Equal-width bin [N] (tfp's) and correct - confidence [N] of each top-1 prediction."""
  confidence, correct = _top1(labels, logits)
  return _equal_width_bins(confidence, num_bins), correct - confidence.astype(np.float64)


def _ece(bins, gaps, num_bins):
  _, gap = _bin_sums(bins, num_bins, gaps)
  return np.abs(gap).sum(-1) / bins.shape[-1]


def _rms_calibration_error(bins, gaps, num_bins):
  count, gap = _bin_sums(bins, num_bins, gaps)
  # sum_b (n_b / n) (gap_b / n_b)^2 = sum_b gap_b^2 / (n_b n); empty bins add 0.
  return np.sqrt((gap**2 / np.maximum(count, 1.0)).sum(-1) / bins.shape[-1])


def _classwise_features(labels, logits, num_bins):
  """Per example and class k: the bin (k, b) of p_k, k * num_bins + b [N, K], and 1[y = k] - p_k."""
  probs = tf.nn.softmax(tf.constant(logits, tf.float32), axis=-1).numpy()
  classes = np.arange(probs.shape[1])
  bins = _equal_width_bins(probs, num_bins) + num_bins * classes
  return bins, (labels[:, None] == classes) - probs.astype(np.float64)


def _classwise_ece(bins, gaps, num_bins):
  rows, n, k = bins.shape
  size = k * num_bins
  ids = (bins + size * np.arange(rows)[:, None, None]).ravel()
  gap = np.bincount(ids, gaps.ravel(), minlength=rows * size).reshape(rows, size)
  return np.abs(gap).sum(-1) / (n * k)  # The mean over classes of each class's ECE.


def _adaptive_features(labels, logits, num_bins):
  """Per example: correct [N] and the top-1 log-probability [N] (float64: near 1 stay apart)."""
  del num_bins  # The quantile edges depend on the resample.
  log_probs = numerics.log_softmax(logits)
  return log_probs.argmax(-1) == labels, log_probs.max(-1)


def _adaptive_ece(hits, top_log_probs, num_bins):
  return _tfp_adaptive_ece(num_bins)(hits.T, top_log_probs.T).numpy()


@functools.lru_cache(maxsize=None)
def _tfp_adaptive_ece(num_bins: int):
  """The equal-mass ECE (tfp's) of each column of hits and log-probabilities [N, R]: [R].

  A tf.function, traced once per num_bins for every N and R: eagerly, tfp rebuilds its
  `tf.vectorized_map` on every call (about 0.1 s, most of a bootstrap's time).
  """

  def ece(hits, top_log_probs):
    return tfp.stats.expected_calibration_error_quantiles(
      hit=hits,
      pred_log_prob=top_log_probs,
      num_buckets=num_bins,
      axis=0,
      log_space_buckets=True,  # The same buckets (quantiles commute with log), without exp().
    )[0]

  signature = [tf.TensorSpec([None, None], tf.bool), tf.TensorSpec([None, None], tf.float64)]
  return tf.function(ece, input_signature=signature)


_MEASURES = {  # name: (features, statistic)
  "ece": (_top1_features, _ece),
  "adaptive_ece": (_adaptive_features, _adaptive_ece),
  "classwise_ece": (_classwise_features, _classwise_ece),
  "rms_ce": (_top1_features, _rms_calibration_error),
}
SUITE = tuple(_MEASURES)  # The calibration measures `measures` and `bootstrap_intervals` give.
LATER = SUITE[1:]  # Those later work reports beside the paper's ECE-15.
NAMES = {
  "ece": "ECE-15",
  "adaptive_ece": "adaptive ECE",
  "classwise_ece": "classwise ECE",
  "rms_ce": "RMS calibration error",
}


def _on_data(name: str, labels: np.ndarray, logits: np.ndarray, num_bins: int) -> float:
  """Measure `name` of checked labels [N] and logits [N, K]."""
  features, statistic = _MEASURES[name]
  return float(statistic(*(f[None] for f in features(labels, logits, num_bins)), num_bins)[0])


def _measure(name: str, labels, logits, probs, num_bins: int) -> float:
  checks.num_bins(num_bins)
  logits, labels = checks.predictions(labels, logits, probs)
  return _on_data(name, labels, logits, num_bins)


def adaptive_calibration_error(
  labels, logits=None, probs=None, num_bins: int = DEFAULT_BINS
) -> float:
  """Adaptive (equal-mass) ECE: ECE over bins holding equally many top-1 confidences.

  ECE = sum_b (n_b / n) |acc_b - conf_b| as `expected_calibration_error`, but the bin edges
  are the num_bins-quantiles of the top-1 confidences, so every bin holds about n / num_bins
  examples (Nguyen & O'Connor 2015; "adaptive ECE" of Mukhoti et al. 2020; the equal-mass
  binning of Nixon et al. 2019, "Measuring Calibration in Deep Learning"). Equal-width bins
  of a confident model leave most examples in the last bin; these do not. Computed by
  `tfp.stats.expected_calibration_error_quantiles` (edges: its nearest-rank quantiles, taken
  on float64 log-probabilities, so confidences within float32 rounding of 1 stay apart;
  tied confidences share a bin, which may then hold more than n / num_bins).

  Args:
    labels: integer class indices [N] or [N, 1] (e.g. int64), or one-hot [N, K].
    logits: float raw scores [N, K] (finite; rows that are probabilities are refused); or
      instead
    probs: float probabilities [N, K] in [0, 1], rows summing to 1.
    num_bins: equal-mass bins (default 15, as ECE-15).

  Returns:
    Adaptive ECE as a Python float, a fraction in [0, 1] (0: perfectly calibrated).

  Raises:
    UserError: as `expected_calibration_error`.
  """
  return _measure("adaptive_ece", labels, logits, probs, num_bins)


def classwise_calibration_error(
  labels, logits=None, probs=None, num_bins: int = DEFAULT_BINS
) -> float:
  """Classwise ECE: the equal-width ECE of each class's probability, averaged over classes.

  Kull et al. 2019, "Beyond temperature scaling: Obtaining well-calibrated multiclass
  probabilities with Dirichlet calibration" (NeurIPS), Section 2:
  classwise-ECE = (1 / K) sum_k sum_b (n_{k,b} / n) |freq_{k,b} - conf_{k,b}|, where bin
  (k, b) holds the examples whose p_k lies in equal-width bin b of [0, 1], freq_{k,b} is
  the fraction of them labelled k and conf_{k,b} their mean p_k. Unlike top-1 ECE it sees
  every class's probability, not only the predicted one's; an excess top-1 confidence g
  shows up as about 2 g / K (once in the top class's bins, once spread over the others').
  Bins are tfp's (`tf.histogram_fixed_width_bins` on float32 probabilities), as for ECE.

  Args:
    labels: integer class indices [N] or [N, 1] (e.g. int64), or one-hot [N, K].
    logits: float raw scores [N, K] (finite; rows that are probabilities are refused); or
      instead
    probs: float probabilities [N, K] in [0, 1], rows summing to 1.
    num_bins: equal-width bins over [0, 1] per class (default 15).

  Returns:
    Classwise ECE as a Python float, a fraction in [0, 1] (0: every class calibrated).

  Raises:
    UserError: as `expected_calibration_error`.
  """
  return _measure("classwise_ece", labels, logits, probs, num_bins)


def rms_calibration_error(labels, logits=None, probs=None, num_bins: int = DEFAULT_BINS) -> float:
  """RMS calibration error: sqrt(sum_b (n_b / n) (acc_b - conf_b)^2) over ECE's top-1 bins.

  The root-mean-square counterpart of ECE (Hendrycks et al. 2019, "Deep Anomaly Detection
  with Outlier Exposure", and Nixon et al. 2019, "Measuring Calibration in Deep Learning"),
  here over the same equal-width top-1 bins as `expected_calibration_error` (tfp's), so by
  Jensen's inequality it is never below the ECE of the same bins, and it weighs large gaps
  more. Hendrycks et al.'s code bins by mass instead (consecutive runs of 100 sorted
  confidences), so its values are not theirs.

  Args:
    labels: integer class indices [N] or [N, 1] (e.g. int64), or one-hot [N, K].
    logits: float raw scores [N, K] (finite; rows that are probabilities are refused); or
      instead
    probs: float probabilities [N, K] in [0, 1], rows summing to 1.
    num_bins: equal-width bins over [0, 1] (the paper's ECE: 15).

  Returns:
    RMS calibration error as a Python float, a fraction in [0, 1] (0: perfectly calibrated).

  Raises:
    UserError: as `expected_calibration_error`.
  """
  return _measure("rms_ce", labels, logits, probs, num_bins)


def measures(
  labels, logits=None, probs=None, num_bins: int = DEFAULT_BINS, names: Sequence[str] = LATER
) -> Dict[str, float]:
  """Calibration measures of one set of predictions: by default those beside ECE-15 in later work.

  Adaptive ECE, classwise ECE and RMS calibration error (see `adaptive_calibration_error`,
  `classwise_calibration_error`, `rms_calibration_error`), the companions of `summary`'s
  ECE and MCE; "ece" (from its bins, equal to `expected_calibration_error`) on request.
  Apart from `summary` because training reports `summary` every epoch and needs none of
  these. Intervals: `bootstrap_intervals`.

  Args:
    labels: integer class indices [N] or [N, 1] (e.g. int64), or one-hot [N, K].
    logits: float raw scores [N, K] (finite; rows that are probabilities are refused); or
      instead
    probs: float probabilities [N, K] in [0, 1], rows summing to 1.
    num_bins: every measure's bins (default 15).
    names: names from SUITE (default LATER: adaptive_ece, classwise_ece, rms_ce).

  Returns:
    {name: the measure as a Python float, a fraction in [0, 1]}, in the order of `names`.

  Raises:
    UserError: as `expected_calibration_error`, or an unknown name.
  """
  _check_names(names)
  checks.num_bins(num_bins)
  logits, labels = checks.predictions(labels, logits, probs)
  return {m: _on_data(m, labels, logits, num_bins) for m in names}


def _check_names(names: Sequence[str]) -> None:
  if isinstance(names, str):
    raise UserError(f"names={names!r}: give a sequence of names, e.g. ({names!r},).")
  if not names or any(m not in _MEASURES for m in names):
    raise UserError(f"measures {list(names)}: choose one or more of {', '.join(SUITE)}.")


DEFAULT_RESAMPLES = 200  # Enough for the 95% bounds' second digit; seconds on 10,000 examples.
DEFAULT_CONFIDENCE = 0.95
_GATHERED = 1 << 21  # Values gathered per bootstrap step: 16 MiB of float64 or int64.


@dataclasses.dataclass(frozen=True)
class Interval:
  """A measure of the data (`estimate`) and its bootstrap percentile interval [low, high].

  Attributes:
    estimate: the measure on the data itself.
    low, high: the (1 - confidence) / 2 and (1 + confidence) / 2 quantiles of the measure
      over the resamples.
    confidence: the nominal coverage, e.g. 0.95.
    num_resamples: the resamples the quantiles come from.
  """

  estimate: float
  low: float
  high: float
  confidence: float
  num_resamples: int

  def format(self, digits: int = 4) -> str:
    """'estimate [low, high]' with `digits` decimals."""
    return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def resample_indices(num_examples: int, rows: Sequence[int], seed: int) -> np.ndarray:
  """Bootstrap resamples' example indices [len(rows), num_examples] (int64), drawn with replacement.

  Resample r is `np.random.default_rng([seed, r]).integers(0, num_examples, num_examples)`:
  each row depends only on (seed, r), so resamples are reproducible however they are
  batched, and a test can redraw any of them.
  """
  return np.stack(
    [np.random.default_rng([seed, r]).integers(0, num_examples, num_examples) for r in rows]
  )


def bootstrap_intervals(
  labels,
  logits=None,
  probs=None,
  *,
  names: Sequence[str] = SUITE,
  num_bins: int = DEFAULT_BINS,
  num_resamples: int = DEFAULT_RESAMPLES,
  confidence: float = DEFAULT_CONFIDENCE,
  seed: int = 0,
) -> Dict[str, Interval]:
  """Bootstrap percentile intervals of calibration measures over the examples.

  Resamples the N examples with replacement `num_resamples` times (Efron & Tibshirani
  1993; see `resample_indices`), measures every resample with the very function that
  measures the data (the resamples batched, so that numpy and TensorFlow work on many at
  once), and takes the percentile interval of the resampled values. Every measure sees the
  same resamples. The interval is the sampling variability of the measure over test
  examples (the model, and a fitted temperature, held fixed). Binned calibration errors
  are biased upwards (Kumar et al. 2019, "Verified Uncertainty Calibration"), and a
  resample's more so: near 0 the interval can lie above the estimate.

  Args:
    labels: integer class indices [N] or [N, 1] (e.g. int64), or one-hot [N, K].
    logits: float raw scores [N, K] (finite; rows that are probabilities are refused); or
      instead
    probs: float probabilities [N, K] in [0, 1], rows summing to 1.
    names: the measures, from SUITE: "ece" (`expected_calibration_error`, here from its
      bins), "adaptive_ece", "classwise_ece", "rms_ce" (see `measures`).
    num_bins: the measures' bins (default 15).
    num_resamples: resamples, 1-`checks.MAX_RESAMPLES` (default DEFAULT_RESAMPLES).
    confidence: the interval's nominal coverage, in (0, 1) (default 0.95).
    seed: a non-negative integer; the same seed gives the same resamples.

  Returns:
    {name: `Interval`}, in the order of `names`.

  Raises:
    UserError: bad labels, logits or probabilities (see `ls_keras.core.checks`); an unknown
      measure; num_bins outside 1-1000, num_resamples outside 1-100000, confidence
      outside (0, 1) or a negative seed.
  """
  _check_names(names)
  num_resamples = checks.num_resamples(num_resamples)
  if not 0.0 < confidence < 1.0:
    raise UserError(f"confidence={confidence} must lie in (0, 1), e.g. 0.95 for a 95% interval.")
  if not isinstance(seed, (int, np.integer)) or seed < 0:
    raise UserError(f"seed={seed!r} must be a non-negative integer.")
  checks.num_bins(num_bins)
  logits, labels = checks.predictions(labels, logits, probs)
  n, k = logits.shape
  tail = (1.0 - confidence) / 2.0
  out = {}
  for m in names:
    features, statistic = _MEASURES[m]
    data = features(labels, logits, num_bins)
    # Resamples per step: a bounded number of gathered values (tfp's adaptive ECE compares
    # every example with every bin edge).
    width = {"classwise_ece": k, "adaptive_ece": num_bins + 1}.get(m, 1)
    step = max(1, _GATHERED // (n * width))
    values = []
    for start in range(0, num_resamples, step):
      index = resample_indices(n, range(start, min(start + step, num_resamples)), seed)
      values.append(statistic(*(f[index] for f in data), num_bins))
    values = np.concatenate(values)
    low, high = np.quantile(values, [tail, 1.0 - tail])
    estimate = float(statistic(*(f[None] for f in data), num_bins)[0])
    out[m] = Interval(estimate, float(low), float(high), confidence, num_resamples)
  return out


def summary(labels, logits=None, probs=None, num_bins: int = DEFAULT_BINS) -> Dict[str, float]:
  """Accuracy, NLL, Brier score, ECE and MCE of one set of predictions (paper Section 3).

  The measures the paper and Guo et al. 2017 compare calibration by; MCE, the largest
  bin gap, is Naeini et al. 2015's. Later work's measures beside ECE: `measures`.

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
