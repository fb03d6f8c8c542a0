"""The training loop: one custom loop over `strategy.run` that serves every strategy.

Keras 3's `model.fit` does not run under MultiWorkerMirroredStrategy (keras-team/keras#20585),
so the loop is ours, but its step is Keras' own: `model(x, training=True)`, then
`model.compute_loss` (which averages over the global batch and adds the regularisation
losses, scaled per replica exactly as `fit` does), `optimizer.scale_loss` and
`optimizer.apply_gradients`. A model that overrides `compute_loss` (the Distiller) trains
through the same loop unchanged; loss parts it tracks come back from `model.metrics`.
"""

import dataclasses
import math
import sys
from typing import Callable, Dict, List, Sequence, Tuple

import keras
import tensorflow as tf
from absl import logging

from ls_keras import data as data_lib
from ls_keras.core.errors import UserError

# A mean loss above this means exploding weights: cross-entropy starts near log K, and
# even a confidently wrong prediction costs a few dozen nats.
DIVERGED_LOSS = 1e6


class NonFiniteLoss(Exception):
  """Raised by `Loop.train` when a step's loss is NaN, infinite or above DIVERGED_LOSS."""

  def __init__(self, steps_done: int):
    super().__init__(f"diverging loss after {steps_done} good steps")
    self.steps_done = steps_done


class Loop:
  """Compiled train and predict functions of one model under one strategy.

  `clip_norm` clips the global gradient norm (0: none); `rate_scales`, one multiplier per
  variable of `model.trainable_variables` (() for none), then scales each one's gradient:
  with SGD, its learning rate (see `training.rate_scales`).
  """

  def __init__(
    self,
    model: keras.Model,
    strategy: tf.distribute.Strategy,
    jit_compile: bool = False,
    clip_norm: float = 0.0,
    rate_scales: Sequence[float] = (),
  ):
    self.model, self.strategy, self.clip_norm = model, strategy, clip_norm
    self.rate_scales = tuple(rate_scales)
    step = tf.function(self._train_step, jit_compile=True) if jit_compile else self._train_step

    @tf.function
    def train_steps(iterator, num_steps):
      loss_sum, correct, count = tf.constant(0.0), tf.constant(0.0), tf.constant(0.0)
      done, finite = tf.constant(0), tf.constant(True)
      for _ in tf.range(num_steps):
        per_replica = strategy.run(step, args=(next(iterator),))
        loss, c, n = (strategy.reduce("SUM", v, axis=None) for v in per_replica)
        if not (
          tf.math.is_finite(loss) and loss < DIVERGED_LOSS
        ):  # Stop at once: the weights are spoiled.
          finite = tf.constant(False)
          break
        loss_sum, correct, count, done = loss_sum + loss, correct + c, count + n, done + 1
      return (
        loss_sum / tf.cast(tf.maximum(done, 1), tf.float32),
        correct / tf.maximum(count, 1.0),
        done,
        finite,
      )

    @tf.function
    def predict_all(iterator, num_batches):
      # One call per split: the whole pass runs inside the function, not a call per batch.
      outputs = [
        tf.TensorArray(dtype, size=num_batches, infer_shape=False)
        for dtype in (tf.float32, tf.int64, tf.float32)
      ]
      for i in tf.range(num_batches):
        per_replica = strategy.run(self._predict_step, args=(next(iterator),))
        gathered = [strategy.gather(v, axis=0) for v in per_replica]
        outputs = [array.write(i, value) for array, value in zip(outputs, gathered)]
      return tuple(array.concat() for array in outputs)

    self._train_steps, self._predict_all = train_steps, predict_all

  def _train_step(self, batch):
    x, y = batch
    model = self.model
    with tf.GradientTape() as tape:
      y_pred = model(x, training=True)
      loss = model.compute_loss(x=x, y=y, y_pred=y_pred, training=True)  # Already / num_replicas.
      scaled = model.optimizer.scale_loss(loss)
    variables = model.trainable_variables
    gradients = tape.gradient(scaled, variables)
    if self.clip_norm:
      gradients = self._clip_global(gradients)
    if self.rate_scales:
      gradients = [g if c == 1.0 else g * c for g, c in zip(gradients, self.rate_scales)]
    model.optimizer.apply_gradients(zip(gradients, variables))
    hits = tf.equal(tf.argmax(y_pred, -1), tf.argmax(y, -1))
    return loss, tf.reduce_sum(tf.cast(hits, tf.float32)), tf.cast(tf.shape(y)[0], tf.float32)

  def _clip_global(self, gradients):
    """Clips the all-reduced gradient to `clip_norm`; returns this replica's share of it.

    apply_gradients sums the replicas' gradients, so each passes 1/R of the clipped
    global gradient. The norm is compared in loss-scaled units under mixed_float16.
    """
    context = tf.distribute.get_replica_context()
    replicas = self.strategy.num_replicas_in_sync
    total = context.all_reduce("SUM", gradients) if replicas > 1 else gradients
    loss_scale = self.model.optimizer.scale_loss(tf.constant(1.0))
    clipped, _ = tf.clip_by_global_norm(total, self.clip_norm * loss_scale)
    return [g / replicas for g in clipped]

  def _predict_step(self, batch):
    x, y, mask = batch
    return tf.cast(self.model(x, training=False), tf.float32), tf.argmax(y, -1), mask

  def train(self, iterator, num_steps: int) -> Dict[str, float]:
    """Runs `num_steps` steps; returns their mean loss and accuracy, and the model's metrics.

    The model's metrics are `model.metrics` other than Keras' loss tracker (the Distiller's
    loss terms).

    Raises:
      NonFiniteLoss: a step's loss was NaN or infinite; the steps after it did not run.
    """
    loss, accuracy, done, finite = self._train_steps(iterator, tf.constant(num_steps))
    if not bool(finite):
      raise NonFiniteLoss(int(done))
    logs = {"loss": float(loss), "accuracy": float(accuracy)}
    for metric in self.model.metrics:
      if metric.name not in ("loss", "compile_metrics"):
        logs[metric.name] = float(metric.result())
    self.model.reset_metrics()
    return logs

  def predict(self, dataset_fn: Callable) -> tuple:
    """(logits, labels) over a padded, masked eval dataset (see data.eval_batches)."""
    num_batches = int(dataset_fn(None).cardinality())
    iterator = iter(self.strategy.distribute_datasets_from_function(dataset_fn))
    logits, labels, masks = (
      t.numpy() for t in self._predict_all(iterator, tf.constant(num_batches))
    )
    keep = masks > 0
    return logits[keep], labels[keep]


class EpochProgress:
  """A Keras progress bar on a terminal, and one log line per epoch.

  Neither when not `verbose`: sweeps show their own progress over many runs.
  """

  def __init__(self, total_epochs: int, verbose: bool = True):
    self.total_epochs, self.tty, self.verbose = total_epochs, sys.stdout.isatty(), verbose
    self.bar = None

  def start_epoch(self, epoch: int, steps: int) -> None:
    """Opens a progress bar for the epoch's `steps` steps (on a terminal)."""
    if self.tty and self.verbose:
      print(f"Epoch {epoch + 1}/{self.total_epochs}")
      self.bar = keras.utils.Progbar(steps, stateful_metrics=["loss", "accuracy"])

  def update(self, step: int, logs: Dict[str, float]) -> None:
    """Moves the bar to `step` with the latest logs."""
    if self.bar is not None:
      self.bar.update(step, list(logs.items()))

  def end_epoch(self, epoch: int, logs: Dict[str, float], seconds: float) -> None:
    """Logs the epoch's line: its metrics and time."""
    if not self.verbose:
      return
    line = " ".join(f"{k}={v:.4f}" for k, v in logs.items())
    logging.info("epoch %d/%d: %s (%.1fs)", epoch + 1, self.total_epochs, line, seconds)


@dataclasses.dataclass(frozen=True)
class Schedule:
  """How many steps, in which epochs, and where the loop pauses (MI estimates, logging)."""

  steps_per_epoch: int
  total_steps: int
  steps_per_execution: int
  pause_every: Tuple[int, ...] = ()  # Also pause at every multiple of each of these global steps.

  @property
  def epochs(self) -> int:
    """Epochs in the run, the last possibly partial."""
    return math.ceil(self.total_steps / self.steps_per_epoch)

  def epoch_steps(self, epoch: int) -> int:
    """Steps in `epoch` (fewer in a partial last epoch)."""
    return min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch)

  def position(self, global_step: int) -> Tuple[int, int]:
    """(epoch, steps of it done) at `global_step`: where a run resumed from that step goes on."""
    return divmod(global_step, self.steps_per_epoch)

  def chunks(self, epoch: int, done: int = 0) -> List[int]:
    """Sizes of the successive train calls within `epoch`, `done` of its steps already run."""
    step = epoch * self.steps_per_epoch + done
    end = epoch * self.steps_per_epoch + self.epoch_steps(epoch)
    sizes = []
    while step < end:
      nxt = min(
        [end, step + self.steps_per_execution] + [(step // p + 1) * p for p in self.pause_every]
      )
      sizes.append(nxt - step)
      step = nxt
    return sizes


def make_schedule(
  config, train_size: int, replicas: int, callbacks: Sequence[keras.callbacks.Callback] = ()
) -> Schedule:
  """The run's Schedule: steps per epoch, total steps, and the global steps the loop pauses at.

  Callbacks that must see certain steps (the mutual information estimates of Figure 6)
  declare `every_steps`; the loop also pauses at every multiple of
  `config.checkpoint_every_steps` to save. A partial last batch of an epoch is dropped.

  Args:
    config: a TrainConfig or DistillConfig; reads batch_size (global, examples per step),
      epochs, train_steps (0: epochs x steps per epoch), steps_per_execution and
      checkpoint_every_steps (0: none).
    train_size: examples in the training split (`Splits.sizes["train"]`).
    replicas: the strategy's `num_replicas_in_sync`.
    callbacks: the run's Keras callbacks; each one's `every_steps` (int global steps, 0 or
      absent: none) adds pauses.

  Returns:
    A Schedule with steps_per_epoch = train_size // batch_size, total_steps (int steps) and
    pause_every, the sorted distinct nonzero step periods.

  Raises:
    UserError: a global batch that the replicas cannot split evenly, or larger than the
      training set.
  """
  if config.batch_size % replicas:
    raise UserError(
      f"--batch_size={config.batch_size} is not allowed with {replicas} replicas: the global "
      f"batch must be a multiple of {replicas}."
    )
  steps_per_epoch = train_size // config.batch_size
  if steps_per_epoch == 0:
    raise UserError(
      f"--batch_size={config.batch_size} exceeds the {train_size} training examples; use a "
      "smaller batch or more examples."
    )
  every = [getattr(cb, "every_steps", 0) for cb in callbacks] + [config.checkpoint_every_steps]
  pauses = tuple(sorted({n for n in every if n}))
  return Schedule(
    steps_per_epoch,
    config.train_steps or config.epochs * steps_per_epoch,
    config.steps_per_execution,
    pauses,
  )


def evaluate_split(loop: Loop, ds: tf.data.Dataset, num_classes: int, batch_size: int):
  """Logits and labels of a whole split, in its original order: what every metric is computed on.

  The split is padded to whole global batches and the padding masked out (see
  `data.eval_batches`), so every example counts once on any number of replicas.

  Args:
    loop: the Loop of the model being evaluated (its strategy runs the predictions).
    ds: the split: (uint8 image [H, W, C], int64 label) examples, e.g. `Splits.validation`.
    num_classes: K, the number of classes.
    batch_size: global evaluation batch (examples per step, split among replicas).

  Returns:
    (logits, labels): NumPy float32 logits [N, K] (cast from the model's dtype under mixed
    precision) and int64 class indices [N], N the examples in `ds`, in its order.
  """
  return loop.predict(
    lambda ctx: data_lib.eval_batches(ds, num_classes, batch_size=batch_size, input_context=ctx)
  )
