import keras
import numpy as np
import pytest

from ls_keras import calibration
from ls_keras.core.errors import UserError


def ece_numpy(labels, probs, num_bins=15):
  """An independent ECE: half-open bins [lo, hi), the last one closed."""
  confidence, predicted = probs.max(-1), probs.argmax(-1)
  bins = np.minimum((confidence * num_bins).astype(int), num_bins - 1)
  total = 0.0
  for b in range(num_bins):
    mask = bins == b
    if mask.any():
      total += mask.mean() * abs((predicted[mask] == labels[mask]).mean() - confidence[mask].mean())
  return total


def softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def sample_labels(probs, rng):
  return (probs.cumsum(-1) > rng.uniform(size=(len(probs), 1))).argmax(-1)


@pytest.mark.parametrize("seed, num_bins", [(0, 15), (1, 10), (2, 1)])
def test_tfp_ece_matches_independent_numpy(seed, num_bins):
  rng = np.random.RandomState(seed)
  logits = rng.normal(0, 3, (2000, 7))
  labels = rng.randint(0, 7, 2000)
  ours = calibration.expected_calibration_error(labels, logits=logits, num_bins=num_bins)
  assert ours == pytest.approx(ece_numpy(labels, softmax(logits), num_bins), abs=1e-5)
  stats = calibration.bin_statistics(labels, logits=logits, num_bins=num_bins)
  filled = stats["count"] > 0
  from_bins = np.sum(
    stats["count"][filled] / 2000 * np.abs(stats["accuracy"] - stats["confidence"])[filled]
  )
  assert from_bins == pytest.approx(ours, abs=1e-5)


def test_perfectly_calibrated_model_has_ece_near_zero():
  rng = np.random.RandomState(0)
  logits = rng.normal(0, 2, (200_000, 10))
  labels = sample_labels(softmax(logits), rng)  # Labels drawn from the model's own beliefs.
  assert calibration.expected_calibration_error(labels, logits=logits) < 0.01


def test_confident_and_always_wrong_has_ece_near_one():
  logits = np.tile([[20.0, 0.0, 0.0]], (500, 1))
  labels = np.ones(500, int)
  assert calibration.expected_calibration_error(labels, logits=logits) > 0.99
  s = calibration.summary(labels, logits=logits)
  assert s["accuracy"] == 0.0 and s["mce"] > 0.99


def test_probabilities_and_one_hot_labels_are_accepted():
  rng = np.random.RandomState(3)
  logits = rng.normal(size=(300, 4))
  labels = rng.randint(0, 4, 300)
  a = calibration.expected_calibration_error(labels, logits=logits)
  b = calibration.expected_calibration_error(np.eye(4)[labels], probs=softmax(logits))
  assert a == pytest.approx(b, abs=1e-6)


@pytest.mark.parametrize("true_t", [0.5, 1.0, 1.9, 4.0])
def test_temperature_fit_recovers_the_generating_temperature(true_t):
  rng = np.random.RandomState(1)
  z = rng.normal(0, 3, (50_000, 10))
  labels = sample_labels(softmax(z), rng)
  observed = z * true_t  # A model whose logits are T times too large (or small).
  t = calibration.fit_temperature(labels, observed)
  assert t == pytest.approx(true_t, rel=0.03)
  scaled = calibration.temperature_scale(labels, observed)
  assert scaled.after["accuracy"] == scaled.before["accuracy"]
  assert scaled.after["nll"] <= scaled.before["nll"] + 1e-9


def test_temperature_fit_is_robust_to_degenerate_data_and_says_when_it_hits_a_bound():
  labels = np.array([0, 1, 2] * 10)
  separable = np.eye(3)[labels] * 5.0  # NLL keeps falling as T -> 0: clipped, not divergent.
  t = calibration.fit_temperature(labels, separable)
  assert t == 1e-2 and t.at_bound == "min"
  assert "classified perfectly" in t.bound_warning() and "T = 0.01" in t.bound_warning()
  scaling = calibration.temperature_scale(labels, separable)
  assert scaling.at_bound and scaling.temperature.at_bound == "min"
  flat = calibration.fit_temperature(labels, np.zeros((30, 3)))  # No signal: T -> infinity.
  assert flat == 1e2 and flat.at_bound == "max" and "no signal" in flat.bound_warning()
  wrong = calibration.fit_temperature(labels, -separable)  # Always confidently wrong.
  assert wrong == 1e2 and wrong.at_bound == "max"


def test_an_interior_temperature_is_not_at_a_bound():
  rng = np.random.RandomState(4)
  z = rng.normal(0, 3, (5000, 5))
  t = calibration.fit_temperature(sample_labels(softmax(z), rng), 2.0 * z)
  assert t == pytest.approx(2.0, rel=0.1) and t.at_bound == "" and t.bound_warning() == ""
  assert not calibration.temperature_scale(sample_labels(softmax(z), rng), z).at_bound
  assert isinstance(t, float) and f"{t:.1f}" == f"{float(t):.1f}"


def test_probabilities_passed_as_logits_are_refused_with_the_fix():
  """The issue's case: fit_temperature(y, probs) gave T = 0.176, and ECE 0.577, silently."""
  rng = np.random.RandomState(7)
  z = rng.normal(0, 2, (4000, 10))
  labels = sample_labels(softmax(z), rng)
  probs = softmax(z)
  assert calibration.fit_temperature(labels, z) == pytest.approx(1.0, rel=0.05)
  assert calibration.expected_calibration_error(labels, probs=probs) < 0.03
  message = "look like probabilities, not logits.*Pass them as probs=.*pre-softmax output"
  calls = [
    lambda: calibration.fit_temperature(labels, probs),
    lambda: calibration.expected_calibration_error(labels, logits=probs),
    lambda: calibration.expected_calibration_error(labels, probs),  # Positional: logits.
    lambda: calibration.summary(labels, logits=probs),
    lambda: calibration.bin_statistics(labels, logits=probs),
    lambda: calibration.temperature_scale(labels, z, labels, probs),
    lambda: calibration.temperature_scale(labels, probs),
  ]
  for call in calls:
    with pytest.raises(UserError, match=message):
      call()


def test_non_negative_logits_that_do_not_sum_to_one_are_logits():
  rng = np.random.RandomState(8)
  z = rng.uniform(0, 1, (500, 4))  # Non-negative: a ReLU output, say; rows do not sum to 1.
  labels = rng.randint(0, 4, 500)
  assert calibration.expected_calibration_error(labels, logits=z) == pytest.approx(
    ece_numpy(labels, softmax(z)), abs=1e-5
  )
  almost = softmax(z)
  almost[0] *= 1.01  # One row off by 1%: a genuine non-negative score matrix is accepted.
  assert np.isfinite(calibration.fit_temperature(labels, almost))
  from ls_keras.core import checks

  assert checks.looks_like_probabilities(softmax(z))
  assert not checks.looks_like_probabilities(almost)
  assert not checks.looks_like_probabilities(np.ones((3, 1)))  # K = 1: not a distribution.
  assert not checks.looks_like_probabilities(softmax(z) - 1e-2)  # Negative entries.


@pytest.mark.parametrize(
  "kwargs, message",
  [
    ({"labels": np.zeros(5, int), "logits": np.zeros((4, 3))}, "4 logits but 5 labels"),
    (
      {"labels": np.zeros(2, int), "logits": np.array([[0.0, np.nan], [1.0, 2.0]])},
      "NaN or infinite",
    ),
    (
      {"labels": np.zeros(2, int), "logits": np.array([[0.0, np.inf], [1.0, 2.0]])},
      "NaN or infinite",
    ),
    ({"labels": np.array([0, 3]), "logits": np.zeros((2, 3))}, "labels must lie in"),
    ({"labels": np.zeros(2, int), "logits": np.zeros((2, 3)), "num_bins": 0}, "num_bins=0"),
  ],
)
def test_bad_inputs_are_clear_errors(kwargs, message):
  with pytest.raises(UserError, match=message):
    calibration.expected_calibration_error(**kwargs)


def test_streaming_metric_equals_batch_function():
  rng = np.random.RandomState(5)
  logits = rng.normal(0, 2, (1000, 10)).astype("float32")
  labels = rng.randint(0, 10, 1000)
  metric = calibration.ExpectedCalibrationError()
  for i in range(0, 1000, 128):
    metric.update_state(np.eye(10)[labels[i : i + 128]], logits[i : i + 128])
  assert float(metric.result()) == pytest.approx(
    calibration.expected_calibration_error(labels, logits=logits), abs=1e-5
  )


def test_streaming_metric_inside_evaluate_under_mirrored_strategy(mirrored):
  rng = np.random.RandomState(6)
  x = rng.normal(size=(1000, 8)).astype("float32")
  y = np.eye(10, dtype="float32")[rng.randint(0, 10, 1000)]
  strategy = mirrored
  with strategy.scope():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(10)])
    model.compile(
      loss=keras.losses.CategoricalCrossentropy(from_logits=True),
      metrics=[calibration.ExpectedCalibrationError()],
    )
  result = model.evaluate(x, y, batch_size=100, verbose=0, return_dict=True)
  logits = model.predict(x, verbose=0)
  expected = calibration.expected_calibration_error(y.argmax(-1), logits=logits)
  assert result["ece"] == pytest.approx(expected, abs=1e-4)


# The measures beside ECE-15 (issue 21): adaptive ECE, classwise ECE, RMS calibration error.


def bin_gaps_numpy(values, hits, bins, num_bins):
  """Per bin: (n_b / n, |mean hit - mean value|), from plain loops."""
  out = []
  for b in range(num_bins):
    mask = bins == b
    if mask.any():
      out.append((mask.mean(), abs(hits[mask].mean() - values[mask].mean())))
  return np.array(out).reshape(-1, 2)


def equal_width(values, num_bins):
  return np.minimum((values * num_bins).astype(int), num_bins - 1)


def rms_numpy(labels, probs, num_bins=15):
  confidence, hits = probs.max(-1), probs.argmax(-1) == labels
  weight, gap = bin_gaps_numpy(confidence, hits, equal_width(confidence, num_bins), num_bins).T
  return np.sqrt(np.sum(weight * gap**2))


def classwise_numpy(labels, probs, num_bins=15):
  """Kull et al. 2019: the mean over classes k of the equal-width ECE of p_k against y == k."""
  per_class = []
  for k in range(probs.shape[1]):
    p = probs[:, k]
    weight, gap = bin_gaps_numpy(p, labels == k, equal_width(p, num_bins), num_bins).T
    per_class.append(np.sum(weight * gap))
  return np.mean(per_class)


def adaptive_numpy(labels, probs, num_bins=15):
  """Equal-mass bins: edges at the nearest-rank quantiles j (N - 1) / num_bins of the sorted
  confidences (whole numbers when N - 1 is a multiple of num_bins); an example lies in the
  last bin whose lower edge it reaches."""
  confidence, hits = probs.max(-1), probs.argmax(-1) == labels
  ranks = np.arange(num_bins + 1) * (len(confidence) - 1) // num_bins
  edges = np.sort(confidence)[ranks]
  bins = np.minimum(np.searchsorted(edges, confidence, side="right") - 1, num_bins - 1)
  weight, gap = bin_gaps_numpy(confidence, hits, bins, num_bins).T
  return np.sum(weight * gap)


@pytest.mark.parametrize("seed, num_bins", [(0, 15), (1, 10), (2, 1)])
def test_new_measures_match_independent_numpy(seed, num_bins):
  rng = np.random.RandomState(seed)
  n = 150 * num_bins + 1  # N - 1 a multiple of num_bins: whole-number quantile ranks.
  logits = rng.normal(0, 3, (n, 6))
  labels = rng.randint(0, 6, n)
  probs = softmax(logits)
  for ours, theirs in [
    (calibration.rms_calibration_error, rms_numpy),
    (calibration.classwise_calibration_error, classwise_numpy),
    (calibration.adaptive_calibration_error, adaptive_numpy),
  ]:
    assert ours(labels, logits=logits, num_bins=num_bins) == pytest.approx(
      theirs(labels, probs, num_bins), abs=1e-5
    ), ours.__name__


def test_measures_of_two_hand_computed_cases():
  """Binary: 10 examples at p = (0.1, 0.9), 6 of them labelled 1 (gap 0.3), and 10 at
  (0.3, 0.7), 7 labelled 1 (gap 0): every top-1 measure is 0.5 * 0.3 = 0.15, RMS is
  sqrt(0.5 * 0.3^2). Three classes: 10 examples at (0.8, 0.1, 0.1) labelled 0 seven times
  and 2 three times: ECE 0.1; per class |0.7 - 0.8|, |0 - 0.1|, |0.3 - 0.1|, mean 0.4 / 3."""
  probs = np.repeat([[0.1, 0.9], [0.3, 0.7]], 10, axis=0)
  labels = np.array([1] * 6 + [0] * 4 + [1] * 7 + [0] * 3)
  expected = {"ece": 0.15, "adaptive_ece": 0.15, "classwise_ece": 0.15, "rms_ce": np.sqrt(0.045)}
  three = (np.tile([[0.8, 0.1, 0.1]], (10, 1)), np.array([0] * 7 + [2] * 3))
  expected_three = {"ece": 0.1, "adaptive_ece": 0.1, "classwise_ece": 0.4 / 3, "rms_ce": 0.1}
  for (p, y), want in [((probs, labels), expected), (three, expected_three)]:
    got = calibration.measures(y, probs=p, names=calibration.SUITE)
    assert got["ece"] == pytest.approx(calibration.summary(y, probs=p)["ece"], abs=1e-6)
    for name, value in want.items():
      assert got[name] == pytest.approx(value, abs=1e-6), name
    for num_bins in (2, 15):  # Constant confidences within each group: any bins agree.
      assert calibration.adaptive_calibration_error(y, probs=p, num_bins=num_bins) == (
        pytest.approx(want["adaptive_ece"], abs=1e-6)
      )


def test_calibrated_predictions_measure_near_zero_and_over_confident_ones_do_not():
  rng = np.random.RandomState(0)
  logits = rng.normal(0, 2, (40_000, 5))
  labels = sample_labels(softmax(logits), rng)  # Drawn from the model's own beliefs.
  calibrated = calibration.measures(labels, logits=logits)
  over_confident = calibration.measures(labels, logits=3.0 * logits)
  assert list(calibrated) == ["adaptive_ece", "classwise_ece", "rms_ce"]
  for name in ("adaptive_ece", "classwise_ece", "rms_ce"):
    assert calibrated[name] < 0.01, name
    assert over_confident[name] > 0.05, name  # ECE 0.22 there.


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rms_is_never_below_ece_of_the_same_bins(seed):
  rng = np.random.RandomState(seed)
  logits = rng.normal(0, 1 + 2 * seed, (500, 4))
  labels = rng.randint(0, 4, 500)
  for num_bins in (15, 4):
    ece = calibration.expected_calibration_error(labels, logits=logits, num_bins=num_bins)
    assert calibration.rms_calibration_error(labels, logits=logits, num_bins=num_bins) >= ece - 1e-7


def test_binary_classwise_ece_bounds_top1_ece_and_equals_it_for_one_predicted_class():
  """Two classes, an even number of bins: p_0 = 1 - p_1 mirrors the bins, so both classes'
  ECEs are the same sum of per-bin gaps that top-1 ECE adds before taking |.|: classwise
  >= top-1 by the triangle inequality, equal when every prediction is for one class."""
  rng = np.random.RandomState(3)
  logits = rng.normal(0, 2, (4000, 2))
  # P(y = 1) = p_1 - 0.1: predictions of class 1 over-confident, of class 0 under-confident,
  # so the gaps of a top-1 bin cancel while each class's ECE is about 0.1.
  labels = (rng.uniform(size=4000) < softmax(logits)[:, 1] - 0.1).astype(int)
  for num_bins in (10, 16):
    ece = calibration.expected_calibration_error(labels, logits=logits, num_bins=num_bins)
    classwise = calibration.classwise_calibration_error(labels, logits=logits, num_bins=num_bins)
    assert ece < 0.03 and classwise > 0.07
    one_class = np.stack([np.zeros(4000), np.abs(logits[:, 1]) + 0.05], -1)  # Always class 1.
    assert calibration.classwise_calibration_error(
      labels, logits=one_class, num_bins=num_bins
    ) == pytest.approx(
      calibration.expected_calibration_error(labels, logits=one_class, num_bins=num_bins),
      abs=1e-6,
    )
  permuted = calibration.classwise_calibration_error(1 - labels, logits=logits[:, ::-1])
  assert permuted == pytest.approx(calibration.classwise_calibration_error(labels, logits=logits))


def over_confident(n, seed):
  rng = np.random.RandomState(seed)
  z = rng.normal(0, 2, (n, 5))
  return sample_labels(softmax(z), rng), 2.5 * z


def test_bootstrap_equals_the_measures_of_redrawn_resamples():
  """Each resample, redrawn as documented and measured by the public functions one at a
  time, gives the values whose percentiles the batched bootstrap returns."""
  labels, logits = over_confident(300, 0)
  got = calibration.bootstrap_intervals(labels, logits, num_resamples=40, seed=4, confidence=0.8)
  functions = {
    "ece": calibration.expected_calibration_error,
    "adaptive_ece": calibration.adaptive_calibration_error,
    "classwise_ece": calibration.classwise_calibration_error,
    "rms_ce": calibration.rms_calibration_error,
  }
  index = calibration.resample_indices(300, range(40), seed=4)
  assert index.shape == (40, 300) and len({tuple(row) for row in index}) == 40
  for name, function in functions.items():
    values = [function(labels[i], logits=logits[i]) for i in index]
    assert [got[name].low, got[name].high] == pytest.approx(
      np.quantile(values, [0.1, 0.9]), abs=1e-6
    ), name
    assert got[name].estimate == pytest.approx(function(labels, logits=logits), abs=1e-6)
    assert got[name].num_resamples == 40 and got[name].confidence == 0.8


def test_bootstrap_interval_holds_the_estimate_and_narrows_with_more_examples():
  small = calibration.bootstrap_intervals(*over_confident(400, 1), num_resamples=100)
  large = calibration.bootstrap_intervals(*over_confident(6400, 2), num_resamples=100)
  for name in calibration.SUITE:
    for interval in (small[name], large[name]):
      assert interval.low < interval.estimate < interval.high, name
    # Width ~ 1 / sqrt(N): 16 times the examples, about a quarter of the width.
    assert large[name].high - large[name].low < 0.5 * (small[name].high - small[name].low), name
  again = calibration.bootstrap_intervals(*over_confident(400, 1), num_resamples=100)
  other = calibration.bootstrap_intervals(*over_confident(400, 1), num_resamples=100, seed=1)
  assert again == small and other["ece"].low != small["ece"].low
  assert small["ece"].format(3).count("[") == 1


@pytest.mark.parametrize(
  "kwargs, message",
  [
    ({"num_resamples": 0}, "num_resamples=0"),
    ({"confidence": 1.0}, "confidence=1.0"),
    ({"names": ("ece", "brier")}, "ece, adaptive_ece, classwise_ece, rms_ce"),
    ({"seed": -1}, "seed=-1"),
    ({"seed": 1.5}, "seed=1.5"),
    ({"num_resamples": 1.5}, "num_resamples=1.5"),
    ({"num_resamples": 39}, "num_resamples=39 is not allowed: use 40-100000"),
    ({"names": "ece"}, r"names='ece': give a sequence of names, e.g. \('ece',\)"),
    ({"num_bins": 0}, "num_bins=0"),
  ],
)
def test_bootstrap_refuses_bad_settings(kwargs, message):
  with pytest.raises(UserError, match=message):
    calibration.bootstrap_intervals(np.zeros(3, int), np.zeros((3, 2)), **kwargs)
