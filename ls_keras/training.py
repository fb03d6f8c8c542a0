"""Training and evaluation: one custom loop over `strategy.run` that serves every strategy.

Keras 3's `model.fit` does not run under MultiWorkerMirroredStrategy (keras-team/keras#20585),
so the loop is ours, but its step is Keras' own: `model(x, training=True)`, then
`model.compute_loss` (which averages over the global batch and adds the regularisation
losses, scaled per replica exactly as `fit` does), `optimizer.scale_loss` and
`optimizer.apply_gradients`. A model that overrides `compute_loss` (the Distiller) trains
through the same loop unchanged.
"""

import contextlib
import dataclasses
import math
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tensorflow.python.framework import config as tf_framework_config  # Op determinism off again.

from ls_keras import calibration
from ls_keras import checkpoints
from ls_keras import config as config_lib
from ls_keras import data as data_lib
from ls_keras import export as export_lib
from ls_keras import hardware as hardware_lib
from ls_keras import information
from ls_keras import losses
from ls_keras import models
from ls_keras import strategy as strategy_lib
from ls_keras.errors import TrainingDivergedError, UserError
from ls_keras import workdir as workdir_lib
from ls_keras.workdir import Workdir


def make_optimizer(config) -> keras.optimizers.Optimizer:
  """SGD (momentum, Nesterov) or Adam with a piecewise-constant schedule in steps.

  Gradient clipping is the Loop's job, not the optimizer's: Keras' `global_clipnorm`
  clips each replica's partial gradient before the all-reduce, so its result would
  depend on the number of replicas.
  """
  learning_rate = config.learning_rate
  if config.lr_boundaries:
    values = [config.learning_rate * config.lr_decay ** i for i in range(len(config.lr_boundaries) + 1)]
    learning_rate = keras.optimizers.schedules.PiecewiseConstantDecay(list(config.lr_boundaries), values)
  if config.optimizer == "sgd":
    return keras.optimizers.SGD(learning_rate, momentum=config.momentum, nesterov=config.nesterov)
  return keras.optimizers.Adam(learning_rate)


def build_network(config, splits: data_lib.Splits) -> keras.Model:
  """The configured model for the data's input shape and classes, uncompiled.

  Its initial weights (and dropout seeds) depend only on `config.seed`: the global random
  state is reset just before the build, so whatever ran earlier in the process (loading
  a teacher, another run of a sweep) cannot change them.
  """
  keras.utils.set_random_seed(config.seed)
  options = models.ModelOptions(weight_decay=config.weight_decay, dropout=config.dropout,
                                hidden_units=tuple(config.hidden_units))
  return models.build_model(config.model, splits.spec.image_shape, splits.num_classes,
                            mean=splits.spec.mean, std=splits.spec.std, options=options)


def build_classifier(config, splits: data_lib.Splits) -> keras.Model:
  """The configured model, compiled with CategoricalCrossentropy(label_smoothing=alpha)."""
  model = build_network(config, splits)
  model.compile(optimizer=make_optimizer(config), loss=losses.label_smoothing_loss(config.alpha),
                loss_weights=config.loss_scale)
  return model


# A mean loss above this means exploding weights: cross-entropy starts near log K, and
# even a confidently wrong prediction costs a few dozen nats.
DIVERGED_LOSS = 1e6


class NonFiniteLoss(Exception):
  """Raised by `Loop.train` when a step's loss is NaN, infinite or above DIVERGED_LOSS."""

  def __init__(self, steps_done: int):
    super().__init__(f"diverging loss after {steps_done} good steps")
    self.steps_done = steps_done


class Loop:
  """Compiled train and predict functions of one model under one strategy."""

  def __init__(self, model: keras.Model, strategy: tf.distribute.Strategy, jit_compile: bool = False,
               clip_norm: float = 0.0):
    self.model, self.strategy, self.clip_norm = model, strategy, clip_norm
    step = tf.function(self._train_step, jit_compile=True) if jit_compile else self._train_step

    @tf.function
    def train_steps(iterator, num_steps):
      loss_sum, correct, count = tf.constant(0.0), tf.constant(0.0), tf.constant(0.0)
      done, finite = tf.constant(0), tf.constant(True)
      for _ in tf.range(num_steps):
        per_replica = strategy.run(step, args=(next(iterator),))
        loss, c, n = (strategy.reduce("SUM", v, axis=None) for v in per_replica)
        if not (tf.math.is_finite(loss) and loss < DIVERGED_LOSS):  # Stop at once: the weights are spoiled.
          finite = tf.constant(False)
          break
        loss_sum, correct, count, done = loss_sum + loss, correct + c, count + n, done + 1
      return loss_sum / tf.cast(tf.maximum(done, 1), tf.float32), correct / tf.maximum(count, 1.0), done, finite

    @tf.function
    def predict_step(iterator):
      outputs = strategy.run(self._predict_step, args=(next(iterator),))
      return tuple(strategy.gather(v, axis=0) for v in outputs)

    self._train_steps, self._predict_step_fn = train_steps, predict_step

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
    """Runs `num_steps` steps; returns their mean loss and accuracy, and the model's own
    metrics (`model.metrics` other than Keras' loss tracker: the Distiller's loss terms).

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
    outputs = [[t.numpy() for t in self._predict_step_fn(iterator)] for _ in range(num_batches)]
    logits, labels, masks = (np.concatenate(parts) for parts in zip(*outputs))
    keep = masks > 0
    return logits[keep], labels[keep]


class Progress:
  """A Keras progress bar on a terminal, and one log line per epoch."""

  def __init__(self, total_epochs: int):
    self.total_epochs, self.tty = total_epochs, sys.stdout.isatty()
    self.bar = None

  def start_epoch(self, epoch: int, steps: int) -> None:
    if self.tty:
      print(f"Epoch {epoch + 1}/{self.total_epochs}")
      self.bar = keras.utils.Progbar(steps, stateful_metrics=["loss", "accuracy"])

  def update(self, step: int, logs: Dict[str, float]) -> None:
    if self.bar is not None:
      self.bar.update(step, list(logs.items()))

  def end_epoch(self, epoch: int, logs: Dict[str, float], seconds: float) -> None:
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
    return math.ceil(self.total_steps / self.steps_per_epoch)

  def epoch_steps(self, epoch: int) -> int:
    return min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch)

  def chunks(self, epoch: int) -> List[int]:
    """Sizes of the successive train calls within `epoch`."""
    step, end = epoch * self.steps_per_epoch, epoch * self.steps_per_epoch + self.epoch_steps(epoch)
    sizes = []
    while step < end:
      nxt = min([end, step + self.steps_per_execution] + [(step // p + 1) * p for p in self.pause_every])
      sizes.append(nxt - step)
      step = nxt
    return sizes


def make_schedule(config, train_size: int, replicas: int, callbacks: Sequence[keras.callbacks.Callback] = ()
                  ) -> Schedule:
  """The run's schedule; callbacks that must see certain steps declare `every_steps`.

  Raises:
    UserError: a global batch that the replicas cannot split evenly, or larger than the
      training set.
  """
  if config.batch_size % replicas:
    raise UserError(f"--batch_size={config.batch_size} is not allowed with {replicas} replicas: the global "
                    f"batch must be a multiple of {replicas}.")
  steps_per_epoch = train_size // config.batch_size
  if steps_per_epoch == 0:
    raise UserError(f"--batch_size={config.batch_size} exceeds the {train_size} training examples; use a "
                    "smaller batch or more examples.")
  pauses = tuple(sorted({cb.every_steps for cb in callbacks if getattr(cb, "every_steps", 0)}))
  return Schedule(steps_per_epoch, config.train_steps or config.epochs * steps_per_epoch,
                  config.steps_per_execution, pauses)


def evaluate_split(loop: Loop, ds: tf.data.Dataset, num_classes: int, batch_size: int):
  """Logits and labels of a whole split, in its original order."""
  return loop.predict(lambda ctx: data_lib.eval_batches(ds, num_classes, batch_size=batch_size,
                                                        input_context=ctx))


@dataclasses.dataclass
class Job:
  """Everything one training run needs, built and checked before the workdir is claimed."""
  config: Any
  kind: str  # "train" or "distill": the run kind recorded in config.json.
  model: keras.Model  # What trains (a classifier, or a Distiller).
  exported: keras.Model  # What is saved (the classifier, or the Distiller's student).
  runtime: "Runtime"
  schedule: Schedule
  callbacks: Sequence[keras.callbacks.Callback] = ()
  extra_metrics: Dict[str, Any] = dataclasses.field(default_factory=dict)


def prepare_job(config, kind: str, model: keras.Model, exported: keras.Model, rt: "Runtime",
                callbacks: Sequence[keras.callbacks.Callback] = (), extra_metrics: Optional[dict] = None) -> Job:
  """Checks the schedule and builds the optimizer state: every refusal happens here, before
  anything is written."""
  schedule = make_schedule(config, rt.splits.sizes["train"], rt.strategy.num_replicas_in_sync, callbacks)
  with rt.strategy.scope():
    model.optimizer.build(model.trainable_variables)
  return Job(config, kind, model, exported, rt, schedule, tuple(callbacks), dict(extra_metrics or {}))


def run_job(job: Job, workdir: Workdir, overwrite: bool = False) -> dict:
  """Claims the workdir, trains (resuming from its checkpoint), evaluates, exports; returns metrics.

  Writes TensorBoard logs, per-epoch checkpoints, history.json, logits, the exported model
  and, last of all, metrics.json.

  Raises:
    TrainingDivergedError: the loss became NaN or infinite (the last good checkpoint is kept).
  """
  strategy, config = job.runtime.strategy, job.config
  chief = strategy_lib.is_chief(strategy)
  epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")  # Host-side loop state.
  checkpoint = tf.train.Checkpoint(model=job.model, optimizer=job.model.optimizer, epoch=epoch_var)
  resuming = workdir.check(config, job.kind, overwrite)  # Read-only, like the restore: both may refuse.
  restored = checkpoints.restore_latest(checkpoint, workdir.checkpoints) if resuming else None
  start_epoch = int(epoch_var.numpy())
  if chief:
    workdir.start(config, job.kind, overwrite, session=job.runtime.session(start_epoch))
  if restored:
    logging.info("Resuming from %s (epoch %d done).", restored, start_epoch)
  # Every worker saves (saving is collective under MultiWorkerMirroredStrategy); only the
  # chief into the workdir, the others into a scratch folder removed at the end.
  ckpt_dir = workdir.checkpoints if chief else tempfile.mkdtemp(prefix="ls_keras_worker_ckpt_")
  writers = {name: (tf.summary.create_file_writer(workdir.file("tb", name)) if chief
                    else tf.summary.create_noop_writer()) for name in ("train", "validation")}
  loop = Loop(job.model, strategy, config.jit_compile, config.grad_clip_norm)
  history = _read_history(workdir.file("history.json"), start_epoch)
  callbacks = keras.callbacks.CallbackList(list(job.callbacks), model=job.model)
  progress = Progress(job.schedule.epochs)
  validation = None
  callbacks.on_train_begin()
  for epoch in range(start_epoch, job.schedule.epochs):
    started = time.time()
    callbacks.on_epoch_begin(epoch)
    logs = _train_epoch(job, loop, epoch, writers["train"], callbacks, progress)
    validation = _evaluate(job, loop, "validation")  # The final weights' validation logits, reused below.
    val = calibration.summary(validation[1], logits=validation[0])
    step = int(job.model.optimizer.iterations.numpy())
    with writers["validation"].as_default(step=step):
      for name in ("accuracy", "nll", "ece"):
        tf.summary.scalar(name, val[name])
    epoch_logs = {**logs, **{f"val_{k}": val[k] for k in ("accuracy", "nll", "ece")}}
    history.append({"epoch": epoch + 1, "step": step, **epoch_logs})
    callbacks.on_epoch_end(epoch, epoch_logs)
    epoch_var.assign(epoch + 1)
    if chief:  # History first: a resume trims it to the checkpointed epochs, so it never lags.
      workdir_lib.atomic_write_json(workdir.file("history.json"), history)
    checkpoints.save(checkpoint, ckpt_dir, epoch + 1)
    progress.end_epoch(epoch, epoch_logs, time.time() - started)
  callbacks.on_train_end()
  for writer in writers.values():
    writer.flush()
  if not chief:
    shutil.rmtree(ckpt_dir, ignore_errors=True)
  return _finish(job, loop, workdir, chief, validation)


def _train_epoch(job: Job, loop: Loop, epoch: int, writer, callbacks, progress: Progress) -> Dict[str, float]:
  """Trains one epoch in chunks, logging each chunk; stops at the first non-finite loss."""
  config, model, strategy = job.config, job.model, job.runtime.strategy
  progress.start_epoch(epoch, job.schedule.epoch_steps(epoch))
  train_ds = strategy.distribute_datasets_from_function(
      lambda ctx: data_lib.train_batches(job.runtime.splits, batch_size=config.batch_size, seed=config.seed,
                                         epoch=epoch, augment=config.augment, input_context=ctx))
  iterator, done, logs = iter(train_ds), 0, {}
  for chunk in job.schedule.chunks(epoch):
    first_step = int(model.optimizer.iterations.numpy())
    try:
      logs = loop.train(iterator, chunk)
    except NonFiniteLoss as e:
      raise _diverged(job, epoch, first_step + e.steps_done + 1) from None
    done += chunk
    step = int(model.optimizer.iterations.numpy())
    with writer.as_default(step=step):
      for name, value in logs.items():
        tf.summary.scalar(name, value)
      tf.summary.scalar("learning_rate", float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))
    progress.update(done, logs)
    callbacks.on_train_batch_end(step, logs)
    checkpoints.pause_point("step", step)
  return logs


def _diverged(job: Job, epoch: int, step: int) -> TrainingDivergedError:
  config = job.config
  kept = f"the checkpoint of epoch {epoch}" if epoch else "no checkpoint (it diverged in the first epoch)"
  return TrainingDivergedError(
      f"training diverged: the loss became NaN, infinite or above {DIVERGED_LOSS:g} at step {step} (epoch "
      f"{epoch + 1}). The run stopped; "
      f"the workdir keeps {kept}. The usual cause is a learning rate too high for this model "
      f"(--learning_rate={config.learning_rate:g}); lower it, or clip gradients with --grad_clip_norm=1, then "
      "rerun with --overwrite or a new --workdir.")


def _evaluate(job: Job, loop: Loop, split: str):
  return evaluate_split(loop, getattr(job.runtime.splits, split), job.runtime.splits.num_classes,
                        job.config.batch_size * 2)


def _finish(job: Job, loop: Loop, workdir: Workdir, chief: bool, validation) -> dict:
  """Final metrics on every split, logits for analysis, the exported model, then metrics.json."""
  model = job.model
  metrics = {"epochs": job.schedule.epochs, "steps": int(model.optimizer.iterations.numpy()), **job.extra_metrics}
  evaluated = {"validation": validation} if validation is not None else {}
  for split in ("train", "validation", "test"):
    logits, labels = evaluated.get(split) or _evaluate(job, loop, split)
    metrics[split] = calibration.summary(labels, logits=logits)
    if chief and split != "train":
      workdir.save_logits(split, logits, labels)
  if chief:
    export_lib.export_model(job.exported, workdir.keras_model, workdir.saved_model)
    workdir.write_metrics(metrics)
  return metrics


def _read_history(path: str, epochs_done: int) -> list:
  """The per-epoch records of the epochs a resumed run keeps."""
  if not os.path.exists(path):
    return []
  return [h for h in workdir_lib.read_json(path) if h["epoch"] <= epochs_done]


@dataclasses.dataclass(frozen=True)
class Runtime:
  """The devices, strategy, precision and data one run uses."""
  strategy: tf.distribute.Strategy
  splits: data_lib.Splits
  precision: str
  precision_reason: str
  hardware: hardware_lib.Hardware

  def session(self, start_epoch: int) -> dict:
    """What config.json records about this (re)start: when, where, at which precision."""
    return {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "start_epoch": start_epoch,
            "precision": self.precision, "precision_reason": self.precision_reason,
            "hardware": self.hardware.to_dict()}


@contextlib.contextmanager
def runtime(config):
  """Devices, strategy, precision, determinism and seeds for one run, then its data.

  Yields a `Runtime`. Restores the process' dtype policy and op determinism afterwards,
  so runs in one process (sweeps, tests) do not leak settings into each other.
  """
  policy = keras.config.dtype_policy()
  deterministic = tf_framework_config.is_op_determinism_enabled()
  try:
    strategy_lib.split_cpu(config.cpu_devices)
    strategy = strategy_lib.make_strategy(config.strategy)
    machine = hardware_lib.detect()
    precision, reason = hardware_lib.resolve_precision(config.precision, machine)
    if config.precision == hardware_lib.AUTO:
      logging.info("precision auto -> %s: %s.", precision, reason)
    keras.config.set_dtype_policy(precision)
    if config.deterministic:
      tf.config.experimental.enable_op_determinism()
    yield Runtime(strategy, load_data(config), precision, reason, machine)
  finally:
    keras.config.set_dtype_policy(policy)
    if not deterministic:
      tf_framework_config.disable_op_determinism()  # No public API restores it (TF 2.21).


def load_data(config) -> data_lib.Splits:
  return data_lib.load_splits(config.dataset, data_dir=config.data_dir,
                              fashion_mnist_source=config.fashion_mnist_source,
                              validation_size=config.validation_size, train_examples=config.train_examples,
                              eval_examples=config.eval_examples)


def train_and_evaluate(config: config_lib.TrainConfig, workdir: str, overwrite: bool = False) -> dict:
  """Trains one model with label smoothing `config.alpha` into `workdir`; returns its metrics.

  A finished workdir with the same config returns its metrics without training; an
  unfinished one resumes from its last checkpoint. Every check that can refuse the run
  (config, workdir, data, model, schedule, MI settings) runs before anything is written.

  Raises:
    UserError: bad settings, data or workdir (nothing written), or divergence.
  """
  config_lib.validate(config)
  run_dir = Workdir(workdir)
  finished = run_dir.finished_metrics(config, "train", overwrite)
  if finished is not None:
    return finished
  with runtime(config) as rt:
    with rt.strategy.scope():
      model = build_classifier(config, rt.splits)
    callbacks = []
    if config.mi_every_steps:
      callbacks.append(information.MutualInformationCallback.from_config(
          config, rt.splits, run_dir, write=strategy_lib.is_chief(rt.strategy)))
    job = prepare_job(config, "train", model, model, rt, callbacks)
    return run_job(job, run_dir, overwrite)
