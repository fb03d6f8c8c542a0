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
import tempfile
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from ls_keras import calibration
from ls_keras import checkpoints
from ls_keras import config as config_lib
from ls_keras import data as data_lib
from ls_keras import export as export_lib
from ls_keras import information
from ls_keras import losses
from ls_keras import models
from ls_keras import strategy as strategy_lib
from ls_keras.errors import UserError
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
  """The configured model for the data's input shape and classes, uncompiled."""
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


class Loop:
  """Compiled train and predict functions of one model under one strategy."""

  def __init__(self, model: keras.Model, strategy: tf.distribute.Strategy, jit_compile: bool = False,
               clip_norm: float = 0.0):
    self.model, self.strategy, self.clip_norm = model, strategy, clip_norm
    step = tf.function(self._train_step, jit_compile=True) if jit_compile else self._train_step

    @tf.function
    def train_steps(iterator, num_steps):
      loss_sum, correct, count = tf.constant(0.0), tf.constant(0.0), tf.constant(0.0)
      for _ in tf.range(num_steps):
        per_replica = strategy.run(step, args=(next(iterator),))
        loss, c, n = (strategy.reduce("SUM", v, axis=None) for v in per_replica)
        loss_sum, correct, count = loss_sum + loss, correct + c, count + n
      return loss_sum / tf.cast(num_steps, tf.float32), correct / count

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
    """Runs `num_steps` steps; returns their mean loss and accuracy, and any loss parts the
    model tracks in `loss_trackers` (the Distiller's hard and soft terms)."""
    loss, accuracy = self._train_steps(iterator, tf.constant(num_steps))
    logs = {"loss": float(loss), "accuracy": float(accuracy)}
    for tracker in getattr(self.model, "loss_trackers", ()):
      logs[tracker.name] = float(tracker.result())
      tracker.reset_state()
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
  """A Keras progress bar on a terminal; one log line per epoch otherwise."""

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
    prefix = "  " if self.tty else f"epoch {epoch + 1}/{self.total_epochs}: "
    print(f"{prefix}{line} ({seconds:.1f}s)", flush=True)


@dataclasses.dataclass(frozen=True)
class Schedule:
  """How many steps, in which epochs, and where the loop pauses (MI estimates, logging)."""
  steps_per_epoch: int
  total_steps: int
  steps_per_execution: int
  pause_every: int = 0  # Also pause at multiples of this global step (0: never).

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
      nxt = min(end, step + self.steps_per_execution)
      if self.pause_every:
        nxt = min(nxt, (step // self.pause_every + 1) * self.pause_every)
      sizes.append(nxt - step)
      step = nxt
    return sizes


def evaluate_split(loop: Loop, ds: tf.data.Dataset, num_classes: int, batch_size: int):
  """Logits and labels of a whole split, in its original order."""
  return loop.predict(lambda ctx: data_lib.eval_batches(ds, num_classes, batch_size=batch_size,
                                                        input_context=ctx))


def run_training(*, model: keras.Model, exported: keras.Model, strategy: tf.distribute.Strategy,
                 splits: data_lib.Splits, config, workdir: Workdir,
                 callbacks: Sequence[keras.callbacks.Callback] = (), extra_metrics: Optional[dict] = None) -> dict:
  """Trains `model` (resuming from the workdir's checkpoint), evaluates, exports `exported`.

  Writes TensorBoard logs, per-epoch checkpoints, history.json, logits, the exported model
  and, last of all, metrics.json. Returns the metrics.
  """
  replicas = strategy.num_replicas_in_sync
  if config.batch_size % replicas:
    raise UserError(f"--batch_size={config.batch_size} is not allowed with {replicas} replicas: the global "
                    f"batch must be a multiple of {replicas}.")
  steps_per_epoch = splits.sizes["train"] // config.batch_size
  if steps_per_epoch == 0:
    raise UserError(f"--batch_size={config.batch_size} exceeds the {splits.sizes['train']} training examples.")
  schedule = Schedule(steps_per_epoch, config.train_steps or config.epochs * steps_per_epoch,
                      config.steps_per_execution, getattr(config, "mi_every_steps", 0))
  chief = strategy_lib.is_chief(strategy)
  loop = Loop(model, strategy, config.jit_compile, config.grad_clip_norm)
  with strategy.scope():
    model.optimizer.build(model.trainable_variables)
  epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")  # Host-side loop state.
  checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, epoch=epoch_var)
  # Every worker saves (saving is collective under MultiWorkerMirroredStrategy); only the
  # chief into the workdir, the others into a scratch folder removed at the end.
  ckpt_dir = workdir.checkpoints if chief else tempfile.mkdtemp(prefix="ls_keras_worker_ckpt_")
  restored = checkpoints.restore_latest(checkpoint, workdir.checkpoints)
  if restored:
    print(f"Resuming from {restored} (epoch {int(epoch_var.numpy())} done).", flush=True)
  writers = {name: (tf.summary.create_file_writer(workdir.file("tb", name)) if chief
                    else tf.summary.create_noop_writer()) for name in ("train", "validation")}
  history_path = workdir.file("history.json")
  history = _read_history(history_path, int(epoch_var.numpy()))
  eval_batch = config.batch_size * 2
  callback_list = keras.callbacks.CallbackList(list(callbacks), model=model)
  progress = Progress(schedule.epochs)
  evaluated = {}
  callback_list.on_train_begin()
  for epoch in range(int(epoch_var.numpy()), schedule.epochs):
    start = time.time()
    callback_list.on_epoch_begin(epoch)
    progress.start_epoch(epoch, schedule.epoch_steps(epoch))
    train_ds = strategy.distribute_datasets_from_function(
        lambda ctx, e=epoch: data_lib.train_batches(splits, batch_size=config.batch_size, seed=config.seed,
                                                    epoch=e, augment=config.augment, input_context=ctx))
    iterator, done = iter(train_ds), 0
    for chunk in schedule.chunks(epoch):
      logs = loop.train(iterator, chunk)
      done += chunk
      step = int(model.optimizer.iterations.numpy())
      with writers["train"].as_default(step=step):
        for name, value in logs.items():
          tf.summary.scalar(name, value)
        tf.summary.scalar("learning_rate", float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))
      progress.update(done, logs)
      callback_list.on_train_batch_end(step, logs)
      checkpoints.pause_point("step", step)
    logits, labels = evaluate_split(loop, splits.validation, splits.num_classes, eval_batch)
    evaluated = {"validation": (logits, labels)}  # The final weights' validation logits, reused below.
    val = calibration.summary(labels, logits=logits)
    with writers["validation"].as_default(step=int(model.optimizer.iterations.numpy())):
      for name in ("accuracy", "nll", "ece"):
        tf.summary.scalar(name, val[name])
    epoch_logs = {**logs, **{f"val_{k}": val[k] for k in ("accuracy", "nll", "ece")}}
    history.append({"epoch": epoch + 1, "step": int(model.optimizer.iterations.numpy()), **epoch_logs})
    callback_list.on_epoch_end(epoch, epoch_logs)
    epoch_var.assign(epoch + 1)
    if chief:  # History first: a resume trims it to the checkpointed epochs, so it never lags.
      workdir_lib.atomic_write_json(history_path, history)
    checkpoints.save(checkpoint, ckpt_dir, epoch + 1)
    progress.end_epoch(epoch, epoch_logs, time.time() - start)
  callback_list.on_train_end()
  for writer in writers.values():
    writer.flush()
  metrics = {"epochs": schedule.epochs, "steps": int(model.optimizer.iterations.numpy()), **(extra_metrics or {})}
  for split in ("train", "validation", "test"):
    if split not in evaluated:
      evaluated[split] = evaluate_split(loop, getattr(splits, split), splits.num_classes, eval_batch)
    logits, labels = evaluated[split]
    metrics[split] = calibration.summary(labels, logits=logits)
    if chief and split != "train":
      workdir.save_logits(split, logits, labels)
  if chief:
    export_lib.export_model(exported, workdir.keras_model, workdir.saved_model)
    workdir.write_metrics(metrics)
  else:
    shutil.rmtree(ckpt_dir, ignore_errors=True)
  return metrics


def _read_history(path: str, epochs_done: int) -> list:
  """The per-epoch records of the epochs a resumed run keeps."""
  if not os.path.exists(path):
    return []
  return [h for h in workdir_lib.read_json(path) if h["epoch"] <= epochs_done]


@contextlib.contextmanager
def runtime(config):
  """Devices, strategy, precision, determinism and seeds for one run, then its data.

  Yields (strategy, splits); restores the process' dtype policy afterwards, so runs in one
  process (sweeps, tests) do not leak precision into each other.
  """
  policy = keras.config.dtype_policy()
  try:
    strategy_lib.split_cpu(config.cpu_devices)
    strategy = strategy_lib.make_strategy(config.strategy)
    keras.config.set_dtype_policy(config.precision)
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
      tf.config.experimental.enable_op_determinism()
    yield strategy, load_data(config)
  finally:
    keras.config.set_dtype_policy(policy)


def load_data(config) -> data_lib.Splits:
  return data_lib.load_splits(config.dataset, data_dir=config.data_dir,
                              fashion_mnist_source=config.fashion_mnist_source,
                              validation_size=config.validation_size, train_examples=config.train_examples,
                              eval_examples=config.eval_examples)


def train_and_evaluate(config: config_lib.TrainConfig, workdir: str, overwrite: bool = False) -> dict:
  """Trains one model with label smoothing `config.alpha` into `workdir`; returns its metrics.

  A finished workdir with the same config returns its metrics without training; an
  unfinished one resumes from its last checkpoint.
  """
  config_lib.validate(config)
  run_dir = Workdir(workdir)
  finished = run_dir.finished_metrics(config, "train", overwrite)
  if finished is not None:
    return finished
  with runtime(config) as (strategy, splits):
    with strategy.scope():
      model = build_classifier(config, splits)
    if strategy_lib.is_chief(strategy):
      run_dir.start(config, "train", overwrite)
    callbacks = []
    if config.mi_every_steps:
      callbacks.append(information.MutualInformationCallback.from_config(
          config, splits, run_dir, write=strategy_lib.is_chief(strategy)))
    return run_training(model=model, exported=model, strategy=strategy, splits=splits, config=config,
                        workdir=run_dir, callbacks=callbacks)
