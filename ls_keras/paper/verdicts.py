"""Verdicts from statistics: an effect, its 95% confidence interval across seeds, and a rule.

Each rule is a small pure function of per-seed numbers that returns a `Verdict`: held,
did not hold, or inconclusive, with the rule itself in words so the report can print it
beside the verdict. Intervals are Student-t intervals over seeds (paired where the two
sides share a seed); ratios are judged on the log scale. With fewer than MIN_SEEDS seeds
every rule says inconclusive.
"""

import dataclasses
import math
from typing import Sequence

import numpy as np

HELD, NOT_HELD, INCONCLUSIVE = "held", "did not hold", "inconclusive"
MIN_SEEDS = 3
CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class Estimate:
  """A mean over seeds and its confidence interval [low, high] (NaN when n < 2)."""

  mean: float
  low: float
  high: float
  n: int

  def format(self, digits: int = 3, scale: float = 1.0, unit: str = "") -> str:
    """'mean [low, high]' with `digits` decimals after multiplying by `scale`."""
    low, mean, high = (f"{v * scale:.{digits}f}" for v in (self.low, self.mean, self.high))
    return f"{mean}{unit} [{low}, {high}]"


@dataclasses.dataclass(frozen=True)
class Verdict:
  """One claim's outcome: `outcome` is HELD, NOT_HELD or INCONCLUSIVE; `rule` says why, in words."""

  outcome: str
  effect: str
  estimate: Estimate
  rule: str


def t_quantile(confidence: float, degrees_of_freedom: int) -> float:
  """The two-sided Student-t quantile, e.g. 4.303 for 95% and 2 degrees of freedom (via TFP)."""
  import tensorflow_probability as tfp  # Only here: the rules themselves need no TensorFlow.

  return float(
    tfp.distributions.StudentT(float(degrees_of_freedom), 0.0, 1.0).quantile(0.5 + confidence / 2)
  )


def interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
  """Mean and Student-t confidence interval of per-seed values (NaN bounds for fewer than 2)."""
  values = np.asarray(values, np.float64)
  n, mean = len(values), float(np.mean(values)) if len(values) else math.nan
  if n < 2:
    return Estimate(mean, math.nan, math.nan, n)
  half = t_quantile(confidence, n - 1) * float(np.std(values, ddof=1)) / math.sqrt(n)
  return Estimate(mean, mean - half, mean + half, n)


def ratio_interval(ratios: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
  """The geometric mean of per-seed ratios and its interval, computed on log ratios."""
  ratios = np.asarray(ratios, np.float64)
  if np.any(ratios <= 0):
    raise ValueError(f"ratios must be positive; got {ratios.tolist()}")
  logs = interval(np.log(ratios), confidence)
  return Estimate(math.exp(logs.mean), math.exp(logs.low), math.exp(logs.high), logs.n)


def _too_few(estimate: Estimate) -> bool:
  return estimate.n < MIN_SEEDS


def _seeds(estimate: Estimate) -> str:
  return f"95% CI over {estimate.n} seeds (Student t)"


def below(estimate: Estimate, threshold: float, effect: str) -> Verdict:
  """The claim is that the effect lies below `threshold`.

  Held if the whole interval lies below it, did not hold if the whole interval lies at or
  above it, inconclusive if the interval straddles it (or there are too few seeds).
  """
  rule = (
    f"held if the {_seeds(estimate)} of the {effect} lies entirely below {threshold:g}; did not "
    f"hold if it lies entirely at or above {threshold:g}; inconclusive otherwise (and with fewer "
    f"than {MIN_SEEDS} seeds)"
  )
  if _too_few(estimate):
    outcome = INCONCLUSIVE
  elif estimate.high < threshold:
    outcome = HELD
  elif estimate.low >= threshold:
    outcome = NOT_HELD
  else:
    outcome = INCONCLUSIVE
  return Verdict(outcome, effect, estimate, rule)


def above(estimate: Estimate, threshold: float, effect: str) -> Verdict:
  """The claim is that the effect lies above `threshold` (the mirror image of `below`)."""
  rule = (
    f"held if the {_seeds(estimate)} of the {effect} lies entirely above {threshold:g}; did not "
    f"hold if it lies entirely at or below {threshold:g}; inconclusive otherwise (and with fewer "
    f"than {MIN_SEEDS} seeds)"
  )
  if _too_few(estimate):
    outcome = INCONCLUSIVE
  elif estimate.low > threshold:
    outcome = HELD
  elif estimate.high <= threshold:
    outcome = NOT_HELD
  else:
    outcome = INCONCLUSIVE
  return Verdict(outcome, effect, estimate, rule)


def within(estimate: Estimate, margin: float, effect: str) -> Verdict:
  """The claim is that the effect is about zero: |effect| < margin (an equivalence test).

  Held if the whole interval lies inside (-margin, margin), did not hold if it lies
  entirely outside that band, inconclusive otherwise.
  """
  rule = (
    f"held if the {_seeds(estimate)} of the {effect} lies entirely inside ±{margin:g}; "
    "did not hold if it lies entirely outside; inconclusive otherwise (and with fewer than "
    f"{MIN_SEEDS} seeds)"
  )
  if _too_few(estimate):
    outcome = INCONCLUSIVE
  elif -margin < estimate.low and estimate.high < margin:
    outcome = HELD
  elif estimate.high <= -margin or estimate.low >= margin:
    outcome = NOT_HELD
  else:
    outcome = INCONCLUSIVE
  return Verdict(outcome, effect, estimate, rule)


def all_of(*verdicts: Verdict) -> str:
  """Held if every part held; did not hold if any part did not hold; inconclusive otherwise."""
  outcomes = [v.outcome for v in verdicts]
  if all(o == HELD for o in outcomes):
    return HELD
  return NOT_HELD if NOT_HELD in outcomes else INCONCLUSIVE
