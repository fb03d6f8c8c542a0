"""Batch normalisation through TensorFlow's fused kernel while training, plain Keras when saved.

Keras 3's `BatchNormalization` casts bfloat16 activations to float32 and computes the
moments and the normalisation as separate ops, forward and backward. TensorFlow's
`FusedBatchNormV3` (oneDNN on CPUs, cuDNN on GPUs) does the same arithmetic in one kernel
each way and takes bfloat16 (and float16) inputs with float32 statistics. On a ResNet-56
training step that is most of the difference between Keras and PyTorch (see
`tools/benchmark.py` and the README's Performance section).

`FusedBatchNormalization` has exactly the weights of `keras.layers.BatchNormalization`
(gamma, beta, moving mean, moving variance) and the same maths: normalisation by the
batch's mean and biased variance, moving averages of those with `momentum`. Only the
kernels differ, so results agree to rounding (a test checks one step against Keras').
Inference and every case the fused kernel does not cover (masks, renorm, an axis other
than the last, inputs that are not 4-D) run Keras' own code. `to_plain_keras` turns a
model's fused layers back into Keras' own class, so saved and exported models load in
plain Keras without ls_keras.
"""

import keras
import tensorflow as tf

_FUSED_DTYPES = ("float32", "bfloat16", "float16")


class FusedBatchNormalization(keras.layers.BatchNormalization):
  """`keras.layers.BatchNormalization` whose training step runs TensorFlow's fused kernel."""

  def _fuses(self, inputs, training, mask) -> bool:
    axis = self.axis if isinstance(self.axis, int) else None
    return (
      bool(training)
      and self.trainable
      and mask is None
      and not self.renorm
      and len(inputs.shape) == 4
      and axis in (-1, 3)
      and keras.backend.backend() == "tensorflow"
      and keras.backend.standardize_dtype(inputs.dtype) in _FUSED_DTYPES
    )

  def call(self, inputs, training=None, mask=None):
    """The batch-normalised inputs [N, H, W, C], in the layer's compute dtype."""
    if not self._fuses(inputs, training, mask):
      return super().call(inputs, training=training, mask=mask)
    ones = tf.ones_like(self.moving_mean)
    gamma = tf.cast(self.gamma, tf.float32) if self.scale else ones
    beta = tf.cast(self.beta, tf.float32) if self.center else tf.zeros_like(ones)
    outputs, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(
      inputs, gamma, beta, epsilon=self.epsilon, data_format="NHWC", is_training=True
    )
    # The kernel returns the batch variance with Bessel's correction (for its own moving
    # average); Keras averages the biased one, which the normalisation itself used.
    count = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], tf.float32)
    variance = unbiased * (count - 1.0) / count
    self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
    self.moving_variance.assign(
      self.moving_variance * self.momentum + variance * (1.0 - self.momentum)
    )
    return tf.cast(outputs, self.compute_dtype)


def to_plain_keras(model: keras.Model) -> keras.Model:
  """`model` with every FusedBatchNormalization as a `keras.layers.BatchNormalization`.

  Same architecture, weights and outputs; returns `model` itself when it has no fused layer.
  Only functional and sequential models are converted (the ones `build_model` makes).
  For exports that load in plain Keras, without ls_keras' custom layer.

  Args:
    model: a functional or sequential keras.Model, e.g. from `models.build_model`.

  Returns:
    A keras.Model with the same inputs, outputs and weights (`model` itself if unchanged).
  """
  if not any(isinstance(layer, FusedBatchNormalization) for layer in model.layers):
    return model

  def plain(layer):
    cls = (
      keras.layers.BatchNormalization
      if isinstance(layer, FusedBatchNormalization)
      else layer.__class__
    )
    return cls.from_config(layer.get_config())

  clone = keras.models.clone_model(model, clone_function=plain)
  clone.set_weights(model.get_weights())
  return clone
