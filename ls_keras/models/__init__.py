"""The paper's models in a plain name -> builder registry, and the contract every model keeps.

A builder (`ls_keras.models.networks`) maps normalised input features to the penultimate
features; `build_model` wraps every builder the same way, so every model has a layer named
`penultimate` and a final float32 Dense named `logits` (with a bias, raw logits out, no
softmax), and every analysis works on every model. A new model: a builder in networks.py
and one line in MODELS.
"""

from typing import Callable, Dict, Sequence

import keras
from keras import layers

from ls_keras.core.errors import UserError
from ls_keras.models.batch_norm import FusedBatchNormalization, to_plain_keras
from ls_keras.models.networks import (
  ModelOptions,
  alexnet,
  inception_v4,
  l2_regularizer,
  local_response_normalization,
  mlp,
  resnet56,
  small_cnn,
)

PENULTIMATE = "penultimate"
LOGITS = "logits"
# The TF CIFAR-10 tutorial decays only its two hidden dense layers, not the softmax layer.
UNDECAYED_LOGITS = frozenset({"alexnet"})
Builder = Callable[..., object]
MODELS: Dict[str, Builder] = {
  "small_cnn": small_cnn,
  "alexnet": alexnet,
  "resnet56": resnet56,
  "inception_v4": inception_v4,
  "mlp": mlp,
}

__all__ = [
  "FusedBatchNormalization",
  "LOGITS",
  "MODELS",
  "PENULTIMATE",
  "ModelOptions",
  "build_model",
  "check_contract",
  "local_response_normalization",
  "to_plain_keras",
]


def build_model(
  name: str,
  input_shape: Sequence[int],
  num_classes: int,
  *,
  mean: Sequence[float],
  std: Sequence[float],
  options: ModelOptions = ModelOptions(),
) -> keras.Model:
  """MODELS[name] for raw 0-255 pixel inputs: normalise -> body -> penultimate -> logits.

  Args:
    name: a key of MODELS.
    input_shape: (height, width, channels) of the images.
    num_classes: K, the width of the logits layer.
    mean: per-channel pixel means on the 0-255 scale (normalisation lives in the model, so
      an exported model is self-contained).
    std: per-channel pixel standard deviations on the 0-255 scale.
    options: weight decay, dropout and MLP sizes.

  Returns:
    An uncompiled keras.Model: float32 images [N, H, W, C] in, float32 logits [N, K] out.
  """
  inputs = keras.Input(tuple(input_shape), name="image")
  x = layers.Normalization(mean=list(mean), variance=[s * s for s in std], name="normalize")(inputs)
  features = MODELS[name](x, options)
  features = layers.Identity(name=PENULTIMATE)(features)
  decay = None if name in UNDECAYED_LOGITS else l2_regularizer(options)
  logits = layers.Dense(num_classes, name=LOGITS, dtype="float32", kernel_regularizer=decay)(
    features
  )
  return keras.Model(inputs, logits, name=name)


def check_contract(model: keras.Model, where: str) -> None:
  """Every analysis needs a `penultimate` layer and a final Dense `logits` layer with a bias.

  The paper's analyses read the penultimate activations x and the templates w_k of the
  logits layer (Section 2, Figure 1), so every ls_keras model keeps this contract.

  Args:
    model: the keras.Model to check.
    where: where it came from (a path or a name), for the message.

  Raises:
    UserError: the model (found in `where`) lacks them.
  """
  names = {layer.name for layer in model.layers}
  missing = [n for n in (PENULTIMATE, LOGITS) if n not in names]
  if missing:
    raise UserError(
      f"the model in {where} has no layer named {' or '.join(missing)}; ls_keras' analyses need a "
      "layer 'penultimate' and a final Dense 'logits' layer with a bias (see ls_keras.models)."
    )
  logits = model.get_layer(LOGITS)
  if not isinstance(logits, keras.layers.Dense) or not logits.use_bias:
    raise UserError(f"layer 'logits' of the model in {where} must be a Dense layer with a bias.")
