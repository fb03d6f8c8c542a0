"""One validation layer at every public function that takes labels, logits or probabilities.

Every such function gets the same answer for integer labels of shape (N,), (N, 1) and
one-hot (N, K), and refuses what is not labels, logits or probabilities with a UserError.
Expected values are computed independently with NumPy.
"""

import numpy as np
import pytest
import tensorflow as tf

from ls_keras import calibration, distillation, projection
from ls_keras.core import checks
from ls_keras.training import losses
from ls_keras.core.errors import UserError

LABELS = np.array([3, 1, 2, 3])
LOGITS = np.eye(4)[[3, 1, 2, 0]] * 5.0  # Three right (3, 1, 2), one wrong (predicts 0 for a 3).


def _metric(labels, logits):
  metric = calibration.ExpectedCalibrationError()
  metric.update_state(tf.constant(labels), tf.constant(logits, tf.float32))
  return float(metric.result())


# name -> f(labels, logits): every public function that takes labels with logits.
FUNCTIONS = {
  "expected_calibration_error": lambda y, z: calibration.expected_calibration_error(y, logits=z),
  "summary": lambda y, z: calibration.summary(y, logits=z),
  "bin_statistics": lambda y, z: calibration.bin_statistics(y, logits=z)["count"].tolist(),
  "fit_temperature": lambda y, z: calibration.fit_temperature(y, z),
  "temperature_scale": lambda y, z: calibration.temperature_scale(y, z).after,
  "ExpectedCalibrationError": _metric,
  "equivalent_smoothing": lambda y, z: distillation.equivalent_smoothing(z, y, 2.0),
  "confusion_matrix": lambda y, z: projection.confusion_matrix(z, y, 4).ravel().tolist(),
  "distillation_loss": lambda y, z: (
    distillation.distillation_loss(
      tf.constant(y), tf.constant(z, tf.float32), tf.constant(z[::-1].copy(), tf.float32), 2.0, 0.5
    )
    .numpy()
    .tolist()
  ),
}
NUMPY_FUNCTIONS = [
  n for n in FUNCTIONS if n not in ("ExpectedCalibrationError", "distillation_loss")
]


def _expected_summary():
  z = LOGITS - LOGITS.max(1, keepdims=True)
  p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
  confidence, correct = p.max(1), (p.argmax(1) == LABELS)
  return {
    "accuracy": correct.mean(),
    "nll": -np.log(p[np.arange(4), LABELS]).mean(),
    "ece": abs(correct.mean() - confidence.mean()),
  }  # All four fall in one bin.


def test_integer_labels_of_shape_n_1_are_class_indices():
  """The reported case: keras.datasets' (N, 1) labels used to be argmax'ed to class 0."""
  out = calibration.summary(LABELS[:, None], logits=LOGITS)
  expected = _expected_summary()
  assert out["accuracy"] == pytest.approx(0.75)
  assert out["nll"] == pytest.approx(expected["nll"], rel=1e-6) and expected[
    "nll"
  ] == pytest.approx(1.27, abs=0.01)
  assert out["ece"] == pytest.approx(expected["ece"], abs=1e-6) and expected[
    "ece"
  ] == pytest.approx(0.230, abs=1e-3)
  assert _metric(LABELS[:, None], LOGITS) == pytest.approx(expected["ece"], abs=1e-6)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_reads_n_n1_and_one_hot_labels_alike(name):
  f = FUNCTIONS[name]
  reference = f(LABELS, LOGITS)
  for labels in (LABELS[:, None], np.eye(4, dtype=np.float32)[LABELS]):
    assert f(labels, LOGITS) == pytest.approx(reference, rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("name", sorted(NUMPY_FUNCTIONS))
@pytest.mark.parametrize(
  "labels, logits, message",
  [
    (LABELS, np.where(np.eye(4, dtype=bool), np.nan, LOGITS), "NaN or infinite"),
    (LABELS, LOGITS[:3], "4 labels"),
    (np.array([3, 1, 2, 7]), LOGITS, "must lie in [0, 3]"),
    (np.array([3, 1, -1, 3]), LOGITS, ">= 0"),
    (np.full((4, 4), 0.25), LOGITS, "must be one-hot"),
    (np.array([3.0, 1.5, 2.0, 3.0]), LOGITS, "whole numbers"),
    (LABELS[:, None, None], LOGITS, "shape"),
    (LABELS, LOGITS[:, :1], "at least 2 classes"),
  ],
)
def test_every_function_refuses_what_is_not_labels_or_logits(name, labels, logits, message):
  with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
    FUNCTIONS[name](labels, logits)


@pytest.mark.parametrize(
  "function",
  [calibration.expected_calibration_error, calibration.summary, calibration.bin_statistics],
)
@pytest.mark.parametrize(
  "probs, message",
  [
    (LOGITS, "in \\[0, 1\\]"),  # Raw logits passed as probabilities.
    (1 / (1 + np.exp(-LOGITS)), "sum to 1"),  # Per-class sigmoid scores.
    (np.full((4, 4), np.nan), "in \\[0, 1\\]"),
  ],
)
def test_probs_must_be_probabilities(function, probs, message):
  with pytest.raises(UserError, match=message):
    function(LABELS, probs=probs)


def test_probabilities_give_the_same_answer_as_their_logits():
  probs = np.exp(LOGITS) / np.exp(LOGITS).sum(1, keepdims=True)
  assert calibration.summary(LABELS, probs=probs)["nll"] == pytest.approx(
    calibration.summary(LABELS, logits=LOGITS)["nll"]
  )
  with pytest.raises(UserError, match="exactly one"):
    calibration.summary(LABELS, logits=LOGITS, probs=probs)


def test_tensor_functions_refuse_shapes_that_do_not_fit():
  with pytest.raises(UserError, match="shape"):
    losses.one_hot_targets(tf.ones((4, 3)), LOGITS.shape[1])
  with pytest.raises(UserError, match="same number of classes"):
    distillation.distillation_loss(LABELS, LOGITS, LOGITS[:, :3], 2.0, 0.5)
  with pytest.raises(UserError, match="do not fit"):
    calibration.ExpectedCalibrationError().update_state(
      tf.ones((4, 3)), tf.constant(LOGITS, tf.float32)
    )


def test_class_indices_accepts_integral_floats_and_bools():
  assert checks.class_indices(np.array([0.0, 2.0])).tolist() == [0, 2]
  assert checks.class_indices(np.array([True, False])).tolist() == [1, 0]


@pytest.mark.parametrize(
  "call, message",
  [
    (lambda: losses.one_hot_targets([0, 5, -1], 3), ">= 0"),
    (lambda: losses.one_hot_targets([7], 3), "must lie in \\[0, 2\\]"),
    (lambda: losses.one_hot_targets(np.array([0.0, 2.0]), 2), "must be integers"),
    (lambda: losses.one_hot_targets(np.array([[2.0, -1.0]]), 2), "probabilities"),
    (lambda: calibration.summary([], logits=np.zeros((0, 3))), "no predictions"),
    (lambda: calibration.temperature_scale(LABELS, LOGITS, eval_labels=LABELS), "both eval_labels"),
  ],
)
def test_values_that_are_not_labels_or_targets_are_refused_when_called_eagerly(call, message):
  with pytest.raises(UserError, match=message):
    call()


@pytest.mark.parametrize(
  "labels, logits",
  [([9], [[1.0, 2.0]]), ([0], [[np.nan, 1.0]]), ([0.5], [[1.0, 2.0]])],
)
def test_the_streaming_metric_fails_loudly_on_bad_values(labels, logits):
  with pytest.raises(tf.errors.InvalidArgumentError):
    calibration.ExpectedCalibrationError().update_state(tf.constant(labels), tf.constant(logits))


@pytest.mark.parametrize(
  "value, allowed", [(1, True), (15, True), (1000, True), (0, False), (1001, False), (10**9, False)]
)
def test_num_bins_lies_in_1_to_1000(value, allowed):
  """A billion bins allocated gigabytes: the count is bounded where every ECE reads it."""
  if allowed:
    assert checks.num_bins(value) == value
  else:
    with pytest.raises(UserError, match=f"--num_bins={value} is not allowed: use 1-1000"):
      checks.num_bins(value)
