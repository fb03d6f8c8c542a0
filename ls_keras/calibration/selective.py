"""Selective classification: risk-coverage curves, AURC, E-AURC, and post-hoc confidence scores.

A selective classifier predicts the top-1 class of the examples whose confidence score is at
least a threshold and abstains on the rest (El-Yaniv & Wiener 2010; Geifman & El-Yaniv 2017,
"Selective Classification for Deep Neural Networks"). Coverage is the fraction accepted and
the selective risk the error rate (0/1 loss of the top-1 prediction) among them; sweeping the
threshold gives the risk-coverage curve, and AURC is its area (lower is better). E-AURC
subtracts the AURC of the oracle ranking (every correct prediction before every error) at the
same error rate, leaving what the ranking itself loses (Geifman, Uziel & El-Yaniv 2019,
"Bias-Reduced Uncertainty Estimation for Deep Neural Classifiers", ICLR).

Xia et al. 2025 ("Towards Understanding Why Label Smoothing Degrades Selective
Classification and How to Fix It", ICLR, arXiv 2403.14715) find that label smoothing worsens
the AURC of the maximum softmax probability (MSP) and that normalising the logits after
training recovers it: MaxLogit-pNorm (Cattelan & Silva 2024, "How to Fix a Broken Confidence
Estimator", UAI, arXiv 2305.15508) centres each row of logits, divides it by its p-norm and
takes the maximum, with p chosen on held-out data to minimise AURC. Both papers' reference
code search p on a grid (Xia et al. 1-10, our `P_GRID`; Cattelan & Silva 0-8, where 0 means
no normalisation); so does `fit_pnorm`, with Xia et al.'s grid by default.

Pure NumPy (float64) on (logits, labels) validated by `ls_keras.core.checks`; temperature
scaling comes from `ls_keras.calibration.metrics.fit_temperature`.
"""

import dataclasses
import math
from typing import Dict, Optional, Sequence

import numpy as np

from ls_keras.calibration.metrics import Temperature, fit_temperature
from ls_keras.core import checks
from ls_keras.core.errors import UserError

COVERAGE = 0.8  # Selective risk is reported at this coverage (results column ..._risk80).
RISK = 0.05  # Coverage is reported at this selective risk (results column ..._cov5).
P_GRID = tuple(range(1, 11))  # The p searched by Xia et al.'s reference code (minimum AURC).
# The confidence scores compared: MSP, MSP after temperature scaling, MaxLogit-pNorm.
METHODS = ("msp", "ts", "pnorm")


def msp_score(logits, temperature: float = 1.0) -> np.ndarray:
  """The maximum softmax probability of logits / T as a confidence score, on the log scale.

  log MSP = -log(1 + sum over the other classes of exp(z_k - z_max)), computed with log1p
  so that confident rows keep distinct scores where MSP itself rounds to 1.0 in float64;
  being a monotone function of MSP, it ranks examples exactly as MSP does (the baseline
  score of Hendrycks & Gimpel 2017 and of Xia et al. 2025). With T != 1 it is the MSP
  after temperature scaling (Guo et al. 2017), which can rank examples differently.

  Args:
    logits: float raw scores [N, K] (finite; not probabilities).
    temperature: T > 0, dimensionless; the logits are divided by it.

  Returns:
    float64 [N], log MSP in nats (<= 0; higher is more confident).

  Raises:
    UserError: bad logits (see `ls_keras.core.checks.logits`) or a T that is not a
      finite number > 0.
  """
  logits = checks.logits(logits)
  if not (math.isfinite(float(temperature)) and float(temperature) > 0):
    raise UserError(f"temperature={temperature} must be a finite number > 0.")
  z = logits / float(temperature)
  top = z.argmax(-1)
  rest = np.exp(z - z[np.arange(len(z)), top][:, None])
  rest[np.arange(len(z)), top] = 0.0
  return -np.log1p(rest.sum(-1))


def max_logit_pnorm(logits, p: float) -> np.ndarray:
  """MaxLogit-pNorm: max_k (z_k - mean(z)) / ||z - mean(z)||_p, per row (Cattelan & Silva 2024).

  The post-hoc logit normalisation Xia et al. 2025 (Section 5) use to recover the
  selective classification label smoothing loses. Unchanged by adding a constant to a row
  (centring) and by scaling a row by a positive factor (normalising), so only the shape
  of each row's logits, not its magnitude, ranks examples. A row whose logits are all
  equal scores 0 (its centred logits are all zero). Rows are rescaled by their largest
  absolute centred logit before powers are taken, so no p overflows.

  Args:
    logits: float raw scores [N, K] (finite; not probabilities).
    p: the norm's order, > 0 (p >= 1 a norm; `math.inf` the max norm). Xia et al. tune
      it on validation data (see `fit_pnorm`).

  Returns:
    float64 [N] scores, dimensionless, in [0, 1] for p >= 1 (higher is more confident).

  Raises:
    UserError: bad logits (see `ls_keras.core.checks.logits`) or p not > 0.
  """
  logits = checks.logits(logits)
  p = float(p)
  if not p > 0:
    raise UserError(f"p={p} must be > 0 (a p-norm's order; e.g. 2, or math.inf).")
  centred = logits - logits.mean(-1, keepdims=True)
  scale = np.abs(centred).max(-1, keepdims=True)
  flat = scale[:, 0] == 0
  u = centred / np.where(flat[:, None], 1.0, scale)  # Largest |u| is 1 (0 for flat rows).
  norm = np.ones(len(u)) if math.isinf(p) else (np.abs(u) ** p).sum(-1) ** (1.0 / p)
  return np.where(flat, 0.0, u.max(-1) / np.where(flat, 1.0, norm))


def risk_coverage(labels, logits=None, probs=None, scores=None) -> Dict[str, np.ndarray]:
  """The risk-coverage curve of the top-1 predictions ranked by a confidence score.

  Accepting the k most confident of N examples gives coverage k / N and selective risk =
  their error rate (Geifman & El-Yaniv 2017). Examples with equal scores cannot be told
  apart by any threshold: within a group of ties, accepted only in part, they are taken in
  random order, and the curve holds the expected number of errors (the group's errors
  spread evenly over its places), so the curve does not depend on how the data happened
  to be ordered.

  Args:
    labels: integer class indices [N] or [N, 1] (e.g. int64), or one-hot [N, K].
    logits: float raw scores [N, K] (finite; not probabilities); or instead
    probs: float probabilities [N, K], rows summing to 1.
    scores: float confidence scores [N] (higher: more confident; finite). Default: the
      MSP (`msp_score`).

  Returns:
    float64 arrays [N]: "coverage" (k / N for k = 1..N), "risk" (selective risk at that
    coverage, a fraction in [0, 1]) and "threshold" (the k-th highest score).

  Raises:
    UserError: bad labels, logits or probabilities (see `ls_keras.core.checks`), or scores
      that are not N finite numbers.
  """
  errors, scores = _errors_and_scores(labels, logits, probs, scores)
  risk = _risk(errors, scores)
  n = len(risk)
  return {
    "coverage": np.arange(1, n + 1) / n,
    "risk": risk,
    "threshold": np.sort(scores)[::-1],
  }


def summary(
  labels, logits=None, probs=None, scores=None, coverage: float = COVERAGE, risk: float = RISK
) -> Dict[str, float]:
  """AURC, E-AURC, risk at a coverage and coverage at a risk of one confidence score.

  AURC is the mean selective risk over the N coverages k / N (Geifman et al. 2019); the
  trapezoid rule from (0, 0) used by Xia et al.'s and Cattelan & Silva's code gives
  AURC - error / (2N), the same to within 1 / (2N). E-AURC is AURC minus the AURC of the
  oracle ranking with the same errors (every correct prediction first): for r errors of N,
  oracle AURC = r / N - (N - r) / N * (H_N - H_{N-r}) (H: harmonic numbers), about
  e + (1 - e) ln(1 - e) at error rate e (their equation for large N).

  Args:
    labels: integer class indices [N] or [N, 1] (e.g. int64), or one-hot [N, K].
    logits: float raw scores [N, K] (finite; not probabilities); or instead
    probs: float probabilities [N, K], rows summing to 1.
    scores: float confidence scores [N] (higher: more confident; finite). Default: the
      MSP (`msp_score`).
    coverage: the coverage, in (0, 1], at which the selective risk is reported (default
      COVERAGE, 0.8).
    risk: the selective risk, in [0, 1], at which the coverage is reported (default RISK,
      0.05).

  Returns:
    Python floats, fractions in [0, 1]: "error" (the risk at full coverage), "aurc",
    "eaurc", "risk_at_coverage" (the selective risk when the k = ceil(coverage * N) most
    confident examples are accepted) and "coverage_at_risk" (the largest coverage k / N
    whose selective risk is at most `risk`; 0.0 when none is: only rejecting everything
    meets it); and "num_examples", an int.

  Raises:
    UserError: as `risk_coverage`, or coverage outside (0, 1] or risk outside [0, 1].
  """
  if not (0 < coverage <= 1 and 0 <= risk <= 1):
    raise UserError(f"coverage={coverage} must lie in (0, 1] and risk={risk} in [0, 1].")
  errors, scores = _errors_and_scores(labels, logits, probs, scores)
  curve = _risk(errors, scores)
  oracle = _risk(errors, (~errors).astype(np.float64))
  n = len(curve)
  within = np.flatnonzero(curve <= risk)
  return {
    "error": float(curve[-1]),
    "aurc": float(curve.mean()),
    "eaurc": float(curve.mean() - oracle.mean()),
    "risk_at_coverage": float(curve[_covered(coverage, n) - 1]),
    "coverage_at_risk": float((within[-1] + 1) / n) if len(within) else 0.0,
    "num_examples": int(n),
  }


def aurc(labels, logits=None, probs=None, scores=None) -> float:
  """The area under the risk-coverage curve (see `summary`): a fraction, lower is better."""
  return summary(labels, logits, probs, scores)["aurc"]


def fit_pnorm(labels, logits, grid: Sequence[float] = P_GRID) -> float:
  """The p of `grid` whose MaxLogit-pNorm has the lowest AURC on (labels, logits).

  Xia et al. 2025 (Section 5, and their reference code) and Cattelan & Silva 2024 choose p
  by this grid search on held-out data; pass validation logits, and judge on test ones.
  Ties go to the smallest p in grid order.

  Args:
    labels: integer class indices [N] / [N, 1] (e.g. int64) or one-hot [N, K].
    logits: float logits [N, K] of held-out (validation) data.
    grid: the orders tried, each > 0 (default P_GRID: 1, ..., 10).

  Returns:
    The chosen p (an element of grid).

  Raises:
    UserError: bad labels or logits, an empty grid, or an order not > 0.
  """
  if len(grid) == 0:
    raise UserError("give at least one p to try (e.g. 1, ..., 10).")
  logits, labels = checks.predictions(labels, logits)
  errors = logits.argmax(-1) != labels
  values = [_risk(errors, max_logit_pnorm(logits, p)).mean() for p in grid]
  return grid[int(np.argmin(values))]


@dataclasses.dataclass(frozen=True)
class SelectiveComparison:
  """The three confidence scores of one model on held-out data, with T and p fitted elsewhere.

  What `compare` returns: Xia et al. 2025's comparison (MSP, temperature-scaled MSP,
  MaxLogit-pNorm) for one model.

  Attributes:
    temperature: T fitted by NLL on the fit data (`fit_temperature`), dimensionless.
    p: the MaxLogit-pNorm order fitted by AURC on the fit data (`fit_pnorm`).
    summaries: {method: `summary` of the eval data} for each of METHODS ("msp", "ts",
      "pnorm").
    scores: {method: float64 [M] scores of the eval data} (for risk-coverage curves).
  """

  temperature: Temperature
  p: float
  summaries: Dict[str, Dict[str, float]]
  scores: Dict[str, np.ndarray]


def compare(
  fit_labels, fit_logits, eval_labels, eval_logits, p: Optional[float] = None
) -> SelectiveComparison:
  """MSP, temperature-scaled MSP and MaxLogit-pNorm of one model: T and p fitted, then judged.

  T (by NLL, Guo et al. 2017) and p (by AURC, Xia et al. 2025) are fitted on the fit
  (validation) data and every number is computed on the eval (test) data.

  Args:
    fit_labels: labels of the held-out data T and p are fitted on: [N] / [N, 1] / [N, K].
    fit_logits: float logits [N, K] of that data.
    eval_labels: labels of the data the scores are judged on: [M] / [M, 1] / [M, K].
    eval_logits: float logits [M, K] of that data (the same K).
    p: a fixed order instead of `fit_pnorm`'s choice.

  Returns:
    A SelectiveComparison.

  Raises:
    UserError: bad labels or logits in either pair, or different class counts.
  """
  fit_logits, fit_labels = checks.predictions(fit_labels, fit_logits)
  eval_logits, eval_labels = checks.predictions(eval_labels, eval_logits)
  if fit_logits.shape[1] != eval_logits.shape[1]:
    raise UserError(
      f"the fit logits have {fit_logits.shape[1]} classes but the eval logits "
      f"{eval_logits.shape[1]}: both must come from the same model."
    )
  temperature = fit_temperature(fit_labels, fit_logits)
  p = fit_pnorm(fit_labels, fit_logits) if p is None else p
  scores = {
    "msp": msp_score(eval_logits),
    "ts": msp_score(eval_logits, temperature),
    "pnorm": max_logit_pnorm(eval_logits, p),
  }
  summaries = {m: summary(eval_labels, eval_logits, scores=s) for m, s in scores.items()}
  return SelectiveComparison(temperature, p, summaries, scores)


def _errors_and_scores(labels, logits, probs, scores):
  """(bool errors [N] of the top-1 predictions, float64 scores [N]), validated."""
  logits, labels = checks.predictions(labels, logits, probs)
  errors = logits.argmax(-1) != labels
  if scores is None:
    return errors, msp_score(logits)
  try:
    scores = np.asarray(scores, np.float64)
  except (TypeError, ValueError) as e:
    raise UserError(f"scores must be numbers, one per example; got {e}.") from e
  if scores.shape != errors.shape or not np.all(np.isfinite(scores)):
    raise UserError(
      f"scores must be {len(errors)} finite numbers, one per example (shape ({len(errors)},)); "
      f"got shape {scores.shape}{'' if np.all(np.isfinite(scores)) else ' with NaN or infinity'}."
    )
  return errors, scores


def _risk(errors: np.ndarray, scores: np.ndarray) -> np.ndarray:
  """Selective risk [N] at coverages 1/N..1, ties accepted in random order (in expectation)."""
  n = len(errors)
  order = np.argsort(-scores, kind="stable")
  ranked = scores[order]
  cumulative = np.r_[0.0, np.cumsum(errors[order])]
  starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])  # First place of each tie.
  ends = np.r_[starts[1:], n]
  group = np.repeat(np.arange(len(starts)), ends - starts)
  place = np.arange(1, n + 1) - starts[group]  # 1-based place inside its tie group.
  before, inside = cumulative[starts], cumulative[ends] - cumulative[starts]
  expected = before[group] + place * inside[group] / (ends - starts)[group]
  return expected / np.arange(1, n + 1)


def _covered(coverage: float, n: int) -> int:
  """The number of examples accepted at `coverage`: the smallest k with k / n >= coverage."""
  return max(1, min(n, int(math.ceil(coverage * n - 1e-9))))
