"""The mutual information followed during training, and recomputed from checkpoints (Figure 6).

`LogitDifferences` gives Y for fixed training examples under fresh augmentation in one
batched forward pass; `MutualInformationCallback` estimates I(X; Y) every N steps and
writes TensorBoard and a JSON series.
"""

import os
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from ls_keras import data as data_lib
from ls_keras import models
from ls_keras.core import workdir as workdir_lib
from ls_keras.core.errors import UserError, WorkdirError
from ls_keras.core import checkpoints
from ls_keras.mutual_information.estimator import check_settings, mutual_information


class LogitDifferences:
  """Y for fixed examples under fresh augmentation: one batched forward pass of N*L images.

  The paper's Figure 6 setup (Section 4): N training examples of two classes, L augmented
  copies each, Y the difference of those classes' logits.

  Args:
    images: the N examples, float32 [N, H, W, C], pixels 0-255.
    classes: the two class indices (a, b); Y = z_a - z_b.
    copies: L, augmented copies of each example.
    augmentation: the data set's augmentation name (see `data.augment_batch`).
    seed: with the draw number, fixes the augmentation.
  """

  def __init__(
    self, images: np.ndarray, classes: Sequence[int], copies: int, augmentation: str, seed: int = 0
  ):
    self.images, self.classes, self.copies = images, tuple(classes), copies
    self.augmentation, self.seed = augmentation, seed

  def augmented(self, draw: int) -> tf.Tensor:
    """[N*L] augmented images, example-major; deterministic in (seed, draw)."""
    copies = tf.constant(np.repeat(self.images, self.copies, axis=0))
    return data_lib.augment_batch(
      copies, self.augmentation, tf.constant([self.seed, draw], tf.int64)
    )

  def __call__(self, model: keras.Model, draw: int) -> np.ndarray:
    """Y [N examples, L copies] (float64): `model`'s logit difference on augmentation `draw`."""
    models.check_contract(model, f"model '{model.name}'")
    logits = model(self.augmented(draw), training=False)
    logits = np.asarray(keras.ops.convert_to_numpy(logits), np.float64)
    return (logits[:, self.classes[0]] - logits[:, self.classes[1]]).reshape(
      len(self.images), self.copies
    )


class MutualInformationCallback(keras.callbacks.Callback):
  """Estimates I(X; Y) every `every_steps` steps; logs it to TensorBoard and a JSON series.

  The training loop pauses at every multiple of `every_steps`, so no estimate is skipped.
  `network` is the classifier whose logits are studied (default: the trained model; for
  a Distiller, its student). The paper's Figure 6 series (Section 4), estimated by
  `mutual_information` in nats.
  """

  def __init__(
    self,
    differences: LogitDifferences,
    every_steps: int,
    series_path: str,
    logdir: str,
    write: bool = True,
    network: keras.Model = None,
  ):
    super().__init__()
    self.differences, self.every_steps, self.network = differences, every_steps, network
    self.series_path, self.logdir, self.write = series_path, logdir, write
    self.series = []
    self.writer = None

  @classmethod
  def from_config(
    cls,
    config,
    splits: data_lib.Splits,
    run: workdir_lib.Workdir,
    write: bool = True,
    network: keras.Model = None,
  ) -> "MutualInformationCallback":
    """From the run's mi_* settings; `write` is False on non-chief workers.

    Raises:
      UserError: classes outside the data set, or too few examples of them.
    """
    classes = tuple(config.mi_classes)
    check_settings(
      classes, splits.num_classes, config.mi_examples_per_class, config.mi_augmentations
    )
    images, _ = data_lib.class_examples(splits.train, classes, config.mi_examples_per_class)
    differences = LogitDifferences(
      images, classes, config.mi_augmentations, splits.spec.augmentation, config.seed
    )
    return cls(
      differences,
      config.mi_every_steps,
      run.file("mutual_information.json"),
      run.file("tb", "train"),
      write,
      network,
    )

  def _step(self) -> int:
    return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

  def on_train_begin(self, logs=None):
    """Keeps the estimates a resumed run's checkpoint vouches for; estimates at the start."""
    step = self._step()
    if os.path.exists(self.series_path):  # Resumed: keep what the checkpoint vouches for.
      self.series = [p for p in workdir_lib.read_json(self.series_path) if p["step"] <= step]
    self.writer = (
      tf.summary.create_file_writer(self.logdir) if self.write else tf.summary.create_noop_writer()
    )
    if not any(p["step"] == step for p in self.series):
      self._estimate(step)

  def on_train_batch_end(self, batch, logs=None):
    """Estimates at every multiple of every_steps (the loop pauses there)."""
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


def callback_for_run(
  config,
  splits: data_lib.Splits,
  run: workdir_lib.Workdir,
  write: bool,
  network: keras.Model,
) -> Optional[MutualInformationCallback]:
  """The run's MI callback when `config.mi_every_steps` asks for one, else None.

  A `training.CallbackFactory`: pass `callbacks=(callback_for_run,)` to
  `training.train_and_evaluate` or `distillation.run.distill_and_evaluate`.

  Args:
    config: the run's TrainConfig or DistillConfig (its mi_* settings and seed).
    splits: the run's data; the examples are drawn from its training split.
    run: the run's workdir (mutual_information.json, TensorBoard's train log).
    write: False on non-chief workers.
    network: the classifier whose logits are studied (a Distiller's student).

  Returns:
    A MutualInformationCallback, or None when mi_every_steps is 0.

  Raises:
    UserError: classes outside the data set, or too few examples of them.
  """
  if not config.mi_every_steps:
    return None
  return MutualInformationCallback.from_config(config, splits, run, write, network)


def recompute_from_checkpoints(
  run: workdir_lib.Workdir, config, splits: data_lib.Splits, build_model
) -> list:
  """The estimate afresh at every checkpoint the run kept (training keeps the last two).

  Writes nothing; the caller saves the series (mutual_information_recomputed.json). The
  paper's Figure 6 measure (Section 4) for a run trained without the callback.

  Args:
    run: the run's workdir, whose checkpoints are read.
    config: the run's TrainConfig or DistillConfig (its mi_* settings and seed).
    splits: the run's data; the examples are drawn from its training split.
    build_model: a function of no arguments returning the run's compiled model (with its
      optimizer), in the run's strategy scope, so the checkpoints restore into it.

  Returns:
    A list, one dict per checkpoint, oldest first: "step" (int), "checkpoint" (file
    name), and `mutual_information`'s "mi", "sigma" and "log_n" (floats; nats, logit
    units, nats).

  Raises:
    UserError: no checkpoints, bad mi_* settings (see `check_settings`), or too few
      training examples of the two classes (see `data.class_examples`).
    WorkdirError (a UserError): a checkpoint that cannot be read.
  """
  paths = checkpoints.listed(run.checkpoints)  # Only the run's own checkpoints.
  if not paths:
    raise UserError(f"{run.path} has no checkpoints to recompute the estimate from.")
  classes = tuple(config.mi_classes)
  check_settings(classes, splits.num_classes, config.mi_examples_per_class, config.mi_augmentations)
  images, _ = data_lib.class_examples(splits.train, classes, config.mi_examples_per_class)
  differences = LogitDifferences(
    images, classes, config.mi_augmentations, splits.spec.augmentation, config.seed
  )
  series = []
  for path in paths:
    model = build_model()
    model.optimizer.build(model.trainable_variables)
    try:
      checkpoints.make_checkpoint(model).read(path).expect_partial()
    except checkpoints.UNREADABLE as e:
      raise WorkdirError(
        f"the checkpoint {path} cannot be read ({type(e).__name__}); it is truncated or "
        "corrupt, so the estimate cannot be recomputed from it."
      ) from e
    step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    series.append(
      {
        "step": step,
        "checkpoint": os.path.basename(path),
        **mutual_information(differences(model, draw=step)),
      }
    )
  return series
