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


# Online label smoothing (Zhang et al. 2021), against the authors' algorithm written out in
# NumPy example by example, as their code does (github.com/zhangchbin/OnlineLabelSmoothing).


def _softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _authors_epoch(soft_labels, batches, mix):
  """The reference: per batch of (logits, labels), the loss mix * CE + (1 - mix) * H(S[y], p)
  and, for each example whose argmax is its label, p added to its class' sum and count; at
  the end, each class' mean, or 1/K for a class without a correct example."""
  k = soft_labels.shape[0]
  sums, counts, batch_losses = np.zeros((k, k)), np.zeros(k), []
  for logits, labels in batches:
    p = _softmax(logits.astype(np.float64))
    per_example = []
    for probs, label in zip(p, labels):
      if np.argmax(probs) == label:
        sums[label] += probs
        counts[label] += 1
      hard = -np.log(probs[label])
      soft = -(soft_labels[label] * np.log(probs)).sum()
      per_example.append(mix * hard + (1 - mix) * soft)
    batch_losses.append(np.mean(per_example))
  new = np.full((k, k), 1.0 / k)
  seen = counts > 0
  new[seen] = sums[seen] / counts[seen][:, None]
  return batch_losses, new, sums, counts


def _batches(seed, n_batches=3, n=16, k=4):
  rng = np.random.RandomState(seed)
  out = []
  for _ in range(n_batches):
    labels = rng.randint(0, k - 1, n)  # Class k - 1 never occurs: its row stays uniform.
    logits = rng.normal(0, 2, (n, k)).astype(np.float32)
    logits[np.arange(n), labels] += rng.uniform(0, 3, n).astype(np.float32)  # Some correct.
    out.append((logits, labels))
  return out


def test_online_ls_pure_functions_match_the_authors_loop():
  mix, k = 0.3, 4
  soft = _softmax(np.random.RandomState(1).normal(0, 1, (k, k)))
  batches = _batches(0)
  want_losses, want_matrix, want_sums, want_counts = _authors_epoch(soft, batches, mix)
  sums, counts = np.zeros((k, k)), np.zeros(k)
  for (logits, labels), want in zip(batches, want_losses):
    targets = losses.online_targets(labels, soft.astype(np.float32), mix)
    got = float(np.mean(losses.soft_cross_entropy(targets, logits)))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    s, c = losses.correct_prediction_sums(np.eye(k, dtype=np.float32)[labels], logits)
    sums, counts = sums + s.numpy(), counts + c.numpy()
  np.testing.assert_allclose(sums, want_sums, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(counts, want_counts)
  assert 0 < counts.sum() < 48 and counts[k - 1] == 0  # Both branches of the normalisation.
  matrix = losses.soft_label_matrix(sums, counts).numpy()
  np.testing.assert_allclose(matrix, want_matrix, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(matrix.sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(matrix[k - 1], 1.0 / k)


def test_soft_cross_entropy_has_the_exact_gradient_when_targets_do_not_sum_to_one():
  """d/dz -sum_k t_k log softmax(z)_k = sum(t) softmax(z) - t: online LS' first epoch (S^0 = 0)
  has targets that sum to mix, where TensorFlow's fused op would give softmax(z) - t."""
  logits = tf.Variable([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
  targets = losses.online_targets(np.array([0, 2]), np.zeros((3, 3), np.float32), 0.5)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(losses.soft_cross_entropy(targets, logits))
  p = _softmax(logits.numpy().astype(np.float64))
  want = 0.5 * p - 0.5 * np.eye(3)[[0, 2]]
  np.testing.assert_allclose(tape.gradient(loss, logits).numpy(), want, rtol=1e-5, atol=1e-7)


def test_online_label_smoothing_loss_accumulates_and_swaps_at_the_epoch_end():
  """Two epochs through the Keras loss: S^0 = 0, then the authors' S^1; the sums restart."""
  mix, k = 0.5, 4
  loss = losses.OnlineLabelSmoothing(k, mix)
  state = [v.numpy().copy() for v in loss.variables]
  assert all(not s.any() for s in state)  # S^0 = 0 and empty sums.
  matrix = np.zeros((k, k))
  for epoch in range(2):
    batches = _batches(epoch)
    want_losses, want_matrix, _, _ = _authors_epoch(matrix, batches, mix)
    for (logits, labels), want in zip(batches, want_losses):
      got = float(loss(np.eye(k, dtype=np.float32)[labels], logits))
      np.testing.assert_allclose(got, want, rtol=1e-5)
    loss.end_epoch()
    np.testing.assert_allclose(loss.soft_labels.numpy(), want_matrix, rtol=1e-5, atol=1e-6)
    assert not loss.sums.numpy().any() and not loss.counts.numpy().any()
    matrix = want_matrix
  assert loss.get_config()["mix"] == mix and loss.get_config()["num_classes"] == k


# Focal loss (Mukhoti et al. 2020).


def test_focal_loss_is_the_plain_multiclass_focal_loss_on_logits():
  logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0], [0.0, 0.0, 0.0]], np.float32)
  labels = np.array([0, 1, 2])
  p = _softmax(logits.astype(np.float64))[np.arange(3), labels]
  want = -((1 - p) ** 3) * np.log(p)  # No class weight: Keras' default alpha 0.25 is off.
  got = losses.focal_loss(3.0, reduction=None)(np.eye(3, dtype=np.float32)[labels], logits)
  np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)
  # gamma -> 0 is the cross-entropy.
  plain = losses.focal_loss(1e-9, reduction=None)(np.eye(3, dtype=np.float32)[labels], logits)
  np.testing.assert_allclose(plain.numpy(), -np.log(p), rtol=1e-5)


def test_each_loss_setting_builds_its_loss_and_the_default_is_the_papers():
  from ls_keras.core import config

  default = losses.training_loss(config.TrainConfig(alpha=0.1), 10)
  assert isinstance(default, keras.losses.CategoricalCrossentropy)
  assert default.get_config() == losses.label_smoothing_loss(0.1).get_config()
  online = losses.training_loss(config.TrainConfig(loss="online_ls", online_ls_mix=0.3), 10)
  assert isinstance(online, losses.OnlineLabelSmoothing) and online.mix == 0.3
  assert online.soft_labels.shape == (10, 10)
  focal = losses.training_loss(config.TrainConfig(loss="focal", focal_gamma=2.0), 10)
  assert isinstance(focal, keras.losses.CategoricalFocalCrossentropy)
  assert focal.get_config()["gamma"] == 2.0 and focal.get_config()["alpha"] == 1.0
  assert focal.get_config()["from_logits"]
