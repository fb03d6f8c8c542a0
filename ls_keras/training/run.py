"""One training run, from config to finished workdir: build, check, claim, train, evaluate, export.

`train_and_evaluate(config, workdir) -> metrics` is the library entry point of `train`;
`run_and_evaluate`, the skeleton every run kind shares (validate, reuse a finished run,
runtime, schedule, build, callbacks, claim, train), is also that of distillation. Every
check that can refuse a run happens before the workdir is claimed.
"""

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tensorflow.python.framework import config as tf_framework_config  # Op determinism off again.

from ls_keras import calibration
from ls_keras.core import checkpoints
from ls_keras.core import config as config_lib
from ls_keras import data as data_lib
from ls_keras.models import export as export_lib
from ls_keras.core import hardware as hardware_lib
from ls_keras.training import losses
from ls_keras import models
from ls_keras.training import strategy as strategy_lib
from ls_keras.core import lease as lease_lib
from ls_keras.core.errors import RunPreempted, TrainingDivergedError, UserError, WorkdirError
from ls_keras.training import preemption
from ls_keras.core import workdir as workdir_lib
from ls_keras.core.workdir import Workdir
from ls_keras.training.loop import (
  DIVERGED_LOSS,
  Loop,
  NonFiniteLoss,
  EpochProgress,
  Schedule,
  evaluate_split,
  make_schedule,
)


def make_optimizer(config, total_steps: int) -> keras.optimizers.Optimizer:
  """SGD (momentum, Nesterov, dampening) or Adam, with the recipes' learning-rate schedule.

  "step" (the default): the rate is multiplied by lr_decay at each boundary (fractions of
  `total_steps`), as in the paper's recipes (Appendix A: e.g. ResNet-56's 0.1, divided by 10
  at 32k and 48k of 64k steps). "linear": Keras' PolynomialDecay of power 1 from the rate to
  0 at `total_steps` (the MNIST anecdote, Appendix A.5).

  Dampening d is the paper's "gradient smoothing" (A.5): s = m s + (1 - d) g, w -= lr s. Keras'
  SGD folds the rate into its velocity (v = m v - lr g, w += v), so at rate lr (1 - d) its v
  is exactly -lr s when the rate is constant, the average starting at 0 as the paper's does
  (PyTorch's SGD instead starts its buffer at the first whole gradient). While the rate
  changes, Keras keeps each gradient's own step's rate in v where the paper's form applies the
  current rate to the whole average: they differ by the change of rate over the steps the
  average remembers, under the linear schedule relatively about m / (1 - m) / (steps left)
  (below 1% until the last 900 steps for m = 0.9).

  The logits layer's rate multiplier (`last_layer_lr_scale`) is the Loop's, which scales
  that layer's gradient (`rate_scales`); with SGD that is exactly a rate c x lr.

  Gradient clipping is the Loop's job, not the optimizer's: Keras' `global_clipnorm`
  clips each replica's partial gradient before the all-reduce, so its result would
  depend on the number of replicas.

  Args:
    config: a TrainConfig or DistillConfig; reads optimizer ("sgd" or "adam"),
      learning_rate, lr_schedule ("step" or "linear"), lr_boundaries (fractions of training
      in (0, 1), () for a constant rate), lr_decay (the factor applied at each), and, for
      SGD only, momentum, nesterov, dampening and last_layer_lr_scale.
    total_steps: the run's training steps (`Schedule.total_steps`).

  Returns:
    An unbuilt keras.optimizers.SGD or Adam; its learning rate is a float, or a
    PiecewiseConstantDecay or PolynomialDecay over the optimizer's step (in steps).

  Raises:
    UserError: boundaries that fall on the same step of a run this short; boundaries with
      the linear schedule; dampening or a last-layer rate with Adam; dampening with Nesterov.
  """
  config_lib.check_optimizer_settings(config)
  rate = config.learning_rate * (1.0 - config.dampening)
  learning_rate = rate
  if config.lr_schedule == "linear":
    learning_rate = keras.optimizers.schedules.PolynomialDecay(
      rate, total_steps, end_learning_rate=0.0, power=1.0
    )
  elif config.lr_boundaries:
    steps = [int(round(fraction * total_steps)) for fraction in config.lr_boundaries]
    if steps != sorted(set(steps)) or steps[0] < 1 or steps[-1] >= total_steps:
      raise UserError(
        f"--lr_boundaries={','.join(f'{b:g}' for b in config.lr_boundaries)} fall on steps {steps} "
        f"of a run of {total_steps} steps: they must be distinct steps inside it. Train longer, or "
        "pass fewer boundaries (--lr_boundaries= for none)."
      )
    values = [rate * config.lr_decay**i for i in range(len(steps) + 1)]
    learning_rate = keras.optimizers.schedules.PiecewiseConstantDecay(steps, values)
  if config.optimizer == "sgd":
    return keras.optimizers.SGD(learning_rate, momentum=config.momentum, nesterov=config.nesterov)
  return keras.optimizers.Adam(learning_rate)


def rate_scales(config, model: keras.Model, exported: keras.Model) -> Tuple[float, ...]:
  """Per variable of `model.trainable_variables`, the multiplier on its learning rate; ().

  `config.last_layer_lr_scale` for the variables of the logits layer of `exported` (the
  classifier, or a Distiller's student), 1 for the others; () when every one is 1 (no
  scaling). The Loop multiplies each variable's gradient by its multiplier after clipping:
  SGD's update is linear in the gradient (with or without momentum, Nesterov or dampening,
  and with weight decay as a loss term), so this is exactly training that layer at rate
  c x lr, the paper's 0.1 for the last layer (Appendix A.5). Keras has no per-variable rate.

  Args:
    config: a TrainConfig or DistillConfig; reads last_layer_lr_scale (positive).
    model: what trains (a classifier, or a Distiller).
    exported: the network inside it with the `models.LOGITS` layer.

  Returns:
    A tuple of floats, one per trainable variable of `model`, in order; or ().
  """
  if config.last_layer_lr_scale == 1.0:
    return ()
  last = {id(v) for v in exported.get_layer(models.LOGITS).trainable_variables}
  return tuple(
    config.last_layer_lr_scale if id(v) in last else 1.0 for v in model.trainable_variables
  )


def build_network(config, splits: data_lib.Splits) -> keras.Model:
  """The configured model for the data's input shape and classes, uncompiled, seeded by config.

  Its initial weights (and dropout seeds) depend only on `config.seed`: the global random
  state is reset just before the build, so whatever ran earlier in the process (loading
  a teacher, another run of a sweep) cannot change them. Normalisation by the data's
  per-channel statistics is the model's first layer (see `models.build_model`).

  Args:
    config: a TrainConfig or DistillConfig; reads model, seed, weight_decay, dropout and
      hidden_units.
    splits: the run's data; gives the image shape (H, W, C), K classes and the (mean, std)
      per channel on the 0-255 scale.

  Returns:
    An uncompiled keras.Model: float32 pixel values 0-255 [N, H, W, C] in, logits [N, K]
    out (float32; see `models.build_model`).
  """
  keras.utils.set_random_seed(config.seed)
  options = models.ModelOptions(
    weight_decay=config.weight_decay,
    dropout=config.dropout,
    hidden_units=tuple(config.hidden_units),
  )
  return models.build_model(
    config.model,
    splits.spec.image_shape,
    splits.num_classes,
    mean=splits.spec.mean,
    std=splits.spec.std,
    options=options,
  )


def build_classifier(config, splits: data_lib.Splits, total_steps: int) -> keras.Model:
  """The configured model, compiled to train with its loss (label smoothing alpha by default).

  The loss is `losses.training_loss(config)`: by default Keras'
  CategoricalCrossentropy(label_smoothing=alpha) on logits (paper Section 2), else online
  label smoothing or the focal loss (`config.loss`); weighted by `config.loss_scale` (the
  recipes' cross-entropy x3, Appendix A); the optimizer is `make_optimizer`'s. Call it
  inside the run's strategy scope (online LS' state variables are created there).

  Args:
    config: a TrainConfig; reads loss, alpha (in [0, 1)), online_ls_mix, focal_gamma and
      loss_scale, and what `build_network` and `make_optimizer` read.
    splits: the run's data (see `build_network`).
    total_steps: the run's training steps, for the learning-rate boundaries.

  Returns:
    A compiled keras.Model as `build_network`'s, trained on float32 one-hot labels [N, K].

  Raises:
    UserError: as `make_optimizer` (boundaries on the same step of a short run).
  """
  model = build_network(config, splits)
  model.compile(
    optimizer=make_optimizer(config, total_steps),
    loss=losses.training_loss(config, splits.num_classes),
    loss_weights=config.loss_scale,
  )
  return model


@dataclasses.dataclass
class PreparedRun:
  """Everything one training run needs, built and checked before the workdir is claimed."""

  config: Any
  kind: str  # "train" or "distill": the run kind recorded in config.json.
  model: keras.Model  # What trains (a classifier, or a Distiller).
  exported: keras.Model  # What is saved (the classifier, or the Distiller's student).
  runtime: "Runtime"
  schedule: Schedule
  callbacks: Sequence[keras.callbacks.Callback] = ()
  extra_metrics: Dict[str, Any] = dataclasses.field(default_factory=dict)


def prepare_run(
  config,
  kind: str,
  model: keras.Model,
  exported: keras.Model,
  rt: "Runtime",
  schedule: Schedule,
  callbacks: Sequence[keras.callbacks.Callback] = (),
  extra_metrics: Optional[dict] = None,
) -> PreparedRun:
  """Builds the optimizer state under the strategy; the PreparedRun that `run_prepared` trains.

  With `make_schedule` before it, every refusal happens before anything is written.

  Args:
    config: the run's validated TrainConfig or DistillConfig.
    kind: "train" or "distill", the run kind recorded in config.json.
    model: what trains, compiled (a classifier, or a Distiller).
    exported: what is saved (the classifier, or the Distiller's student).
    rt: the run's Runtime (strategy, data, precision).
    schedule: the run's Schedule (`make_schedule`, with the callbacks' pauses).
    callbacks: the run's Keras callbacks, already made.
    extra_metrics: entries added to metrics.json beside the run's own (None: none).

  Returns:
    The PreparedRun, its model's optimizer variables built.
  """
  with rt.strategy.scope():
    model.optimizer.build(model.trainable_variables)
  return PreparedRun(
    config, kind, model, exported, rt, schedule, tuple(callbacks), dict(extra_metrics or {})
  )


def random_states(model: keras.Model) -> list:
  """The states of the model's random generators (dropout), for its checkpoint.

  Keras leaves them out of the model's checkpointable graph: without them a resumed run
  would draw other dropout masks than the uninterrupted one.
  """
  return [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]


def online_smoothing(model: keras.Model) -> Optional[losses.OnlineLabelSmoothing]:
  """The model's online label smoothing loss, whose state the loop swaps and checkpoints; or None.

  Its S and the partial sums of the epoch live in variables outside the model, like the
  random states: without them in the checkpoint a resumed run would restart from S^0.
  """
  loss = getattr(model, "loss", None)
  return loss if isinstance(loss, losses.OnlineLabelSmoothing) else None


def run_prepared(
  job: PreparedRun, workdir: Workdir, overwrite: bool = False, verbose: bool = True
) -> dict:
  """Claims the workdir, trains (resuming from its checkpoint), evaluates, exports; returns metrics.

  Holds the workdir's lease throughout (see core/lease.py): a second process on the same
  workdir is refused, and `overwrite` never deletes a run another live process owns.
  Writes TensorBoard logs, checkpoints, history.json, logits, the exported model and, last
  of all, metrics.json. SIGTERM/SIGINT save a checkpoint at the next step boundary.

  Args:
    job: the PreparedRun (`prepare_run`).
    workdir: the run's Workdir.
    overwrite: delete a finished or different run in the workdir and train afresh.
    verbose: a progress bar (on a terminal) and one log line per epoch.

  Returns:
    The metrics written to metrics.json: "epochs" and "steps" (ints), the job's
    extra_metrics, and "train", "validation" and "test", each `calibration.summary`'s dict
    (accuracy as a fraction, NLL in nats, ECE, ...) of the final weights.

  Raises:
    LeaseHeldError: another live process owns the workdir (nothing written).
    WorkdirError: the workdir is not usable or holds a different or corrupt run (without
      `overwrite`), or its history.json is corrupt (nothing written).
    TrainingDivergedError: the loss became NaN, infinite or above DIVERGED_LOSS, or the
      validation logits non-finite (the last good checkpoint is kept).
    RunPreempted: SIGTERM/SIGINT; a checkpoint of the step reached was saved.
  """
  chief = strategy_lib.is_chief(job.runtime.strategy)
  # Only the chief writes the workdir, so only it owns it.
  owner = lease_lib.Lease(workdir.path, "one run") if chief else contextlib.nullcontext()
  with owner as lease, preemption.Watch() as watch:
    return _run_owned(job, workdir, overwrite, verbose, chief, lease, watch)


def _run_owned(
  job: PreparedRun,
  workdir: Workdir,
  overwrite: bool,
  verbose: bool,
  chief: bool,
  lease: Optional[lease_lib.Lease],
  watch: preemption.Watch,
) -> dict:
  strategy, config, schedule = job.runtime.strategy, job.config, job.schedule
  session_start = time.time()
  epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")  # Host-side loop state.
  smoothing = online_smoothing(job.model)
  checkpoint = checkpoints.make_checkpoint(
    job.model, epoch_var, random_states(job.model), smoothing.variables if smoothing else None
  )
  resuming = workdir.check(config, job.kind, overwrite)  # Read-only, like the restore.
  restored = checkpoints.restore_latest(checkpoint, workdir.checkpoints) if resuming else None
  step = int(job.model.optimizer.iterations.numpy())
  start_epoch, done_in_epoch = schedule.position(step)
  # Read (and refused if corrupt) before workdir.start writes anything.
  history = _read_history(workdir.file("history.json"), start_epoch) if resuming else []
  if chief:
    workdir.start(config, job.kind, overwrite, session=job.runtime.session(start_epoch))
  if restored:
    logging.info("Resuming from %s (step %d, epoch %d).", restored, step, start_epoch + 1)
  # Every worker saves (saving is collective under MultiWorkerMirroredStrategy); only the
  # chief into the workdir, the others into a scratch folder removed at the end.
  ckpt_dir = workdir.checkpoints if chief else tempfile.mkdtemp(prefix="ls_keras_worker_ckpt_")
  manager = checkpoints.manager(checkpoint, ckpt_dir)
  saved = {"step": step if restored else 0}

  def save_checkpoint(step: int) -> None:
    if lease is not None:
      lease.verify()  # Never write over a workdir another process has taken over.
    checkpoints.save(manager, step)
    saved["step"] = step

  def on_chunk_end(epoch: int, step: int) -> None:
    """After each train call: a step checkpoint when one is due or preemption was asked."""
    epoch_end = step == epoch * schedule.steps_per_epoch + schedule.epoch_steps(epoch)
    if epoch_end and _evaluates(config, schedule, epoch):
      return  # The evaluation saves this step's checkpoint; preemption is handled after it.
    every = config.checkpoint_every_steps
    stop = watch.requested(strategy)
    if stop or (every and step % every == 0):
      save_checkpoint(step)
    if stop:
      raise _preempted(watch, step, ckpt_dir)

  writers = {
    name: (
      tf.summary.create_file_writer(workdir.file("tb", name))
      if chief
      else tf.summary.create_noop_writer()
    )
    for name in ("train", "validation")
  }
  scales = rate_scales(config, job.model, job.exported)
  loop = Loop(job.model, strategy, config.jit_compile, config.grad_clip_norm, scales)
  callbacks = keras.callbacks.CallbackList(list(job.callbacks), model=job.model)
  progress = EpochProgress(schedule.epochs, verbose)
  evaluated = {}
  callbacks.on_train_begin()
  for epoch in range(start_epoch, schedule.epochs):
    started = time.time()
    callbacks.on_epoch_begin(epoch)
    done = done_in_epoch if epoch == start_epoch else 0
    epoch_logs = _train_epoch(
      job, loop, epoch, done, writers["train"], callbacks, progress, saved, on_chunk_end
    )
    if not _evaluates(config, schedule, epoch):
      callbacks.on_epoch_end(epoch, epoch_logs)
      progress.end_epoch(epoch, epoch_logs, time.time() - started)
      continue
    # The final weights' logits, reused below; non-finite ones mean weights spoiled by a last
    # step whose loss was still finite.
    evaluated = {"validation": _evaluate(job, loop, "validation")}
    step = int(job.model.optimizer.iterations.numpy())
    if not np.all(np.isfinite(evaluated["validation"][0])):
      raise _diverged(job, epoch, step, saved["step"])
    val = calibration.summary(evaluated["validation"][1], logits=evaluated["validation"][0])
    with writers["validation"].as_default(step=step):
      for name in ("accuracy", "nll", "ece"):
        tf.summary.scalar(name, val[name])
    epoch_logs.update({f"val_{k}": val[k] for k in ("accuracy", "nll", "ece")})
    if config.track_test:
      evaluated["test"] = _evaluate(job, loop, "test")
      epoch_logs.update(_test_calibration(evaluated["validation"], evaluated["test"]))
    history.append({"epoch": epoch + 1, "step": step, **epoch_logs})
    callbacks.on_epoch_end(epoch, epoch_logs)
    epoch_var.assign(epoch + 1)
    if chief:  # History first: a resume trims it to the checkpointed epochs, so it never lags.
      if lease is not None:
        lease.verify()
      workdir_lib.atomic_write_json(workdir.file("history.json"), history)
    save_checkpoint(step)
    progress.end_epoch(epoch, epoch_logs, time.time() - started)
    if epoch + 1 < schedule.epochs and watch.requested(strategy):
      raise _preempted(watch, step, ckpt_dir)
  callbacks.on_train_end()
  for writer in writers.values():
    writer.flush()
  if not chief:
    shutil.rmtree(ckpt_dir, ignore_errors=True)
  if lease is not None:
    lease.verify()
  metrics = _finish(job, loop, workdir, chief, evaluated)
  if chief:
    workdir.end_session(time.time() - session_start)
  return metrics


def _evaluates(config, schedule: Schedule, epoch: int) -> bool:
  """Whether `epoch` (0-based) ends with an evaluation, history record and checkpoint."""
  return (epoch + 1) % config.eval_every_epochs == 0 or epoch + 1 == schedule.epochs


def _preempted(watch: preemption.Watch, step: int, ckpt_dir: str) -> RunPreempted:
  return RunPreempted(
    f"stopped on {watch.signal} after saving the checkpoint of step {step} in {ckpt_dir}. "
    "Rerun the same command to resume from that step."
  )


def _train_epoch(
  job: PreparedRun,
  loop: Loop,
  epoch: int,
  done: int,
  writer,
  callbacks,
  progress: EpochProgress,
  saved: dict,
  on_chunk_end: Callable[[int, int], None],
) -> Dict[str, float]:
  """Trains one epoch (its first `done` steps already trained) in chunks, logging each chunk.

  Raises:
    TrainingDivergedError: at the first diverging loss (`saved["step"]`: the last checkpoint).
  """
  config, model, strategy = job.config, job.model, job.runtime.strategy
  smoothing = online_smoothing(model)
  progress.start_epoch(epoch, job.schedule.epoch_steps(epoch))
  train_ds = strategy.distribute_datasets_from_function(
    lambda ctx: data_lib.train_batches(
      job.runtime.splits,
      batch_size=config.batch_size,
      seed=config.seed,
      epoch=epoch,
      augment=config.augment,
      input_context=ctx,
      skip_steps=done,
    )
  )
  iterator, logs = iter(train_ds), {}
  for chunk in job.schedule.chunks(epoch, done):
    first_step = int(model.optimizer.iterations.numpy())
    try:
      logs = loop.train(iterator, chunk)
    except NonFiniteLoss as e:
      raise _diverged(job, epoch, first_step + e.steps_done + 1, saved["step"]) from None
    done += chunk
    if done == job.schedule.epoch_steps(epoch) and smoothing is not None:
      smoothing.end_epoch()  # Before any checkpoint of this step: a resume starts the next epoch.
    step = int(model.optimizer.iterations.numpy())
    with writer.as_default(step=step):
      for name, value in logs.items():
        tf.summary.scalar(name, value)
      tf.summary.scalar(
        "learning_rate", float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
      )
    progress.update(done, logs)
    callbacks.on_train_batch_end(step, logs)
    checkpoints.pause_point("step", step)
    on_chunk_end(epoch, step)
  return logs


def _diverged(job: PreparedRun, epoch: int, step: int, checkpointed: int) -> TrainingDivergedError:
  config, per_epoch = job.config, job.schedule.steps_per_epoch
  if not checkpointed:
    kept = "no checkpoint (it diverged before the first one)"
  elif checkpointed % per_epoch == 0:
    kept = f"the checkpoint of epoch {checkpointed // per_epoch} (step {checkpointed})"
  else:
    kept = f"the checkpoint of step {checkpointed} (in epoch {checkpointed // per_epoch + 1})"
  return TrainingDivergedError(
    f"training diverged: the loss became NaN, infinite or above {DIVERGED_LOSS:g} at step {step} "
    f"(epoch {epoch + 1}). The run stopped; the workdir keeps {kept}. The usual cause is a "
    f"learning rate too high for this model (--learning_rate={config.learning_rate:g}); lower "
    "it, or clip gradients with --grad_clip_norm=1, then rerun with --overwrite or a new --workdir."
  )


def _evaluate(job: PreparedRun, loop: Loop, split: str):
  return evaluate_split(
    loop,
    getattr(job.runtime.splits, split),
    job.runtime.splits.num_classes,
    job.config.batch_size * 2,
  )


def _test_calibration(validation, test) -> Dict[str, float]:
  """The test split's calibration now, before and after temperature scaling."""
  scaling = calibration.temperature_scale(validation[1], validation[0], test[1], test[0])
  return {
    "test_accuracy": scaling.before["accuracy"],
    "test_nll": scaling.before["nll"],
    "test_ece": scaling.before["ece"],
    "test_ece_temperature_scaled": scaling.after["ece"],
    "temperature": scaling.temperature,
  }


def _finish(
  job: PreparedRun, loop: Loop, workdir: Workdir, chief: bool, evaluated: Dict[str, tuple]
) -> dict:
  """Final metrics on every split, logits for analysis, the exported model, then metrics.json.

  The last epoch's validation (and test) logits are reused, not recomputed.
  """
  model = job.model
  metrics = {
    "epochs": job.schedule.epochs,
    "steps": int(model.optimizer.iterations.numpy()),
    **job.extra_metrics,
  }
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
  """The per-epoch records of the epochs a resumed run keeps; WorkdirError if the file is bad."""
  if not epochs_done or not os.path.exists(path):
    return []
  try:
    history = workdir_lib.read_json(path)
  except WorkdirError:
    history = None  # Not JSON: refused below, with what to do about it.
  if not isinstance(history, list) or not all(
    isinstance(h, dict) and isinstance(h.get("epoch"), int) for h in history
  ):
    raise WorkdirError(
      f"{path} is not a list of per-epoch records with an integer epoch; the file is truncated "
      "or corrupt. Rerun with --overwrite to train afresh."
    )
  return [h for h in history if h["epoch"] <= epochs_done]


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
    return {
      "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
      "start_epoch": start_epoch,
      "precision": self.precision,
      "precision_reason": self.precision_reason,
      "hardware": self.hardware.to_dict(),
      "data": data_record(self.splits),
    }


def data_record(splits: data_lib.Splits) -> dict:
  """What config.json's sessions record about the data: its resolved shape, statistics, classes.

  The statistics (`mean`, `std`) are what the model normalises with; a resumed run, and an
  analysis rebuilding the model, read them back (`recorded_statistics`).
  """
  spec = splits.spec
  return {
    "dataset": spec.tfds_name,
    "source": spec.source,
    "image_shape": list(spec.image_shape),
    "mean": list(spec.mean),
    "std": list(spec.std),
    "augmentation": spec.augmentation,
    "class_names": list(splits.class_names),
    "sizes": dict(splits.sizes),
  }


def recorded_statistics(record: Any) -> Optional[tuple]:
  """(mean, std) from a config.json record's last session, or None when absent or malformed.

  A workdir's file is data: anything but two equally long lists of finite numbers (std
  positive) is ignored, and the statistics are then computed from the data again.

  Args:
    record: the parsed config.json (`Workdir.read_record()`); any JSON value is accepted.

  Returns:
    (mean, std): two tuples of Python floats, one per channel, on the 0-255 pixel scale;
    or None.
  """
  sessions = record.get("sessions") if isinstance(record, dict) else None
  data = sessions[-1].get("data") if sessions and isinstance(sessions[-1], dict) else None
  if not isinstance(data, dict):
    return None
  mean, std = data.get("mean"), data.get("std")
  numbers = [v for v in (mean, std) if isinstance(v, list)]
  if len(numbers) != 2 or not mean or len(mean) != len(std):
    return None
  if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in mean + std):
    return None
  if not (np.all(np.isfinite(mean + std)) and min(std) > 0):
    return None
  return tuple(float(v) for v in mean), tuple(float(v) for v in std)


@contextlib.contextmanager
def runtime(config, statistics: Optional[tuple] = None):
  """Devices, strategy, precision and determinism for one run, then its data: a context manager.

  Restores the process' dtype policy and op determinism afterwards, so runs in one
  process (sweeps, tests) do not leak settings into each other.

  Args:
    config: a TrainConfig or DistillConfig; reads cpu_devices, strategy, precision,
      deterministic, and what `load_data` reads.
    statistics: the (mean, std) a resumed run recorded (see `load_data`), or None.

  Yields:
    The Runtime: strategy, Splits, precision (a Keras dtype policy name) with the reason
    it was chosen, and the detected hardware.

  Raises:
    UserError: an unknown --strategy, a missing or invalid TF_CONFIG, CPU devices that can
      no longer be split; and as `load_data`.
    DataNotPreparedError: as `load_data`.
  """
  policy = keras.config.dtype_policy()
  deterministic = tf_framework_config.is_op_determinism_enabled()
  try:
    strategy_lib.split_cpu(config.cpu_devices)
    strategy = strategy_lib.make_strategy(config.strategy)
    machine = hardware_lib.detect()
    precision, reason = hardware_lib.resolve_precision(config.precision, machine)
    if config.precision == hardware_lib.AUTO:
      logging.log_first_n(logging.INFO, "precision auto -> %s: %s.", 1, precision, reason)
    keras.config.set_dtype_policy(precision)
    if config.deterministic:
      tf.config.experimental.enable_op_determinism()
    yield Runtime(strategy, load_data(config, statistics), precision, reason, machine)
  finally:
    keras.config.set_dtype_policy(policy)
    if not deterministic:
      tf_framework_config.disable_op_determinism()  # No public API restores it (TF 2.21).


def load_data(config, statistics: Optional[tuple] = None) -> data_lib.Splits:
  """The splits `config` trains and evaluates on (memoised per process; see data.load_splits).

  A TFDS data set missing from `config.data_dir` is downloaded and prepared first when
  `config.download` (Fashion-MNIST: prepared from its local IDX files).

  Args:
    config: a TrainConfig or DistillConfig; reads dataset, data_dir, fashion_mnist_source,
      validation_size, train_examples, eval_examples, image_size, augmentation, download.
    statistics: (mean, std) per channel on the 0-255 scale, recorded by the run being
      resumed; they replace those computed now, so the model normalises exactly as it
      started to. None: computed (or curated).

  Returns:
    Splits of (uint8 image [H, W, C], int64 label) examples: train, validation (the last
    `validation_size` training examples, as in Appendix A) and test.

  Raises:
    DataNotPreparedError, UserError: as `data.load_splits`.
  """
  return data_lib.load_splits(
    config.dataset,
    data_dir=config.data_dir,
    fashion_mnist_source=config.fashion_mnist_source,
    validation_size=config.validation_size,
    train_examples=config.train_examples,
    eval_examples=config.eval_examples,
    image_size=config.image_size,
    augmentation=config.augmentation,
    download=config.download,
    statistics=statistics,
  )


def resumed_statistics(run_dir: Workdir, config, kind: str, overwrite: bool) -> Optional[tuple]:
  """The (mean, std) recorded by the run `config` resumes in `run_dir`; None for a new run.

  Read-only and never raises: a workdir that holds another run (or anything unusable,
  any UserError) gives None and is left for `Workdir.check` to refuse later.

  Args:
    run_dir: the run's Workdir.
    config: the run's TrainConfig or DistillConfig.
    kind: "train" or "distill", the run kind recorded in config.json.
    overwrite: the run starts afresh (then None).

  Returns:
    As `recorded_statistics`: per-channel (mean, std) float tuples on the 0-255 scale, or
    None when the workdir holds no such run or no valid record of them.
  """
  if overwrite:
    return None
  try:
    if not run_dir.check(config, kind):
      return None
    return recorded_statistics(run_dir.read_record())
  except UserError:
    return None


# Makes one callback of a run from (config, splits, workdir, write, network), or None when the
# config does not ask for it. `write` is False on non-chief workers; `network` is the classifier
# the run exports (for distillation, the student), which analyses such as the mutual
# information study. A callback that must see certain steps declares `every_steps`.
CallbackFactory = Callable[
  [Any, data_lib.Splits, Workdir, bool, keras.Model], Optional[keras.callbacks.Callback]
]

# Builds what a run trains, in the runtime `rt` and for `schedule`: (the trained model,
# compiled; the model exported; metrics recorded beside the run's own).
Builder = Callable[["Runtime", Schedule], Tuple[keras.Model, keras.Model, Dict[str, Any]]]


def run_and_evaluate(
  config,
  kind: str,
  workdir: str,
  build: Builder,
  overwrite: bool = False,
  verbose: bool = True,
  callbacks: Sequence[CallbackFactory] = (),
) -> dict:
  """The skeleton every run kind shares: validate, reuse, runtime, schedule, build, train.

  A finished workdir with the same config returns its metrics without training; an
  unfinished one resumes from its last checkpoint. Every check that can refuse the run
  (config, workdir, data, schedule, model, callbacks) runs before anything is written.

  Args:
    config: a TrainConfig or DistillConfig (validated here).
    kind: "train" or "distill", the run kind recorded in config.json.
    workdir: the run's folder.
    build: makes the trained and the exported model (see `Builder`); called once.
    overwrite: train afresh over a finished or different run in `workdir`.
    verbose: a progress bar and one log line per epoch.
    callbacks: factories of the run's Keras callbacks (see `CallbackFactory`); the caller
      chooses them, so training depends on no analysis package.

  Returns:
    The metrics written to metrics.json (see `run_prepared`), or those of the finished
    run already there.

  Raises:
    UserError: bad settings or data (DataNotPreparedError among them) or schedule; a
      workdir that is unusable, holds another run, or is owned by a live process
      (WorkdirError, LeaseHeldError); nothing is written. Also TrainingDivergedError, a
      UserError, when the loss diverges (the last good checkpoint is kept).
    RunPreempted: SIGTERM/SIGINT stopped the run after saving a checkpoint.
    ValueError: `config.mi_every_steps` set but no callback estimating every that many steps.
  """
  config_lib.validate(config)
  run_dir = Workdir(workdir)
  finished = run_dir.finished_metrics(config, kind, overwrite)
  if finished is not None:
    return finished
  lease_lib.check_free(run_dir.path, "one run")
  statistics = resumed_statistics(run_dir, config, kind, overwrite)
  with runtime(config, statistics) as rt:
    train_size, replicas = rt.splits.sizes["train"], rt.strategy.num_replicas_in_sync
    schedule = make_schedule(config, train_size, replicas)  # Refuses a bad batch first.
    model, exported, extra_metrics = build(rt, schedule)
    write = strategy_lib.is_chief(rt.strategy)
    made = [make(config, rt.splits, run_dir, write, exported) for make in callbacks]
    made = [callback for callback in made if callback is not None]
    if config.mi_every_steps and not any(
      getattr(callback, "every_steps", 0) == config.mi_every_steps for callback in made
    ):
      raise ValueError(
        f"mi_every_steps={config.mi_every_steps} asks for the mutual information, but no "
        "callback given estimates it: pass callbacks=(mutual_information.callback_for_run,)."
      )
    schedule = make_schedule(config, train_size, replicas, made)  # Pauses where they look.
    job = prepare_run(config, kind, model, exported, rt, schedule, made, extra_metrics)
    return run_prepared(job, run_dir, overwrite, verbose)


def train_and_evaluate(
  config: config_lib.TrainConfig,
  workdir: str,
  overwrite: bool = False,
  verbose: bool = True,
  callbacks: Sequence[CallbackFactory] = (),
) -> dict:
  """Trains one model with label smoothing `config.alpha` (paper Section 2) into `workdir`.

  The library entry point of `train`. See `run_and_evaluate` for the workdir semantics
  (a finished identical run is reused, an unfinished one resumed).

  Args:
    config: the TrainConfig (validated here): model, data set, alpha and the recipe.
    workdir: the run's folder (created if missing).
    overwrite: train afresh over a finished or different run in `workdir`.
    verbose: a progress bar (on a terminal) and one log line per epoch.
    callbacks: factories of the run's Keras callbacks (see `CallbackFactory`); a run with
      `mi_every_steps` needs `callbacks=(mutual_information.callback_for_run,)`.

  Returns:
    The metrics written to metrics.json (see `run_prepared`): per split accuracy, NLL,
    ECE and the rest of `calibration.summary`.

  Raises:
    UserError, RunPreempted, ValueError: as `run_and_evaluate`.
  """

  def build(rt: Runtime, schedule: Schedule):
    with rt.strategy.scope():
      model = build_classifier(config, rt.splits, schedule.total_steps)
    if online_smoothing(model) is None:
      return model, model, {}
    # Exported uncompiled (the same layers and weights): plain Keras cannot rebuild this loss,
    # and model.keras must load without ls_keras.
    return model, keras.Model(model.inputs, model.outputs, name=model.name), {}

  return run_and_evaluate(config, "train", workdir, build, overwrite, verbose, callbacks)
