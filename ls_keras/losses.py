"""Label smoothing as pure functions, and the Keras loss that training compiles."""

import keras
import tensorflow as tf


def smooth_labels(one_hot: tf.Tensor, alpha: float) -> tf.Tensor:
  """The paper's targets: y * (1 - alpha) + alpha / K."""
  one_hot = tf.convert_to_tensor(one_hot, tf.float32)
  num_classes = tf.cast(tf.shape(one_hot)[-1], tf.float32)
  return one_hot * (1.0 - alpha) + alpha / num_classes


def cross_entropy(targets: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
  """Per-example H(targets, softmax(logits)) for soft targets, computed stably from logits."""
  log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
  return -tf.reduce_sum(tf.cast(targets, tf.float32) * log_probs, axis=-1)


def label_smoothing_loss(alpha: float) -> keras.losses.Loss:
  """The training loss: Keras' categorical cross-entropy on raw logits with LS alpha."""
  return keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=alpha)


def scale_for_replicas(loss: tf.Tensor) -> tf.Tensor:
  """Divides a per-replica mean by the replica count, as Keras' own losses do under tf.distribute,
  so that the replicas' summed gradients are those of the global-batch mean."""
  replicas = tf.distribute.get_strategy().num_replicas_in_sync
  return loss / replicas if replicas > 1 else loss
