"""The verdict rules on synthetic numbers: a clear effect, no effect, too few seeds."""

import math

import pytest

from ls_keras.paper import verdicts
from ls_keras.paper.verdicts import HELD, INCONCLUSIVE, NOT_HELD


def test_interval_is_the_student_t_interval():
  estimate = verdicts.interval([1.0, 2.0, 3.0])
  # mean 2, sd 1, n 3: half width t(0.975, 2) / sqrt(3) = 4.3027 / 1.7321.
  assert estimate.mean == 2.0 and estimate.n == 3
  assert estimate.high - 2.0 == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
  assert estimate.low == pytest.approx(4.0 - estimate.high)
  one = verdicts.interval([0.5])
  assert one.mean == 0.5 and math.isnan(one.low) and math.isnan(one.high)


def test_ratio_interval_is_symmetric_on_the_log_scale():
  estimate = verdicts.ratio_interval([0.5, 2.0, 1.0])
  assert estimate.mean == pytest.approx(1.0)
  assert estimate.low * estimate.high == pytest.approx(1.0)
  with pytest.raises(ValueError, match="positive"):
    verdicts.ratio_interval([1.0, -1.0])


CLEAR_DROP = [-0.10, -0.12, -0.11, -0.09]
NO_EFFECT = [-0.02, 0.03, 0.01, -0.015]
CLEAR_RISE = [0.10, 0.12, 0.11, 0.09]


@pytest.mark.parametrize(
  "values, below, above, within",
  [
    (CLEAR_DROP, HELD, NOT_HELD, NOT_HELD),
    (NO_EFFECT, INCONCLUSIVE, INCONCLUSIVE, HELD),
    (CLEAR_RISE, NOT_HELD, HELD, NOT_HELD),
    (CLEAR_DROP[:2], INCONCLUSIVE, INCONCLUSIVE, INCONCLUSIVE),  # Too few seeds, however clear.
  ],
)
def test_rules_on_a_clear_effect_no_effect_and_too_few_seeds(values, below, above, within):
  estimate = verdicts.interval(values)
  assert verdicts.below(estimate, 0.0, "difference").outcome == below
  assert verdicts.above(estimate, 0.0, "difference").outcome == above
  assert verdicts.within(estimate, 0.05, "difference").outcome == within


def test_each_verdict_carries_its_rule_in_words():
  verdict = verdicts.below(verdicts.interval(CLEAR_DROP), 0.0, "ECE difference")
  assert "95% CI over 4 seeds" in verdict.rule and "entirely below 0" in verdict.rule
  assert "ECE difference" in verdict.rule and "fewer than 3 seeds" in verdict.rule


def test_all_of_needs_every_part():
  held = verdicts.below(verdicts.interval(CLEAR_DROP), 0.0, "a")
  unsure = verdicts.below(verdicts.interval(NO_EFFECT), 0.0, "b")
  failed = verdicts.above(verdicts.interval(CLEAR_DROP), 0.0, "c")
  assert verdicts.all_of(held, held) == HELD
  assert verdicts.all_of(held, unsure) == INCONCLUSIVE
  assert verdicts.all_of(held, unsure, failed) == NOT_HELD


def test_estimate_formats_with_scale_and_unit():
  assert (
    verdicts.Estimate(0.0123, 0.01, 0.015, 3).format(1, scale=100, unit=" pts")
    == "1.2 pts [1.0, 1.5]"
  )
