"""Selective classification (calibration.selective): analytic curves, an independent loop, ties,
invariances of the scores, and the fitted T and p of `compare`."""

import itertools
import math

import numpy as np
import pytest

from ls_keras import calibration
from ls_keras.calibration import selective
from ls_keras.core.errors import UserError


def logits_with_errors(correct):
  """Two-class logits whose top-1 prediction is right exactly where `correct` is True."""
  correct = np.asarray(correct, bool)
  logits = np.tile([[1.0, -1.0]], (len(correct), 1))
  return logits, np.where(correct, 0, 1)


def softmax_numpy(logits):
  """Softmax, straightforwardly."""
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def msp_numpy(logits):
  """The maximum softmax probability itself."""
  return softmax_numpy(logits).max(-1)


def harmonic(n):
  return sum(1.0 / k for k in range(1, n + 1))


def risk_by_thresholds(errors, scores):
  """An independent curve: for each k, accept every score >= the k-th highest (no ties)."""
  n = len(scores)
  risks = []
  for threshold in sorted(scores, reverse=True):
    accepted = [e for e, s in zip(errors, scores) if s >= threshold]
    risks.append(sum(accepted) / len(accepted))
  assert len(risks) == n
  return np.array(risks)


# The curve and its areas.


@pytest.mark.parametrize("n, r", [(10, 3), (1000, 200), (7, 0), (5, 5)])
def test_a_perfect_ranking_has_the_oracle_closed_form_and_no_excess(n, r):
  logits, labels = logits_with_errors(np.arange(n) >= r)  # The first r are wrong...
  scores = np.arange(n, dtype=float)  # ... and least confident.
  found = selective.summary(labels, logits, scores=scores)
  oracle = r / n - (n - r) / n * (harmonic(n) - harmonic(n - r))
  assert found["aurc"] == pytest.approx(oracle, abs=1e-12)
  assert found["eaurc"] == pytest.approx(0.0, abs=1e-12) and found["error"] == r / n


def test_the_oracle_tends_to_geifman_et_al_s_continuous_form():
  n, e = 100_000, 0.2
  logits, labels = logits_with_errors(np.arange(n) >= e * n)
  found = selective.summary(labels, logits, scores=np.arange(n, dtype=float))
  assert found["aurc"] == pytest.approx(e + (1 - e) * math.log(1 - e), abs=1e-4)


def test_a_reversed_ranking_puts_every_error_first():
  n, r = 50, 10
  logits, labels = logits_with_errors(np.arange(n) >= r)
  found = selective.summary(labels, logits, scores=-np.arange(n, dtype=float))
  assert found["aurc"] == pytest.approx(r / n * (1 + harmonic(n) - harmonic(r)), abs=1e-12)
  oracle = r / n - (n - r) / n * (harmonic(n) - harmonic(n - r))
  assert found["eaurc"] == pytest.approx(found["aurc"] - oracle, abs=1e-12)
  assert found["coverage_at_risk"] == 0.0  # Every coverage has risk > 5%: only rejecting all.
  curve = selective.risk_coverage(labels, logits, scores=-np.arange(n, dtype=float))
  np.testing.assert_allclose(curve["risk"][:r], 1.0)


def test_the_curve_agrees_with_a_loop_over_thresholds():
  rng = np.random.RandomState(0)
  logits = rng.normal(0, 3, (300, 5))
  probs = softmax_numpy(logits)
  labels = (probs.cumsum(-1) > rng.uniform(size=(300, 1))).argmax(-1)  # Drawn from the model.
  errors = logits.argmax(-1) != labels
  scores = selective.msp_score(logits)
  expected = risk_by_thresholds(errors, scores)
  curve = selective.risk_coverage(labels, logits)  # The MSP by default.
  np.testing.assert_allclose(curve["risk"], expected, atol=1e-12)
  np.testing.assert_allclose(curve["coverage"], np.arange(1, 301) / 300)
  found = selective.summary(labels, logits, coverage=0.8, risk=0.15)
  assert found["aurc"] == pytest.approx(expected.mean(), abs=1e-12)
  assert found["risk_at_coverage"] == pytest.approx(expected[239], abs=1e-12)  # 240 of 300.
  below = [k for k in range(1, 301) if expected[k - 1] <= 0.15]
  assert found["coverage_at_risk"] == pytest.approx(max(below) / 300)
  assert 0 < found["coverage_at_risk"] < 1


def test_ties_count_as_accepted_in_random_order():
  # Scores with two tie groups; the curve is the mean over every order within the ties.
  errors = np.array([1, 0, 0, 1, 1, 0, 0], bool)
  scores = np.array([3.0, 3.0, 3.0, 2.0, 1.0, 1.0, 1.0])
  logits, labels = logits_with_errors(~errors)
  groups = [np.flatnonzero(scores == s) for s in (3.0, 2.0, 1.0)]
  curves = []
  for orders in itertools.product(*(itertools.permutations(g) for g in groups)):
    order = np.concatenate(orders)
    curves.append(np.cumsum(errors[order]) / np.arange(1, 8))
  curve = selective.risk_coverage(labels, logits, scores=scores)
  np.testing.assert_allclose(curve["risk"], np.mean(curves, 0), atol=1e-12)
  # Shuffling the examples changes nothing.
  shuffle = np.random.RandomState(1).permutation(7)
  again = selective.risk_coverage(labels[shuffle], logits[shuffle], scores=scores[shuffle])
  np.testing.assert_allclose(again["risk"], curve["risk"], atol=1e-12)


def test_one_tie_over_everything_has_the_error_rate_at_every_coverage():
  logits, labels = logits_with_errors(np.arange(40) % 4 != 0)
  found = selective.summary(labels, logits, scores=np.zeros(40))
  assert found["aurc"] == pytest.approx(0.25) and found["risk_at_coverage"] == pytest.approx(0.25)


def test_aurc_is_invariant_to_monotone_transforms_of_the_score():
  rng = np.random.RandomState(2)
  logits = rng.normal(0, 1.5, (500, 4))
  labels = rng.randint(0, 4, 500)
  scores = selective.msp_score(logits)
  base = selective.summary(labels, logits, scores=scores)
  for transformed in (np.exp(scores), 3 * scores - 7, scores**3, msp_numpy(logits)):
    found = selective.summary(labels, logits, scores=transformed)
    assert found == pytest.approx(base, abs=1e-12)
  assert selective.summary(labels, logits) == pytest.approx(base, abs=1e-12)


def test_log_msp_is_msp_and_keeps_saturated_rows_apart():
  logits = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 0.5], [50.0, 0.0, 0.0], [60.0, 0.0, 0.0]])
  msp = msp_numpy(logits)
  np.testing.assert_allclose(np.exp(selective.msp_score(logits)), msp, rtol=1e-12)
  assert msp[2] == msp[3] == 1.0  # MSP itself cannot tell these apart in float64...
  scores = selective.msp_score(logits)
  assert scores[2] < scores[3] < 0  # ... its logarithm can.
  np.testing.assert_allclose(
    selective.msp_score(logits, 2.0), selective.msp_score(logits / 2.0), rtol=1e-12
  )


# MaxLogit-pNorm.


@pytest.mark.parametrize("p", [1, 2, 3.5, 10, math.inf])
def test_pnorm_matches_numpy_and_ignores_row_shifts_and_scales(p):
  rng = np.random.RandomState(3)
  logits = rng.normal(0, 3, (200, 6))
  centred = logits - logits.mean(-1, keepdims=True)
  expected = centred.max(-1) / np.linalg.norm(centred, ord=p, axis=-1)
  scores = selective.max_logit_pnorm(logits, p)
  np.testing.assert_allclose(scores, expected, rtol=1e-12)
  assert np.all((scores >= 0) & (scores <= 1))  # max |u| <= ||u||_p, and the top is >= the mean.
  shifted = logits + rng.normal(0, 100, (200, 1))  # A constant per row.
  np.testing.assert_allclose(selective.max_logit_pnorm(shifted, p), scores, atol=1e-12)
  scaled = logits * rng.uniform(0.1, 10, (200, 1))
  np.testing.assert_allclose(selective.max_logit_pnorm(scaled, p), scores, atol=1e-12)


def test_pnorm_needs_no_overflow_and_scores_flat_rows_zero():
  logits = np.array([[1e200, 0.0, -1e200], [3.0, 3.0, 3.0], [1.0, 0.0, 0.0]])
  scores = selective.max_logit_pnorm(logits, 10)
  assert np.all(np.isfinite(scores)) and scores[1] == 0.0
  assert scores[0] == pytest.approx(2 ** (-1 / 10))  # Centred: (1, 0, -1) x 1e200.


def test_fit_pnorm_takes_the_grid_minimum_of_aurc():
  rng = np.random.RandomState(4)
  logits = rng.normal(0, 1, (400, 10)) * rng.uniform(0.2, 5, (400, 1))  # Scales vary by row.
  labels = np.where(rng.uniform(size=400) < 0.7, logits.argmax(-1), rng.randint(0, 10, 400))
  grid = (1, 2, 4, 8)
  values = [
    selective.aurc(labels, logits, scores=selective.max_logit_pnorm(logits, p)) for p in grid
  ]
  assert selective.fit_pnorm(labels, logits, grid) == grid[int(np.argmin(values))]
  assert selective.fit_pnorm(labels, logits) in selective.P_GRID


def test_compare_fits_on_one_split_and_judges_on_the_other():
  rng = np.random.RandomState(5)
  logits = 3 * rng.normal(0, 1, (600, 5))
  labels = np.where(rng.uniform(size=600) < 0.6, logits.argmax(-1), rng.randint(0, 5, 600))
  found = selective.compare(labels[:300], logits[:300], labels[300:], logits[300:])
  assert float(found.temperature) == pytest.approx(
    float(calibration.fit_temperature(labels[:300], logits[:300]))
  )
  assert found.p == selective.fit_pnorm(labels[:300], logits[:300])
  assert set(found.summaries) == set(selective.METHODS) == set(found.scores)
  test = logits[300:]
  assert found.summaries["msp"] == selective.summary(labels[300:], test)
  ts = selective.summary(labels[300:], test / found.temperature)
  assert found.summaries["ts"] == pytest.approx(ts, abs=1e-12)
  error = found.summaries["msp"]["error"]
  assert all(s["error"] == error for s in found.summaries.values())  # One set of predictions.
  fixed = selective.compare(labels[:300], logits[:300], labels[300:], test, p=2)
  assert fixed.p == 2 and np.allclose(fixed.scores["pnorm"], selective.max_logit_pnorm(test, 2))


@pytest.mark.parametrize(
  "call, message",
  [
    (lambda y, z: selective.summary(y, z, scores=np.zeros(3)), "finite numbers"),
    (lambda y, z: selective.summary(y, z, scores=np.full(4, np.nan)), "NaN"),
    (lambda y, z: selective.summary(y, z, coverage=0.0), "coverage=0.0"),
    (lambda y, z: selective.max_logit_pnorm(z, 0), "p=0.0"),
    (lambda y, z: selective.msp_score(z, 0.0), "temperature=0.0"),
    (lambda y, z: selective.fit_pnorm(y, z, ()), "at least one p"),
    (lambda y, z: selective.compare(y, z, y, z[:, :2]), "classes"),
  ],
)
def test_bad_input_is_refused_with_what_is_allowed(call, message):
  logits, labels = logits_with_errors([True, False, True, True])
  logits = np.c_[logits, np.zeros(4)]
  with pytest.raises(UserError, match=message):
    call(labels, logits)
