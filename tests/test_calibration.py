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
