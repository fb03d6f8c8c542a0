"""Mutual information between training-example index and a logit difference (paper Figure 6).

X is the index of one of N training examples of two classes; Y is the difference of those
classes' logits for an augmented copy of it. With L copies per example, Y | x is modelled
as Gaussian with mean mu_x (the mean over copies) and one shared variance sigma^2, and

  I = mean_{x,l} [ log N(y_xl; mu_x, sigma) - log( (1/N) sum_x' N(y_xl; mu_x', sigma) ) ],

which lies in [0, log N]: 0 when the logits carry nothing about which example it was,
log N when every example is told apart.
"""

import os
from typing import Dict, Sequence

import keras
import numpy as np
import tensorflow as tf

from ls_keras import data as data_lib
from ls_keras import export as export_lib
from ls_keras import workdir as workdir_lib
from ls_keras.errors import UserError


def mutual_information(y: np.ndarray) -> Dict[str, float]:
  """The paper's estimate from y [N examples, L copies]; also returns sigma and log N."""
  y = np.asarray(y, np.float64)
  if y.ndim != 2 or y.shape[0] < 2 or y.shape[1] < 2:
    raise UserError(f"the estimate needs N >= 2 examples with L >= 2 copies each; got shape {y.shape}.")
  if not np.all(np.isfinite(y)):
    raise UserError("the logit differences hold NaN or infinite values.")
  n = y.shape[0]
  mu = y.mean(1)
  variance = max(float(np.mean((y - mu[:, None]) ** 2)), np.finfo(np.float64).tiny)
  samples = y.reshape(-1, 1)  # [N*L, 1], row x*L + l.
  log_density = -((samples - mu[None, :]) ** 2) / (2 * variance)  # Shared constants cancel.
  own = log_density[np.arange(n * y.shape[1]), np.repeat(np.arange(n), y.shape[1])]
  peak = log_density.max(1)
  log_mixture = peak + np.log(np.exp(log_density - peak[:, None]).sum(1)) - np.log(n)
  estimate = float(np.mean(own - log_mixture))
  return {"mi": float(np.clip(estimate, 0.0, np.log(n))), "sigma": float(np.sqrt(variance)),
          "log_n": float(np.log(n))}


def check_settings(classes: Sequence[int], num_classes: int, per_class: int, copies: int) -> None:
  if len(classes) != 2 or classes[0] == classes[1]:
    raise UserError(f"--mi_classes={','.join(map(str, classes))} must be two different classes.")
  if min(classes) < 0 or max(classes) >= num_classes:
    raise UserError(f"--mi_classes={','.join(map(str, classes))} must lie in 0-{num_classes - 1}.")
  if per_class < 1 or copies < 2:
    raise UserError(f"--mi_examples_per_class={per_class} must be >= 1 and --mi_augmentations={copies} >= 2 "
                    "(the estimate needs N >= 2 and L >= 2).")


class LogitDifferences:
  """Y for fixed examples under fresh augmentation: one batched forward pass of N*L images."""

  def __init__(self, images: np.ndarray, classes: Sequence[int], copies: int, augmentation: str, seed: int = 0):
    self.images, self.classes, self.copies = images, tuple(classes), copies
    self.augmentation, self.seed = augmentation, seed

  def augmented(self, draw: int) -> tf.Tensor:
    """[N*L] augmented images, example-major; deterministic in (seed, draw)."""
    copies = tf.constant(np.repeat(self.images, self.copies, axis=0))
    return data_lib.augment_batch(copies, self.augmentation, tf.constant([self.seed, draw], tf.int64))

  def __call__(self, model: keras.Model, draw: int) -> np.ndarray:
    export_lib.check_layers(model, f"model '{model.name}'")
    logits = model(self.augmented(draw), training=False)
    logits = np.asarray(keras.ops.convert_to_numpy(logits), np.float64)
    return (logits[:, self.classes[0]] - logits[:, self.classes[1]]).reshape(len(self.images), self.copies)


class MutualInformationCallback(keras.callbacks.Callback):
  """Estimates I(X; Y) every `every_steps` steps; logs it to TensorBoard and a JSON series.

  The training loop pauses at every multiple of `every_steps`, so no estimate is skipped.
  `network` is the classifier whose logits are studied (default: the trained model; for
  a Distiller, its student).
  """

  def __init__(self, differences: LogitDifferences, every_steps: int, series_path: str, logdir: str,
               write: bool = True, network: keras.Model = None):
    super().__init__()
    self.differences, self.every_steps, self.network = differences, every_steps, network
    self.series_path, self.logdir, self.write = series_path, logdir, write
    self.series = []
    self.writer = None

  @classmethod
  def from_config(cls, config, splits: data_lib.Splits, run: workdir_lib.Workdir, write: bool = True,
                  network: keras.Model = None) -> "MutualInformationCallback":
    """From the run's mi_* settings; `write` is False on non-chief workers.

    Raises:
      UserError: classes outside the data set, or too few examples of them.
    """
    classes = tuple(config.mi_classes)
    check_settings(classes, splits.num_classes, config.mi_examples_per_class, config.mi_augmentations)
    images, _ = data_lib.class_examples(splits.train, classes, config.mi_examples_per_class)
    differences = LogitDifferences(images, classes, config.mi_augmentations, splits.spec.augmentation, config.seed)
    return cls(differences, config.mi_every_steps, run.file("mutual_information.json"), run.file("tb", "train"),
               write, network)

  def _step(self) -> int:
    return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

  def on_train_begin(self, logs=None):
    step = self._step()
    if os.path.exists(self.series_path):  # Resumed: keep what the checkpoint vouches for.
      self.series = [p for p in workdir_lib.read_json(self.series_path) if p["step"] <= step]
    self.writer = tf.summary.create_file_writer(self.logdir) if self.write else tf.summary.create_noop_writer()
    if not any(p["step"] == step for p in self.series):
      self._estimate(step)

  def on_train_batch_end(self, batch, logs=None):
    step = self._step()
    if step % self.every_steps == 0 and not any(p["step"] == step for p in self.series):
      self._estimate(step)

  def _estimate(self, step: int) -> None:
    result = mutual_information(self.differences(self.network or self.model, draw=step))
    self.series.append({"step": step, **result})
    with self.writer.as_default(step=step):
      tf.summary.scalar("mutual_information", result["mi"])
    if self.write:
      workdir_lib.atomic_write_json(self.series_path, self.series)


def recompute_from_checkpoints(run: workdir_lib.Workdir, config, splits: data_lib.Splits,
                               build_model) -> list:
  """The estimate afresh at every checkpoint the run kept (training keeps the last two).

  Writes nothing; the caller saves the series (mutual_information_recomputed.json).
  """
  classes = tuple(config.mi_classes)
  check_settings(classes, splits.num_classes, config.mi_examples_per_class, config.mi_augmentations)
  images, _ = data_lib.class_examples(splits.train, classes, config.mi_examples_per_class)
  differences = LogitDifferences(images, classes, config.mi_augmentations, splits.spec.augmentation, config.seed)
  state = tf.train.get_checkpoint_state(run.checkpoints)
  if state is None or not state.all_model_checkpoint_paths:
    raise UserError(f"{run.path} has no checkpoints to recompute the estimate from.")
  series = []
  for path in state.all_model_checkpoint_paths:
    model = build_model()
    model.optimizer.build(model.trainable_variables)
    tf.train.Checkpoint(model=model, optimizer=model.optimizer).read(path).expect_partial()
    step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    series.append({"step": step, "checkpoint": os.path.basename(path),
                   **mutual_information(differences(model, draw=step))})
  workdir_lib.atomic_write_json(run.file("mutual_information_recomputed.json"), series)
  return series
