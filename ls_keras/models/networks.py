"""The paper's networks as builders: normalised inputs in, penultimate features out.

`ls_keras.models.build_model` wraps each the same way (normalisation, `penultimate`,
`logits`). Builders use only Keras' own layers and ops, so saved models load in plain Keras.
"""

import dataclasses
from typing import Tuple

import keras
from keras import layers, ops

from ls_keras.models.batch_norm import FusedBatchNormalization


@dataclasses.dataclass(frozen=True)
class ModelOptions:
  """The model-shaping settings a builder may use."""

  weight_decay: float = 0.0
  dropout: float = 0.0
  hidden_units: Tuple[int, ...] = (1200, 1200)


def l2_regularizer(options: ModelOptions):
  """lambda/2 * ||w||^2, the tf.nn.l2_loss weight decay of the paper's TF recipes (None if 0)."""
  return keras.regularizers.L2(options.weight_decay / 2) if options.weight_decay else None


def local_response_normalization(
  x, depth_radius: int = 4, bias: float = 1.0, alpha: float = 0.001 / 9.0, beta: float = 0.75
):
  """tf.nn.local_response_normalization (the TF CIFAR-10 tutorial's `norm1/2`) from Keras ops.

  x / (bias + alpha * sum of x^2 over the 2 * depth_radius + 1 nearest channels)^beta,
  computed in float32 (LRN has no bfloat16 CPU kernel, and bfloat16 powers lose too much).
  Built from Keras' own ops rather than a custom layer, so a saved model loads in plain
  Keras (`keras.saving.load_model(path, safe_mode=True)`) without importing ls_keras.
  Used by the paper's CIFAR-10 AlexNet (Appendix A: the TF tutorial's network).

  Args:
    x: a Keras tensor [N, H, W, C] of activations, any float dtype.
    depth_radius: channels on each side in the sum.
    bias: the additive constant.
    alpha: the scale of the sum of squares.
    beta: the exponent.

  Returns:
    A Keras tensor of x's shape [N, H, W, C] and dtype (computed in float32).
  """
  channels, width = x.shape[-1], 2 * depth_radius + 1
  x32 = ops.cast(x, "float32")
  # Window sums as differences of one running sum over the channels (a leading zero, then
  # the zero-padded squares): two slices and a subtraction, forward and backward, where
  # summing 2 * depth_radius + 1 shifted slices took most of AlexNet's step.
  padded = ops.pad(ops.square(x32), [[0, 0], [0, 0], [0, 0], [depth_radius + 1, depth_radius]])
  running = ops.cumsum(padded, axis=-1)
  window = running[..., width : width + channels] - running[..., :channels]
  return ops.cast(x32 * ops.power(bias + alpha * window, -beta), x.dtype)


def small_cnn(x, options: ModelOptions):
  """A fast CNN for 28x28 inputs (the Fashion-MNIST default): conv32-pool-conv64-pool-dense128.

  No BatchNorm: on CPU it runs in float32 and cancels the 1.5-2.8x that bfloat16 gives.
  """
  for filters in (32, 64):
    x = layers.Conv2D(
      filters, 3, padding="same", activation="relu", kernel_regularizer=l2_regularizer(options)
    )(x)
    x = layers.MaxPooling2D(2)(x)
  x = layers.Flatten()(x)
  if options.dropout:
    x = layers.Dropout(options.dropout)(x)
  return layers.Dense(128, activation="relu", kernel_regularizer=l2_regularizer(options))(x)


def alexnet(x, options: ModelOptions):
  """The TF CIFAR-10 tutorial network the paper calls AlexNet; weight decay on the dense layers."""
  x = layers.Conv2D(64, 5, padding="same", activation="relu")(x)
  x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
  x = local_response_normalization(x)
  x = layers.Conv2D(64, 5, padding="same", activation="relu")(x)
  x = local_response_normalization(x)
  x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
  x = layers.Flatten()(x)
  x = layers.Dense(384, activation="relu", kernel_regularizer=l2_regularizer(options))(x)
  if options.dropout:
    x = layers.Dropout(options.dropout)(x)
  return layers.Dense(192, activation="relu", kernel_regularizer=l2_regularizer(options))(x)


def _residual_block(x, filters, strides, options):
  shortcut = x
  y = layers.Conv2D(
    filters,
    3,
    strides=strides,
    padding="same",
    use_bias=False,
    kernel_regularizer=l2_regularizer(options),
  )(x)
  y = FusedBatchNormalization()(y)
  y = layers.ReLU()(y)
  y = layers.Conv2D(
    filters, 3, padding="same", use_bias=False, kernel_regularizer=l2_regularizer(options)
  )(y)
  y = FusedBatchNormalization()(y)
  if strides != 1 or shortcut.shape[-1] != filters:
    shortcut = layers.Conv2D(
      filters, 1, strides=strides, use_bias=False, kernel_regularizer=l2_regularizer(options)
    )(x)
    shortcut = FusedBatchNormalization()(shortcut)
  return layers.ReLU()(layers.Add()([shortcut, y]))


def resnet56(x, options: ModelOptions):
  """CIFAR ResNet-56 (He et al. 2016): 3 stages x 9 basic blocks, 16/32/64 filters."""
  x = layers.Conv2D(
    16, 3, padding="same", use_bias=False, kernel_regularizer=l2_regularizer(options)
  )(x)
  x = layers.ReLU()(FusedBatchNormalization()(x))
  for stage, filters in enumerate((16, 32, 64)):
    for block in range(9):
      x = _residual_block(x, filters, 2 if stage > 0 and block == 0 else 1, options)
  return layers.GlobalAveragePooling2D()(x)


def _conv_bn(x, filters, kernel, strides=1, padding="same", options=ModelOptions()):
  x = layers.Conv2D(
    filters,
    kernel,
    strides=strides,
    padding=padding,
    use_bias=False,
    kernel_regularizer=l2_regularizer(options),
  )(x)
  return layers.ReLU()(FusedBatchNormalization(scale=False)(x))


def inception_v4(x, options: ModelOptions):
  """Inception-v4 (Szegedy et al. 2017) for 299x299 ImageNet inputs (any side >= 75 builds)."""

  def c(x, filters, kernel, strides=1, padding="same"):
    return _conv_bn(x, filters, kernel, strides, padding, options)

  def cat(tensors):
    return layers.Concatenate()(tensors)

  # Stem.
  x = c(x, 32, 3, 2, "valid")
  x = c(x, 32, 3, 1, "valid")
  x = c(x, 64, 3)
  x = cat([layers.MaxPooling2D(3, 2, "valid")(x), c(x, 96, 3, 2, "valid")])
  a = c(c(x, 64, 1), 96, 3, 1, "valid")
  b = c(c(c(c(x, 64, 1), 64, (1, 7)), 64, (7, 1)), 96, 3, 1, "valid")
  x = cat([a, b])
  x = cat([c(x, 192, 3, 2, "valid"), layers.MaxPooling2D(3, 2, "valid")(x)])
  for _ in range(4):  # Inception-A.
    x = cat(
      [
        c(layers.AveragePooling2D(3, 1, "same")(x), 96, 1),
        c(x, 96, 1),
        c(c(x, 64, 1), 96, 3),
        c(c(c(x, 64, 1), 96, 3), 96, 3),
      ]
    )
  x = cat(
    [
      layers.MaxPooling2D(3, 2, "valid")(x),
      c(x, 384, 3, 2, "valid"),  # Reduction-A.
      c(c(c(x, 192, 1), 224, 3), 256, 3, 2, "valid"),
    ]
  )
  for _ in range(7):  # Inception-B.
    x = cat(
      [
        c(layers.AveragePooling2D(3, 1, "same")(x), 128, 1),
        c(x, 384, 1),
        c(c(c(x, 192, 1), 224, (1, 7)), 256, (7, 1)),
        c(c(c(c(c(x, 192, 1), 192, (1, 7)), 224, (7, 1)), 224, (1, 7)), 256, (7, 1)),
      ]
    )
  x = cat(
    [
      layers.MaxPooling2D(3, 2, "valid")(x),
      c(c(x, 192, 1), 192, 3, 2, "valid"),  # Reduction-B.
      c(c(c(c(x, 256, 1), 256, (1, 7)), 320, (7, 1)), 320, 3, 2, "valid"),
    ]
  )
  for _ in range(3):  # Inception-C.
    b3 = c(x, 384, 1)
    b4 = c(c(c(x, 384, 1), 448, (1, 3)), 512, (3, 1))
    x = cat(
      [
        c(layers.AveragePooling2D(3, 1, "same")(x), 256, 1),
        c(x, 256, 1),
        c(b3, 256, (1, 3)),
        c(b3, 256, (3, 1)),
        c(b4, 256, (3, 1)),
        c(b4, 256, (1, 3)),
      ]
    )
  x = layers.GlobalAveragePooling2D()(x)
  if options.dropout:  # Szegedy et al. keep 0.8 (dropout 0.2): the recipe sets it.
    x = layers.Dropout(options.dropout)(x)
  return x


def mlp(x, options: ModelOptions):
  """Fully connected ReLU net (the paper's MNIST teacher 1200-1200 and student 800-800)."""
  x = layers.Flatten()(x)
  for units in options.hidden_units:
    x = layers.Dense(units, activation="relu", kernel_regularizer=l2_regularizer(options))(x)
    if options.dropout:
      x = layers.Dropout(options.dropout)(x)
  return x
