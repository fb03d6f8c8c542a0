"""The penultimate features and logits of any Keras classifier, its own or a stranger's.

ls_keras' models name their layers (`penultimate`, `logits`); a model trained elsewhere
does not, and often ends in a softmax. `find_head` locates both: the logits are the last
Dense layer's output (or a named layer's), with a final softmax undone, by taking the
Dense layer's pre-activation `x W + b` or the input of a separate `Softmax` /
`Activation("softmax")` layer; the penultimate features are the input of that Dense layer
(or a named layer's output). Analyses then read logits and features through one `Head`.
"""

import dataclasses
from typing import Optional

import keras
import numpy as np

from ls_keras.core.errors import UserError

PENULTIMATE = "penultimate"  # As in ls_keras.models (not imported: that package imports this).
LOGITS = "logits"


@dataclasses.dataclass(frozen=True)
class Head:
  """Where a classifier's penultimate features and logits are, and how to compute them.

  Attributes:
    features: a Keras model, the classifier's input -> penultimate activations [N, D].
    kernel: the logits Dense layer's kernel [D, K] (float64), or None when the logits come
      from a layer that is not Dense (then there are no templates).
    bias: its bias [K] (zeros for a Dense layer without one), or None as `kernel`.
    logits_model: input -> logits [N, K] for a logits layer that is not Dense; None otherwise
      (the logits are then `features @ kernel + bias`).
    description: one line saying which layers were used and whether a softmax was undone.
  """

  features: keras.Model
  kernel: Optional[np.ndarray]
  bias: Optional[np.ndarray]
  logits_model: Optional[keras.Model]
  description: str

  @property
  def templates(self) -> np.ndarray:
    """Templates [K, D+1] (float64): kernel columns with the bias appended (paper Section 2).

    Raises:
      UserError: the logits do not come from a Dense layer, so there are no templates.
    """
    if self.kernel is None:
      raise UserError(
        f"the templates of the paper's projection are the columns of a Dense logits layer, but "
        f"{self.description}. Name a Dense layer with --logits_layer (logits=)."
      )
    return np.concatenate([self.kernel, self.bias[None, :]], axis=0).T

  def penultimate(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Penultimate activations [N, D] (float64) of float32 images [N, H, W, C], in batches."""
    return _batched(self.features, images, batch_size)

  def logits(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Logits [N, K] (float64, before any softmax) of float32 images [N, H, W, C], in batches."""
    if self.logits_model is not None:
      return _batched(self.logits_model, images, batch_size)
    return self.penultimate(images, batch_size) @ self.kernel + self.bias


def _batched(model: keras.Model, images: np.ndarray, batch_size: int) -> np.ndarray:
  """A direct call per batch (not `Model.predict`, which traces anew for every model)."""
  parts = [
    keras.ops.convert_to_numpy(model(images[i : i + batch_size], training=False))
    for i in range(0, len(images), batch_size)
  ]
  return np.concatenate(parts).astype(np.float64)


def _activation_name(layer) -> str:
  activation = getattr(layer, "activation", None)
  return getattr(activation, "__name__", str(activation)) if activation is not None else ""


def _is_softmax(layer) -> bool:
  """A `Softmax` layer, or an `Activation` layer whose function is softmax."""
  return isinstance(layer, keras.layers.Softmax) or (
    isinstance(layer, keras.layers.Activation) and _activation_name(layer) == "softmax"
  )


def ends_in_softmax(model: keras.Model) -> Optional[str]:
  """The name of the model's final softmax layer, or None.

  A final softmax is a last layer that is a Dense layer with softmax activation, or a
  `Softmax` / `Activation("softmax")` layer. A Keras model, not a SavedModel: only layers
  can be read. Models with several outputs, or whose output comes from another kind of
  layer, give None.
  """
  if len(getattr(model, "outputs", None) or []) != 1 or not model.layers:
    return None
  last = model.layers[-1]
  if _is_softmax(last) or (
    isinstance(last, keras.layers.Dense) and _activation_name(last) == "softmax"
  ):
    return last.name
  return None


def _layer(model: keras.Model, name: str, flag: str, where: str):
  try:
    return model.get_layer(name)
  except ValueError as e:
    names = ", ".join(layer.name for layer in model.layers)
    raise UserError(
      f"{flag}={name} is not a layer of the model in {where}; its layers are: {names}."
    ) from e


def _single_input(model: keras.Model, where: str):
  if len(model.inputs) != 1:
    raise UserError(
      f"the model in {where} has {len(model.inputs)} inputs; ls_keras' analyses feed one image "
      "tensor [N, H, W, C]."
    )
  return model.inputs[0]


def find_head(
  model: keras.Model,
  penultimate: Optional[str] = None,
  logits: Optional[str] = None,
  where: str = "",
) -> Head:
  """Locates a classifier's penultimate features and its logits (before any softmax).

  Logits: the layer named `logits` (default: the layer named "logits" in ls_keras' own
  models, else the last Dense layer). A Dense layer with a softmax activation gives its
  pre-activation `x W + b`; a linear one its output; a `Softmax` or `Activation("softmax")`
  layer named here gives its input; any other layer its output, as is.
  Penultimate features: the layer named `penultimate` (default: ls_keras' "penultimate",
  else the input of the logits Dense layer).

  Args:
    model: a Keras model with one input (images [N, H, W, C]).
    penultimate: a layer name, or None for the default.
    logits: a layer name, or None for the default.
    where: the model's file, for messages.

  Raises:
    UserError: a named layer that does not exist (the layers are listed), a model without
      a Dense layer when none is named, a Dense logits layer with an activation that is
      neither linear nor softmax (its outputs are not logits), or penultimate features
      whose width does not match the logits kernel.
  """
  where = where or f"model '{model.name}'"
  inputs = _single_input(model, where)
  names = {layer.name for layer in model.layers}
  if logits is None and LOGITS in names:
    logits = LOGITS
  if penultimate is None and PENULTIMATE in names:
    penultimate = PENULTIMATE
  if logits is not None:
    layer = _layer(model, logits, "--logits_layer", where)
  else:
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    if not dense:
      raise UserError(
        f"the model in {where} has no Dense layer, so its logits cannot be found: name the "
        "layer whose output are the logits with --logits_layer (logits=)."
      )
    layer = dense[-1]
  kernel = bias = logits_model = None
  if isinstance(layer, keras.layers.Dense):
    activation = _activation_name(layer)
    if activation not in ("linear", "softmax"):
      raise UserError(
        f"the logits layer '{layer.name}' of the model in {where} is a Dense layer with "
        f"activation '{activation}': its outputs are not logits (nor softmax probabilities "
        "whose logits could be recovered). Name the layer whose output are the logits with "
        "--logits_layer (logits=)."
      )
    kernel = np.asarray(keras.ops.convert_to_numpy(layer.kernel), np.float64)
    bias = (
      np.asarray(keras.ops.convert_to_numpy(layer.bias), np.float64)
      if layer.use_bias
      else np.zeros(kernel.shape[1])
    )
    undone = " (its softmax undone: the pre-activation x W + b)" if activation == "softmax" else ""
    source = f"the logits are the output of Dense layer '{layer.name}'{undone}"
    default_features = layer.input
  elif _is_softmax(layer):
    logits_model = keras.Model(inputs, layer.input, name="logits")
    source = f"the logits are the input of softmax layer '{layer.name}'"
    default_features = None
  else:
    logits_model = keras.Model(inputs, layer.output, name="logits")
    source = f"the logits are the output of layer '{layer.name}' ({type(layer).__name__})"
    default_features = None
  if penultimate is not None:
    features_tensor = _layer(model, penultimate, "--penultimate_layer", where).output
    features_name = f"the output of layer '{penultimate}'"
  elif default_features is not None:
    features_tensor = default_features
    features_name = f"the input of '{layer.name}'"
  else:
    features_tensor = layer.input
    features_name = f"the input of '{layer.name}'"
  features = keras.Model(inputs, features_tensor, name="penultimate_features")
  width = features.outputs[0].shape[-1]
  if kernel is not None and (len(features.outputs[0].shape) != 2 or width != kernel.shape[0]):
    raise UserError(
      f"the penultimate features ({features_name}, shape {features.outputs[0].shape}) of the "
      f"model in {where} do not feed the logits layer '{layer.name}' (kernel "
      f"{tuple(kernel.shape)}): name the layer whose output is its input with "
      "--penultimate_layer (penultimate=)."
    )
  return Head(features, kernel, bias, logits_model, f"{source}; features: {features_name}")
