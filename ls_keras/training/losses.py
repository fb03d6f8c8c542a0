"""Label smoothing as pure functions, and the Keras loss that training compiles (Section 2)."""

import keras
import tensorflow as tf

from ls_keras.core import checks
from ls_keras.core.errors import UserError


def one_hot_targets(labels, num_classes: int) -> tf.Tensor:
  """float32 targets [N, K] from integer labels [N] / [N, 1] or one-hot (or soft) targets [N, K].

  Integer dtypes are class indices; floating ones are target distributions. Called eagerly
  (from user code) the values are checked too; inside a training graph only the shapes are.

  Raises:
    UserError: a shape that does not fit `num_classes`; eagerly, class indices outside
      [0, K), or rows that are not distributions (negative, or not summing to 1).
  """
  labels = tf.convert_to_tensor(labels)
  if labels.dtype.is_integer:
    if labels.shape.rank not in (None, 1) and not (
      labels.shape.rank == 2 and labels.shape[-1] == 1
    ):
      raise UserError(f"integer labels must have shape (N,) or (N, 1); got {labels.shape}.")
    if tf.executing_eagerly():
      checks.class_indices(labels.numpy(), num_classes)
    return tf.one_hot(tf.reshape(labels, [-1]), num_classes, dtype=tf.float32)
  if labels.shape.rank != 2 or labels.shape[-1] not in (None, num_classes):
    raise UserError(
      f"target distributions must have shape (N, {num_classes}); got {labels.shape} (class "
      "indices must be integers)."
    )
  if tf.executing_eagerly():
    checks.probabilities(labels.numpy(), "targets")
  return tf.cast(labels, tf.float32)


def smooth_labels(labels, alpha: float, num_classes: int = None) -> tf.Tensor:
  """The paper's targets y * (1 - alpha) + alpha / K (Section 2), float32 [N, K].

  Args:
    labels: one-hot [N, K], or integer class indices [N] / [N, 1] with `num_classes`.
    alpha: label smoothing, in [0, 1).
    num_classes: K, needed for integer labels.

  Raises:
    UserError: alpha outside [0, 1), or labels of another shape.
  """
  if not 0.0 <= float(alpha) < 1.0:
    raise UserError(f"alpha={alpha} is not allowed: label smoothing alpha must lie in [0, 1).")
  labels = tf.convert_to_tensor(labels)
  if labels.dtype.is_integer and num_classes is None:
    raise UserError("integer labels need num_classes to be smoothed.")
  one_hot = one_hot_targets(labels, num_classes or labels.shape[-1])
  k = tf.cast(tf.shape(one_hot)[-1], tf.float32)
  return one_hot * (1.0 - alpha) + alpha / k


def cross_entropy(targets, logits) -> tf.Tensor:
  """Per-example H(targets, softmax(logits)) in nats, [N] float32, computed stably from logits.

  Args:
    targets: distributions [N, K] (one-hot, smoothed, a teacher's), or integer labels [N] / [N, 1].
    logits: raw scores [N, K].
  """
  logits = tf.cast(logits, tf.float32)
  targets = one_hot_targets(targets, logits.shape[-1])
  log_probs = tf.nn.log_softmax(logits, axis=-1)
  return -tf.reduce_sum(targets * log_probs, axis=-1)


def label_smoothing_loss(alpha: float, reduction: str = "sum_over_batch_size") -> keras.losses.Loss:
  """The training loss: Keras' categorical cross-entropy on raw logits with LS alpha (Section 2).

  Keras' `CategoricalCrossentropy(label_smoothing=alpha)` computes exactly
  H(y (1 - alpha) + alpha / K, softmax(z)) on one-hot labels (pinned against `smooth_labels`
  and `cross_entropy` in the tests). Classifiers compile it; the Distiller's terms call it.

  Args:
    alpha: label smoothing, in [0, 1) (checked by the config, not here).
    reduction: Keras' reduction: the batch mean (scaled for tf.distribute) by default,
      None for per-example values.

  Returns:
    A loss taking one-hot or soft targets [N, K] and logits [N, K]; in nats, float32.
  """
  return keras.losses.CategoricalCrossentropy(
    from_logits=True, label_smoothing=alpha, reduction=reduction
  )
