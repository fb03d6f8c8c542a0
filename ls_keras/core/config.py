"""The frozen configuration of a training run, its validation, and its JSON form.

Every library function takes a config object; only entry modules read flags. A field's
`help` metadata doubles as its flag's help text, so the two never drift apart.
"""

import dataclasses
import json
import math
import os
import typing
from typing import Any, Tuple

from ls_keras.core import datasets as datasets_lib
from ls_keras.core.datasets import AUGMENTATIONS, SPECS
from ls_keras.core.errors import UserError

DATASETS = tuple(SPECS)  # The curated ones; --dataset also takes others (core/datasets.py).
STRATEGIES = ("auto", "mirrored", "multi_worker", "one_device")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
OPTIMIZERS = ("sgd", "adam")
# The training losses (ls_keras.training.losses.training_loss): cross-entropy with uniform
# label smoothing --alpha (the paper's), online label smoothing (Zhang et al. 2021), focal loss
# (Mukhoti et al. 2020).
LOSSES = ("cross_entropy", "online_ls", "focal")
LR_SCHEDULES = ("step", "linear")
TEACHER_TERMS = ("cross_entropy", "logit_matching")
# The builders of ls_keras.models.MODELS, by name: here so that checking a setting needs no
# TensorFlow (a test keeps the two equal).
MODEL_NAMES = ("small_cnn", "mlp", "alexnet", "resnet56", "inception_v4")
# Bumped when the workdir layout changes incompatibly; older workdirs are refused.
WORKDIR_FORMAT = 2  # 2: lr_boundaries are fractions of training; AlexNet's LRN is Keras ops.


def setting(
  default, help_text, choices=None, path=False, optional=False, compared=True, check=None
):
  """A config field whose help (and choices) also define its command-line flag.

  `check(name, value)`: raises UserError, naming the value and what is allowed, when the
  value is not allowed (see the checks below; every number is also checked to be finite
  and, for integers, to be at most MAX_INT unless an `at_most` check sets another bound).

  `path`: the value names a file or folder. Such values are recorded as absolute paths
  (`absolute_path`), so a run resumed or analysed from another working directory reads and
  writes where it first did, not relative to wherever it is started next.
  `optional`: added after the current WORKDIR_FORMAT; config.json files written before it
  lack the setting, which then means its default (the behaviour before it existed).
  `compared=False`: the setting says how to run, not what the run is (e.g. whether data may
  be downloaded), so a resume with another value is the same run.
  """
  metadata = {"help": help_text}
  if choices is not None:
    metadata["choices"] = choices
  if path:
    metadata["path"] = True
  if optional:
    metadata["optional"] = True
  if not compared:
    metadata["compared"] = False
  if check is not None:
    metadata["check"] = check
  return dataclasses.field(default=default, metadata=metadata)


# Checks of one setting's value, next to the settings below that use them.
MAX_INT = 2**31 - 1  # Step counters are int32.


def _refuse(name, value, allowed: str):
  shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
  raise UserError(f"--{name}={shown} is not allowed: {allowed}")


def positive(name, value):
  """More than zero."""
  if not value > 0:
    _refuse(name, value, "it must be a positive number.")


def non_negative(name, value):
  """Zero or more."""
  if not value >= 0:
    _refuse(name, value, "it must be zero or positive.")


def at_most(limit, *then):
  """At most `limit` (and whatever the checks `then` say)."""

  def check(name, value):
    if value > limit:
      _refuse(name, value, f"it must be at most {limit}.")
    for more in then:
      more(name, value)

  check.limit = limit  # Replaces the int32 bound every integer setting has.
  return check


def in_range(low, high, allowed: str, low_open=False, high_open=False):
  """Within [low, high], either end open as asked; `allowed` says so in the message."""

  def check(name, value):
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below):
      _refuse(name, value, allowed)

  return check


def _check_dataset(name, value):
  datasets_lib.check_dataset(value)


def hidden_weights(hidden_units) -> int:
  """The number of weights between consecutive hidden layers (h1*h2 + h2*h3 + ...)."""
  sizes = [int(h) for h in hidden_units]
  return sum(a * b for a, b in zip(sizes, sizes[1:]))


# The MLP's size: 65536,65536 would be 2**32 weights (16 GiB in float32, before the
# optimizer's copies). 16384,16384 is the largest two-layer net allowed.
MAX_HIDDEN_UNITS = 16384
MAX_HIDDEN_WEIGHTS = 2**28


def _check_hidden_units(name, value):
  if (
    not value
    or any(not 0 < int(h) <= MAX_HIDDEN_UNITS for h in value)
    or hidden_weights(value) > MAX_HIDDEN_WEIGHTS
  ):
    _refuse(
      name,
      value,
      f"give one or more layer sizes in 1-{MAX_HIDDEN_UNITS} with at most 2**28 "
      f"({MAX_HIDDEN_WEIGHTS}) weights between consecutive hidden layers in all, e.g. 1200,1200.",
    )


def _check_lr_boundaries(name, value):
  if any(not 0 < b < 1 for b in value) or list(value) != sorted(set(value)):
    _refuse(
      name,
      value,
      "give strictly increasing fractions of training in (0, 1), e.g. 0.5,0.75.",
    )


def _check_mi_classes(name, value):
  if len(value) != 2 or value[0] == value[1] or min(value) < 0:
    _refuse(name, value, "give two different class indices, e.g. 2,4.")


def _check_teacher(name, value):
  if not value:
    raise UserError(
      "--teacher is required: a finished workdir, a .keras file or a SavedModel folder."
    )


def _check_mi_augmentations(name, value):
  if value < 2:
    _refuse(name, value, "the estimate needs L >= 2 augmented copies.")


# Distillation temperature: below 0.05 the teacher's softmax is one-hot in float32 and the
# student's logits / T overflow (the run diverged and blamed the learning rate); above
# 1000 the soft targets are uniform to float32 precision.
TEMPERATURE_RANGE = (0.05, 1000.0)


def absolute_path(value: str) -> str:
  """`value` with `~` expanded, made absolute; '' (a path setting's "default") stays ''."""
  return os.path.abspath(os.path.expanduser(value)) if value else value


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything that determines a training run (and nothing that does not)."""

  # Data.
  dataset: str = setting(
    "fashion_mnist",
    f"Data set: a curated one ({', '.join(DATASETS)}: the paper's splits, statistics and "
    "augmentation), any TFDS image classification data set by name, folder:PATH (one "
    "subfolder of images per class, optionally under train/ and test/) or npz:PATH (arrays "
    "x_train, y_train, x_test, y_test, optional class_names).",
    check=_check_dataset,
  )
  data_dir: str = setting(
    "", "TFDS data directory; empty means TFDS' default (~/tensorflow_datasets).", path=True
  )
  download: bool = setting(
    True,
    "Download and prepare a TFDS data set missing from --data_dir on first use, as tfds.load "
    "does; --nodownload on machines without a network (the error then says how to prepare it "
    "elsewhere).",
    optional=True,
    compared=False,
  )
  image_size: int = setting(
    0,
    "Resize images to this many pixels square (0: their native size; required for data sets "
    "whose images differ in size).",
    optional=True,
    check=at_most(4096, non_negative),
  )
  augmentation: str = setting(
    "auto",
    "Training augmentation: shift (+-2 px), crop_flip (pad 4, random crop, random flip), flip, "
    "none; auto: the curated data sets' own, else crop_flip for colour images of at least "
    "32x32 and shift for the others.",
    AUGMENTATIONS,
    optional=True,
  )
  fashion_mnist_source: str = setting(
    "",
    "Folder with the Fashion-MNIST IDX files; empty means $LS_KERAS_FASHION_MNIST_DIR "
    "or Debian's /usr/share/datasets/fashion-mnist.",
    path=True,
  )
  validation_size: int = setting(
    10000, "Examples held out from the end of the train split for validation.", check=positive
  )
  train_examples: int = setting(
    0, "Use only the first N training examples (0: all). For quick runs.", check=non_negative
  )
  eval_examples: int = setting(
    0, "Use only the first N validation and test examples (0: all).", check=non_negative
  )
  augment: bool = setting(
    True, "Random augmentation of training images (shifts; crops and flips for CIFAR)."
  )
  # Model.
  model: str = setting("small_cnn", "The network (ls_keras.models.MODELS).", MODEL_NAMES)
  hidden_units: Tuple[int, ...] = setting(
    (1200, 1200),
    "Hidden layer sizes of the mlp model: each 1-16384 units, and at most 2**28 (268 million) "
    "weights between consecutive hidden layers in all.",
    check=_check_hidden_units,
  )
  dropout: float = setting(
    0.0,
    "Dropout rate before the penultimate layer(s) where the model has one.",
    check=in_range(0.0, 1.0, "it must lie in [0, 1).", high_open=True),
  )
  weight_decay: float = setting(
    0.0,
    "L2 weight decay lambda: adds lambda/2 * ||w||^2 per regularised kernel.",
    check=non_negative,
  )
  # Objective.
  alpha: float = setting(
    0.0,
    "Label smoothing: targets become y * (1 - alpha) + alpha / K.",
    check=in_range(0.0, 1.0, "label smoothing alpha must lie in [0, 1).", high_open=True),
  )
  loss: str = setting(
    "cross_entropy",
    "Training loss: cross_entropy (with label smoothing --alpha, the paper's); online_ls "
    "(online label smoothing, Zhang et al. 2021: soft targets per class from the previous "
    "epoch's correctly classified training predictions, weighted 1 - --online_ls_mix); focal "
    "(focal loss -(1 - p_y)^gamma log p_y, Mukhoti et al. 2020, --focal_gamma). The last two "
    "take no --alpha.",
    LOSSES,
    optional=True,
  )
  online_ls_mix: float = setting(
    0.5,
    "With --loss=online_ls: the weight of the hard-target cross-entropy, in (0, 1); the "
    "online soft targets get 1 minus it (the paper: 0.5).",
    optional=True,
    check=in_range(
      0.0,
      1.0,
      "it must lie in (0, 1): 1 is plain cross-entropy, and 0 leaves the first epoch (whose "
      "soft targets are still zero) without a loss.",
      low_open=True,
      high_open=True,
    ),
  )
  focal_gamma: float = setting(
    3.0,
    "With --loss=focal: the focusing parameter gamma, in (0, 20] (Mukhoti et al. calibrate "
    "with 3).",
    optional=True,
    check=in_range(0.0, 20.0, "it must lie in (0, 20] (0 is plain cross-entropy).", low_open=True),
  )
  loss_scale: float = setting(
    1.0,
    "Multiplier on the loss (the paper's recipes use 3).",
    check=in_range(0.0, math.inf, "it must be positive.", low_open=True),
  )
  # Optimisation.
  optimizer: str = setting("sgd", "Optimizer.", OPTIMIZERS)
  learning_rate: float = setting(
    0.1, "Initial learning rate.", check=in_range(0.0, math.inf, "it must be positive.", True)
  )
  momentum: float = setting(
    0.9, "SGD momentum.", check=in_range(0.0, 1.0, "it must lie in [0, 1).", high_open=True)
  )
  nesterov: bool = setting(True, "Nesterov momentum for SGD.")
  lr_boundaries: Tuple[float, ...] = setting(
    (),
    "Fractions of training, in (0, 1), at which the learning rate is "
    "multiplied by lr_decay (e.g. 0.5,0.75).",
    check=_check_lr_boundaries,
  )
  lr_decay: float = setting(
    0.1,
    "Factor applied to the learning rate at each boundary.",
    check=in_range(0.0, 1.0, "the decay factor must lie in (0, 1].", low_open=True),
  )
  # The paper's MNIST anecdote (Appendix A.5); the defaults train as before they existed.
  lr_schedule: str = setting(
    "step",
    "step: the rate is multiplied by lr_decay at each of lr_boundaries; linear: it falls "
    "linearly from learning_rate to 0 at the end of training (no lr_boundaries).",
    LR_SCHEDULES,
    optional=True,
  )
  dampening: float = setting(
    0.0,
    "SGD momentum dampening d, in [0, 1): the velocity averages (1 - d) x each gradient, the "
    "paper's 'gradient smoothing' (0.9 x previous + 0.1 x current: momentum 0.9, d 0.9). "
    "Keras' SGD at rate learning_rate x (1 - d), which history.json records.",
    optional=True,
    check=in_range(0.0, 1.0, "it must lie in [0, 1).", high_open=True),
  )
  last_layer_lr_scale: float = setting(
    1.0,
    "Multiplier on the learning rate of the logits layer (the paper's MNIST anecdote: 0.1); "
    "SGD only.",
    optional=True,
    check=positive,
  )
  grad_clip_norm: float = setting(
    0.0, "Clip gradients to this global norm (0: no clipping).", check=non_negative
  )
  batch_size: int = setting(128, "Global batch size (split across replicas).", check=positive)
  epochs: int = setting(10, "Training epochs (ignored when train_steps > 0).", check=positive)
  eval_every_epochs: int = setting(
    1,
    "Validate, record history and checkpoint every N epochs (and after the last); "
    "raise it for tiny epochs, where validation would cost more than training.",
    check=positive,
  )
  checkpoint_every_steps: int = setting(
    0,
    "Also checkpoint every N global steps between evaluations (0: only at evaluations and "
    "when preempted), so a killed run loses at most N steps.",
    optional=True,
    check=non_negative,
  )
  train_steps: int = setting(
    0, "Total training steps; 0 means epochs * steps per epoch.", check=non_negative
  )
  seed: int = setting(
    0,
    "Seed for initialisation, shuffling and augmentation.",
    check=at_most(2**32 - 1, non_negative),
  )
  # Execution.
  strategy: str = setting(
    "auto",
    "tf.distribute strategy; auto = MirroredStrategy over all GPUs, else default.",
    STRATEGIES,
  )
  precision: str = setting(
    "auto",
    "Keras dtype policy; auto: the fastest the hardware runs natively "
    "(mixed_bfloat16 on CPUs with AVX512_BF16/AMX and GPUs of compute capability >= 8.0, "
    "mixed_float16 on older fast-float16 GPUs, else float32). Logits are always float32.",
    PRECISIONS,
  )
  cpu_devices: int = setting(
    1,
    "Split the CPU into this many logical devices, 1-16 (to try MirroredStrategy on CPU).",
    # 64 made no progress in minutes: every step is a collective across them.
    check=at_most(16, positive),
  )
  deterministic: bool = setting(
    False, "Enable TF op determinism (slower) so that reruns match exactly."
  )
  jit_compile: bool = setting(False, "XLA-compile the training step (measured 2x slower on CPU).")
  steps_per_execution: int = setting(
    25, "Training steps run inside one tf.function call.", check=positive
  )
  # Mutual information during training (paper Figure 6).
  mi_every_steps: int = setting(
    0, "Estimate I(X; logit difference) every N steps (0: off).", check=non_negative
  )
  mi_classes: Tuple[int, ...] = setting(
    (2, 4), "The two classes whose logit difference is studied.", check=_check_mi_classes
  )
  mi_examples_per_class: int = setting(
    300, "Training examples per class for the MI estimate.", check=at_most(10000, positive)
  )
  mi_augmentations: int = setting(
    5,
    "Augmented copies per example for the MI estimate.",
    check=at_most(64, positive, _check_mi_augmentations),
  )
  # Calibration against training length (the report's "when does label smoothing help" figure).
  track_test: bool = setting(
    False,
    "Also evaluate the test split after every epoch and record its accuracy, NLL, "
    "ECE, and ECE after temperature scaling (T fitted on that epoch's validation logits) in "
    "history.json. Nothing is selected on these numbers.",
  )

  def to_dict(self) -> dict:
    """Every setting by name (tuples stay tuples)."""
    return dataclasses.asdict(self)

  def replace(self, **changes) -> "TrainConfig":
    """A copy with `changes` (dataclasses.replace)."""
    return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class DistillConfig(TrainConfig):
  """A student's run (paper Section 4): every TrainConfig setting, for the student, and a teacher.

  All of TrainConfig applies to the student: `loss_scale` multiplies the whole student
  loss, and the mi_* settings follow the student's logits.
  """

  teacher: str = setting(
    "",
    "The teacher: a finished workdir, a .keras file or a SavedModel folder.",
    path=True,
    check=_check_teacher,
  )
  temperature: float = setting(
    1.0,
    "Distillation temperature T, in [0.05, 1000].",
    check=in_range(
      *TEMPERATURE_RANGE,
      f"the distillation temperature must lie in [{TEMPERATURE_RANGE[0]:g}, "
      f"{TEMPERATURE_RANGE[1]:g}] (the sweeps use 1-16).",
    ),
  )
  beta: float = setting(
    1.0,
    "Weight of the teacher term, in [0, 1] (the paper: 1).",
    check=in_range(0.0, 1.0, "the weight of the teacher term must lie in [0, 1]."),
  )
  t_squared: bool = setting(
    False, "Multiply the teacher term by T^2 (Hinton et al.); off in the paper."
  )
  teacher_term: str = setting(
    "cross_entropy",
    "The teacher term: cross_entropy, H(softmax(teacher / T), softmax(student / T)) (Section "
    "4); logit_matching, half the squared error between the student's and the teacher's "
    "logits, summed over classes (the MNIST anecdote, Appendix A.5; T sets only gamma).",
    TEACHER_TERMS,
    optional=True,
  )


def _fields():
  return {f.name: f for f in dataclasses.fields(DistillConfig)}  # Every setting, by name.


def check_field(name: str, value: Any) -> None:
  """Raises UserError naming `value` and what is allowed when setting `name` may not take it.

  Every number must be finite, every integer at most MAX_INT (or its `at_most` bound), and
  the setting's own check (its `setting(check=...)`) must pass.

  Raises:
    UserError: the value is not allowed.
    KeyError: there is no setting `name` (a misspelt name never skips its checks).
  """
  field = _fields()[name]
  if isinstance(value, float) and not math.isfinite(value):
    _refuse(name, value, "it must be a finite number.")
  own = field.metadata.get("check")
  limit = getattr(own, "limit", MAX_INT)  # An at_most check sets its own.
  if isinstance(value, int) and not isinstance(value, bool) and value > limit:
    _refuse(name, value, f"it must be at most {limit}.")
  if own is not None:
    own(name, value)


def validate(config) -> None:
  """Checks every field of a config dataclass and its choices.

  Needs no TensorFlow, except to look a TFDS data set up by name (TFDS imports it).
  """
  for f in dataclasses.fields(config):
    value = getattr(config, f.name)
    choices = f.metadata.get("choices")
    if choices is not None and value not in choices:
      raise UserError(f"--{f.name}={value} is not allowed: choose one of {', '.join(choices)}.")
    check_field(f.name, value)
  check_loss_settings(config)
  check_optimizer_settings(config)
  dataset = getattr(config, "dataset", None)
  if dataset is not None and dataset not in SPECS and datasets_lib.source_of(dataset)[0] == "tfds":
    import tensorflow_datasets as tfds  # Local import: TFDS pulls in TensorFlow.

    try:
      tfds.builder_cls(dataset.split("/")[0].split(":")[0])  # Imports one module: fast.
    except tfds.core.registered.DatasetNotFoundError:
      raise UserError(
        f"--dataset={dataset} is not allowed: TFDS has no data set of that name. Give a "
        f"curated one ({', '.join(SPECS)}), a TFDS image classification data set by name "
        "(see `tfds.list_builders()`), folder:PATH or npz:PATH."
      ) from None


def check_loss_settings(config) -> None:
  """Refuses loss settings that contradict each other, naming the values.

  Label smoothing (--alpha > 0) belongs to --loss=cross_entropy: online LS replaces the
  uniform soft targets with its own, and the focal loss is compared with LS as an alternative
  calibrating loss (Mukhoti et al. 2020), not stacked on it. --online_ls_mix and --focal_gamma
  off their defaults need their loss, so that a setting never silently does nothing. A
  student (a DistillConfig) trains on the distillation loss, so only cross_entropy applies.

  Raises:
    UserError: such a combination.
  """
  fields = {f.name: f for f in dataclasses.fields(config)}
  if "loss" not in fields:
    return
  loss = config.loss
  if isinstance(config, DistillConfig) and loss != "cross_entropy":
    raise UserError(
      f"--loss={loss} is not allowed for a distilled student: it trains on the distillation "
      "loss (its hard term with --alpha). Train with --loss=cross_entropy."
    )
  if loss != "cross_entropy" and config.alpha > 0:
    raise UserError(
      f"--alpha={config.alpha:g} is not allowed with --loss={loss}: uniform label smoothing "
      f"belongs to --loss=cross_entropy; {loss} is its alternative, not an addition. Pass "
      "--alpha=0, or --loss=cross_entropy."
    )
  for name, needs in (("online_ls_mix", "online_ls"), ("focal_gamma", "focal")):
    value = getattr(config, name)
    if loss != needs and value != fields[name].default:
      raise UserError(
        f"--{name}={value:g} is not allowed with --loss={loss}: it applies only to "
        f"--loss={needs}. Drop it, or pass --loss={needs}."
      )


def check_optimizer_settings(config) -> None:
  """Refuses optimizer settings that contradict each other, naming the values.

  Dampening and a last-layer rate are SGD settings; dampening with Nesterov is not the
  paper's gradient smoothing (A.5); the linear schedule has neither boundaries nor a decay
  factor. Checked with every other setting (`validate`), before a workdir is looked at.

  Raises:
    UserError: such a combination.
  """
  if "dampening" not in {f.name for f in dataclasses.fields(config)}:
    return
  if config.optimizer != "sgd":
    for name, neutral in (("dampening", 0.0), ("last_layer_lr_scale", 1.0)):
      if getattr(config, name) != neutral:
        raise UserError(
          f"--{name}={getattr(config, name):g} is not allowed with --optimizer="
          f"{config.optimizer}: it is an SGD setting (Adam normalises each gradient, so "
          "neither a dampened average nor a scaled gradient changes its step). Use "
          "--optimizer=sgd, or leave it out."
        )
  elif config.dampening and config.nesterov:
    raise UserError(
      f"--dampening={config.dampening:g} is not allowed with --nesterov: the paper's gradient "
      "smoothing (A.5) is plain momentum, and Keras' Nesterov step at the dampened rate adds "
      "(1 - d) x the gradient where Nesterov adds the whole gradient (PyTorch refuses the pair "
      "too). Pass --nonesterov, or leave --dampening out."
    )
  if config.lr_schedule == "linear" and config.lr_boundaries:
    raise UserError(
      f"--lr_boundaries={','.join(f'{b:g}' for b in config.lr_boundaries)} is not allowed "
      "with --lr_schedule=linear, which falls to 0 at the end of training without steps. "
      "Pass --lr_boundaries= (none), or --lr_schedule=step."
    )
  decay = {f.name: f for f in dataclasses.fields(config)}["lr_decay"].default
  if config.lr_schedule == "linear" and config.lr_decay != decay:
    raise UserError(
      f"--lr_decay={config.lr_decay:g} is not allowed with --lr_schedule=linear, which falls "
      "to 0 at the end of training without steps to decay at. Drop it, or pass "
      "--lr_schedule=step."
    )


def from_dict(cls, data: dict):
  """Builds a config from its JSON form; tuples come back as tuples, unknown keys are refused."""
  names = {f.name: f for f in dataclasses.fields(cls)}
  unknown = sorted(set(data) - set(names))
  if unknown:
    raise UserError(
      f"config has unknown settings {unknown}; it was written by another version of ls_keras."
    )
  values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
  return cls(**values)


def dumps(config) -> str:
  """The config as sorted, indented JSON (what config.json compares)."""
  return json.dumps(config.to_dict(), indent=2, sort_keys=True)


def config_class(kind: str):
  """The config class of a run kind recorded in config.json ("train" or "distill")."""
  return DistillConfig if kind == "distill" else TrainConfig


def check_recorded(cls, data: Any) -> None:
  """Raises UserError naming the setting unless `data` (config.json's "config") is a whole `cls`.

  A workdir's files are input like any other: every setting must be present, of its field's
  type (a JSON list for a tuple) and allowed, so analyses never meet a string alpha or a
  missing dataset as a TypeError or KeyError deep inside.
  """
  if not isinstance(data, dict):
    raise UserError(f'its "config" is {type(data).__name__}, not an object of settings')
  hints = typing.get_type_hints(cls)
  for f in dataclasses.fields(cls):
    if f.name not in data:
      if f.metadata.get("optional"):
        continue  # Written before the setting existed: its default.
      raise UserError(f'it lacks the setting "{f.name}"')
    value, kind = data[f.name], hints[f.name]
    if typing.get_origin(kind) is tuple:
      element = typing.get_args(kind)[0]
      ok = isinstance(value, list) and all(_is_a(v, element) for v in value)
      what = f"a list of {_KINDS[element]}s"
    else:
      ok, what = _is_a(value, kind), f"{'an' if kind is int else 'a'} {_KINDS[kind]}"
    if not ok:
      raise UserError(f'its setting "{f.name}" is {json.dumps(value)}, not {what}')
    choices = f.metadata.get("choices")
    if choices is not None and value not in choices:
      raise UserError(f'its setting "{f.name}" is {json.dumps(value)}, not one of {choices}')
    try:
      check_field(f.name, tuple(value) if isinstance(value, list) else value)
    except UserError as e:
      raise UserError(f'its setting "{f.name}" is not allowed ({e})') from e


_KINDS = {bool: "boolean", int: "integer", float: "number", str: "string"}


def _is_a(value: Any, kind) -> bool:
  """Whether a JSON value is of a config field's type (an int is a float; a bool is neither)."""
  if kind is bool:
    return isinstance(value, bool)
  if isinstance(value, bool):
    return False
  if kind is float:
    return isinstance(value, (int, float))
  return isinstance(value, kind)


# The other calibrating losses in words, with the setting that parametrises each: how
# commands and the main job's report name a run of one, e.g. "online LS (mix 0.5)".
LOSS_LABELS = {
  "online_ls": ("online LS (mix {:g})", "online_ls_mix"),  # Zhang et al. 2021: hard weight.
  "focal": ("focal loss (gamma {:g})", "focal_gamma"),  # Mukhoti et al. 2020.
}


def loss_label(loss: str, value: float) -> str:
  """A run of `loss` (a LOSS_LABELS key) whose setting is `value`, in words."""
  return LOSS_LABELS[loss][0].format(value)


def training_method(config: dict) -> str:
  """How a run was trained, in words, from its config.json "config" record.

  "alpha 0.1" (cross-entropy with uniform LS), "online LS (mix 0.5)" or "focal loss
  (gamma 3)": runs of other losses are not seeds of alpha 0.
  """
  loss = config.get("loss", "cross_entropy")
  if loss in LOSS_LABELS:
    setting = LOSS_LABELS[loss][1]
    default = {f.name: f.default for f in dataclasses.fields(TrainConfig)}[setting]
    return loss_label(loss, config.get(setting, default))
  return f"alpha {config.get('alpha', 0.0):g}"
