"""The label-smoothing loss that training compiles, and the targets it takes (paper Section 2).

Label smoothing trains on y * (1 - alpha) + alpha / K instead of the one-hot y (Szegedy et
al. 2016, as the paper's Preliminaries write it). Keras' CategoricalCrossentropy computes it; this
module turns any labels into its targets and names the one configuration training uses.
"""

import keras
import tensorflow as tf

from ls_keras.core import checks
from ls_keras.core.errors import UserError


def one_hot_targets(labels, num_classes: int) -> tf.Tensor:
  """float32 targets [N, K] from integer labels [N] / [N, 1] or one-hot (or soft) targets [N, K].

  The one form the losses take, so that every public loss accepts every label form.
  Integer dtypes are class indices; floating ones are target distributions. Called eagerly
  (from user code) the values are checked too; inside a training graph only the shapes are.

  Args:
    labels: integer class indices (any integer dtype, e.g. int64) of shape [N] or [N, 1];
      or floating targets [N, K]: one-hot, smoothed, or a teacher's probabilities.
    num_classes: K, the number of classes (the logits' width).

  Returns:
    A float32 tensor [N, K] of probabilities, each row a target distribution.

  Raises:
    UserError: integer labels not of shape [N] or [N, 1]; floating targets not of shape
      [N, num_classes] (floating class indices included); eagerly, class indices outside
      [0, K), or target rows that are not distributions (outside [0, 1], or not summing
      to 1 within 1e-3).
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


def label_smoothing_loss(alpha: float, reduction: str = "sum_over_batch_size") -> keras.losses.Loss:
  """The training loss: Keras' categorical cross-entropy on raw logits with LS alpha (Section 2).

  Keras' `CategoricalCrossentropy(label_smoothing=alpha)` computes exactly
  H(y (1 - alpha) + alpha / K, softmax(z)) on one-hot labels (pinned against a NumPy
  reference of the paper's formula in tests/test_losses.py). Classifiers compile it; the
  Distiller's terms call it.

  Args:
    alpha: label smoothing, in [0, 1) (checked by the config, not here).
    reduction: Keras' reduction: the batch mean (scaled for tf.distribute) by default,
      None for per-example values.

  Returns:
    A keras.losses.Loss taking float32 one-hot or soft targets [N, K] and float32 logits
    [N, K]; its value is float32 in nats (a scalar, or [N] with reduction=None).
  """
  return keras.losses.CategoricalCrossentropy(
    from_logits=True, label_smoothing=alpha, reduction=reduction
  )
