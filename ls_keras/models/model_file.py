"""A classifier trained anywhere, read from a model file, for the analyses (calibrate, project).

`calibrate --model_file=PATH` and `project --model_file=PATH` take a `.keras` file (loaded in
Keras' safe mode, no code runs) or, with --trust_saved_model, a SavedModel folder, plus a
data set. The model receives what ls_keras' own models receive: float32 images [N, H, W, C]
with raw pixel values in [0, 255] (scaling or normalisation belongs inside the model, e.g. a
`Rescaling(1 / 255)` first layer), and it must output class scores over the data set's
classes. Its logits are found by `models.heads.find_head` (a final softmax is undone); a
SavedModel's layers cannot be read, so its `serve` output is used as the logits.
"""

import dataclasses
import os
from typing import Callable, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from ls_keras.core import checks
from ls_keras.core.errors import UserError
from ls_keras.models import heads
from ls_keras.models import export


@dataclasses.dataclass(frozen=True)
class ModelFile:
  """A loaded model file: its input shape, and how to compute its logits (and features).

  Attributes:
    path: the file or folder as given.
    kind: "keras" or "saved_model".
    input_shape: (H, W, C) the model takes (None where any size is taken).
    num_classes: K, the width of its logits.
    head: where a `.keras` model's features and logits are; None for a SavedModel.
    description: which output is used as the logits, in words (for messages and reports).
  """

  path: str
  kind: str
  input_shape: Tuple[Optional[int], ...]
  num_classes: int
  head: Optional[heads.Head]
  description: str
  serve: Optional[Callable] = None

  def logits(self, images: np.ndarray) -> np.ndarray:
    """Logits [N, K] (float64) of float32 images [N, H, W, C] in [0, 255]."""
    if self.head is not None:
      return self.head.logits(images)
    return np.asarray(self.serve(tf.constant(images, tf.float32)), np.float64)

  def features_and_templates(self) -> Tuple[keras.Model, np.ndarray]:
    """(inputs -> penultimate features, templates [K, D+1]) for the paper's projection.

    Raises:
      UserError: a SavedModel (its layers cannot be read), or logits not from a Dense layer.
    """
    if self.head is None:
      raise UserError(
        f"--model_file={self.path} is a SavedModel: its layers cannot be read, and the "
        "projection needs the penultimate features and the logits layer's weights. Give the "
        "model's .keras file (model.save(PATH.keras))."
      )
    return self.head.features, self.head.templates


def open_model_file(
  path: str,
  *,
  trust_saved_model: bool = False,
  penultimate_layer: str = "",
  logits_layer: str = "",
) -> ModelFile:
  """Loads `path` (see the module docstring) and locates its logits and features.

  Args:
    path: a `.keras` file, or a SavedModel folder (only with `trust_saved_model`).
    trust_saved_model: the user vouches for the SavedModel's author (loading runs its graph).
    penultimate_layer: the layer whose output are the features ('' for the default).
    logits_layer: the layer whose output are the logits ('' for the default).

  Raises:
    UserError: a missing file, a SavedModel without trust, a file that does not load, or
      layers that cannot be found (see `heads.find_head`); layer names for a SavedModel.
  """
  kind = export.model_file_format(path, trust_saved_model)
  if kind == "keras":
    model = export.load_keras_model(path, contract=False)
    head = heads.find_head(
      model,
      penultimate=penultimate_layer or None,
      logits=logits_layer or None,
      where=f"--model_file={path}",
    )
    shape = tuple(model.inputs[0].shape[1:])
    if head.kernel is not None:
      num_classes = head.kernel.shape[1]
    else:
      num_classes = head.logits_model.outputs[0].shape[-1]
    return ModelFile(path, kind, shape, num_classes, head, head.description)
  if penultimate_layer or logits_layer:
    raise UserError(
      f"--model_file={path} is a SavedModel, whose layers cannot be named: drop "
      "--penultimate_layer and --logits_layer (its serve output is used as the logits), or "
      "give the model's .keras file."
    )
  loaded = export.load_saved_model(path)
  serve = getattr(loaded, "serve", None)
  if serve is None or not getattr(serve, "input_signature", None):
    raise UserError(
      f"--model_file={path} is a SavedModel without a 'serve' endpoint taking images; export "
      "the Keras model with model.export(FOLDER)."
    )
  shape = tuple(serve.input_signature[0].shape[1:])
  outputs = serve.get_concrete_function().structured_outputs
  if not isinstance(outputs, tf.Tensor):
    raise UserError(
      f"--model_file={path}: its serve endpoint returns {type(outputs).__name__}, not one "
      "tensor of class scores [N, K]."
    )
  return ModelFile(path, kind, shape, outputs.shape[-1], None, "its serve output", serve)


def check_data(model_file: ModelFile, image_shape, num_classes: int, dataset: str) -> None:
  """The model must take the data set's images and score its classes.

  Raises:
    UserError: naming both shapes, or both class counts.
  """
  shape = tuple(model_file.input_shape)
  fits = len(shape) == len(image_shape) and all(
    a is None or a == b for a, b in zip(shape, image_shape)
  )
  if not fits:
    raise UserError(
      f"--model_file={model_file.path} takes images of shape {shape}, but --dataset={dataset} "
      f"has images of shape {tuple(image_shape)}: give the data set the model was trained on "
      "(or a model for these images)."
    )
  if model_file.num_classes != num_classes:
    raise UserError(
      f"--model_file={model_file.path} scores {model_file.num_classes} classes, but "
      f"--dataset={dataset} has {num_classes}: give the data set the model was trained on."
    )


def split_logits(
  model_file: ModelFile, ds: tf.data.Dataset, split: str, batch_size: int = 512
) -> Tuple[np.ndarray, np.ndarray]:
  """(logits [N, K] float64, labels [N] int64) of a (uint8 image, label) split, in batches.

  Raises:
    UserError: non-finite outputs, or outputs that are probabilities (a softmax that was not
      found and undone), with the fix.
  """
  logits, labels = [], []
  for images, y in ds.batch(batch_size).as_numpy_iterator():
    logits.append(model_file.logits(images.astype(np.float32)))
    labels.append(y)
  logits = np.concatenate(logits) if logits else np.zeros((0, model_file.num_classes))
  labels = np.concatenate(labels).astype(np.int64) if labels else np.zeros(0, np.int64)
  if not np.all(np.isfinite(logits)):
    raise UserError(
      f"--model_file={model_file.path} gives NaN or infinite logits on the {split} split; the "
      "model is broken (for instance a training run that diverged)."
    )
  if checks.looks_like_probabilities(logits):
    fix = (
      "name the layer before the softmax with --logits_layer"
      if model_file.kind == "keras"
      else "give the model's .keras file, whose pre-softmax layer can be found"
    )
    raise UserError(
      f"the outputs of --model_file={model_file.path} ({model_file.description}) look like "
      f"probabilities, not logits: on the {split} split every row is non-negative and sums to "
      f"1, as a softmax outputs. Calibration needs the pre-softmax logits: {fix}."
    )
  return logits, labels


def describe(model_file: ModelFile) -> str:
  """'NAME (how the logits were found)', for reports."""
  return f"{os.path.basename(os.path.normpath(model_file.path))} ({model_file.description})"
