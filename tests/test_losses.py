import keras
import numpy as np
import pytest
import tensorflow as tf

from ls_keras.training import losses


def smooth_labels(labels, alpha):
  """Reference: the paper's targets y * (1 - alpha) + alpha / K, float32 [N, K]."""
  one_hot = losses.one_hot_targets(labels, np.shape(labels)[-1])
  return one_hot * (1.0 - alpha) + alpha / float(one_hot.shape[-1])


def cross_entropy(targets, logits):
  """Reference: per-example H(targets, softmax(logits)) in nats, float32 [N]."""
  log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
  return -tf.reduce_sum(targets * log_probs, axis=-1)


def test_smooth_labels_matches_paper_formula():
  y = np.array([[0.0, 1.0, 0.0, 0.0]])
  np.testing.assert_allclose(smooth_labels(y, 0.2).numpy(), [[0.05, 0.85, 0.05, 0.05]], atol=1e-7)


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.5])
def test_ls_loss_equals_formula_on_known_logits(alpha):
  logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]], np.float32)
  labels = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  targets = labels * (1 - alpha) + alpha / 3
  expected = -(targets * log_p).sum(-1).mean()
  keras_loss = float(losses.label_smoothing_loss(alpha)(labels, logits))
  reference = float(np.mean(cross_entropy(smooth_labels(labels, alpha), logits)))
  np.testing.assert_allclose(keras_loss, expected, rtol=1e-6)
  np.testing.assert_allclose(reference, expected, rtol=1e-6)


def test_ls_loss_minimum_is_at_smoothed_targets():
  # With alpha = 0.3, K = 3, the optimal probabilities are (0.8, 0.1, 0.1): logit gap log 8.
  loss = losses.label_smoothing_loss(0.3)
  y = np.array([[1.0, 0.0, 0.0]], np.float32)
  best = np.array([[np.log(8.0), 0.0, 0.0]], np.float32)
  assert float(loss(y, best)) < float(loss(y, best * 1.2))
  assert float(loss(y, best)) < float(loss(y, best * 0.8))
  assert isinstance(loss, keras.losses.CategoricalCrossentropy)
