"""Knowledge distillation (paper Section 4): the loss, equivalent smoothing, and a Distiller.

Student loss (the paper's cross-entropy form):
  (1 - beta) H(y, p_student) + beta H(softmax(teacher / T), softmax(student / T)),
optionally times T^2 on the second term (Hinton et al.; off by default, as in the paper);
or, for the paper's fully connected MNIST anecdote (Appendix A.5), logit matching:
  (1 - beta) H(y, p_student) + beta (1/2) sum_k (student_k - teacher_k)^2.

Why not `keras.distillation.Distiller` (Keras 3.15)? Its LogitsDistillation multiplies the
KL term by T^2 unconditionally and hands raw logits to any other loss, so the paper's
cross-entropy at temperature T without T^2 cannot be expressed; and its compute_loss
leaves out the student's regularisation losses (weight decay). Where the definitions
coincide the two agree exactly (tests/test_distillation.py): with
`LogitsDistillation(T, loss=keras.losses.KLDivergence())` and `student_loss_weight = 1 -
beta`, ours with `t_squared` is Keras' loss + beta T^2 x the mean entropy of softmax(teacher
/ T) + the weight decay, with the same gradients but the weight decay's. (Its default
loss="kl_divergence" string gets no softmax in Keras 3.15.) The Distiller below keeps
Keras' contract instead: it overrides `compute_loss`, so it trains through the same loop
as every model, scales for distribution like Keras losses do, and saves its student alone.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from ls_keras.core import checks, numerics
from ls_keras.core import config as config_lib
from ls_keras.models import heads
from ls_keras.models import export as export_lib
from ls_keras.training import losses
from ls_keras.core.errors import UserError


def distillation_terms(
  labels,
  student_logits,
  teacher_logits,
  temperature: float,
  alpha: float = 0.0,
  t_squared: bool = False,
  teacher_term: str = "cross_entropy",
):
  """Per-example (hard, soft) terms of the student loss (paper Section 4): float32 [N].

  hard = H(y_ls, p_student) in nats. soft, the teacher term: with "cross_entropy",
  H(softmax(teacher / T), softmax(student / T)) in nats, times T^2 with `t_squared` (Hinton
  et al.; the paper has no T^2); with "logit_matching", `logit_matching(student, teacher)`
  (Appendix A.5; T does not enter). The cross-entropies are Keras' categorical cross-entropy
  on logits, the hard one with `label_smoothing=alpha`: the loss every classifier trains with
  (`training.losses.label_smoothing_loss`), one implementation.

  Args:
    labels: one-hot [N, K] or integer class indices [N] / [N, 1].
    student_logits: raw scores [N, K], any float dtype.
    teacher_logits: raw scores [N, K], the same K.
    temperature: T > 0.
    alpha: label smoothing of the hard term, in [0, 1).
    t_squared: multiply the cross-entropy teacher term by T^2.
    teacher_term: "cross_entropy" (Section 4) or "logit_matching" (Appendix A.5).

  Returns:
    (hard, soft), two float32 tensors [N]: nats, and nats or squared logit units.

  Raises:
    UserError: T <= 0, alpha outside [0, 1), an unknown teacher term, t_squared with logit
      matching, or shapes that do not agree.
  """
  check_hyperparameters(temperature, 0.0)
  check_teacher_term(teacher_term, t_squared)
  config_lib.check_field("alpha", alpha)
  student_logits = tf.cast(student_logits, tf.float32)
  teacher_logits = tf.cast(teacher_logits, tf.float32)
  if student_logits.shape[-1] != teacher_logits.shape[-1]:
    raise UserError(
      f"student logits {student_logits.shape} and teacher logits {teacher_logits.shape} must have "
      "the same number of classes."
    )
  targets = losses.one_hot_targets(labels, student_logits.shape[-1])
  hard = losses.label_smoothing_loss(alpha, reduction=None)(targets, student_logits)
  if teacher_term == "logit_matching":
    return hard, logit_matching(student_logits, teacher_logits)
  teacher_probs = tf.nn.softmax(teacher_logits / temperature, axis=-1)
  soft = losses.label_smoothing_loss(0.0, reduction=None)(
    teacher_probs, student_logits / temperature
  )
  if t_squared:
    soft = soft * temperature**2
  return hard, soft


def logit_matching(student_logits, teacher_logits) -> tf.Tensor:
  """Half the squared error between two models' logits, per example: (1/2) sum_k (s_k - t_k)^2.

  The teacher term of the paper's fully connected MNIST student (Appendix A.5: "half the
  squared error to the teacher's logits"), which Hinton et al. (2015, Section 2.1) show is
  distillation's high-temperature limit. Its gradient with respect to the student's logit k
  is s_k - t_k. Summed over the K classes: K/2 times Keras' MeanSquaredError, which averages
  over them.

  Args:
    student_logits: raw scores [N, K], any float dtype.
    teacher_logits: raw scores [N, K].

  Returns:
    float32 [N], in squared logit units.
  """
  difference = tf.cast(student_logits, tf.float32) - tf.cast(teacher_logits, tf.float32)
  return 0.5 * tf.reduce_sum(tf.square(difference), axis=-1)


def check_teacher_term(teacher_term: str, t_squared: bool = False) -> None:
  """Checks the teacher term as the run's settings would, and that T^2 applies to it.

  Args:
    teacher_term: "cross_entropy" or "logit_matching" (`config.TEACHER_TERMS`).
    t_squared: whether the T^2 factor is asked for.

  Raises:
    UserError: an unknown term, or T^2 with logit matching (which has no temperature).
  """
  if teacher_term not in config_lib.TEACHER_TERMS:
    raise UserError(
      f"--teacher_term={teacher_term} is not allowed: choose one of "
      f"{', '.join(config_lib.TEACHER_TERMS)}."
    )
  if t_squared and teacher_term == "logit_matching":
    raise UserError(
      "--t_squared is not allowed with --teacher_term=logit_matching: the T^2 factor "
      "rescales the cross-entropy at temperature T, and logit matching has no temperature. "
      "Leave --t_squared off, or pass --teacher_term=cross_entropy."
    )


def weigh_terms(hard, soft, beta: float) -> tf.Tensor:
  """(1 - beta) hard + beta soft: the student loss from its terms (paper Section 4).

  Args:
    hard: the per-example hard term [N] from `distillation_terms`, float32, in nats.
    soft: the per-example soft term [N], likewise.
    beta: the weight of the teacher term, in [0, 1].

  Returns:
    float32 [N], in nats.
  """
  return (1.0 - beta) * hard + beta * soft


def distillation_loss(
  labels,
  student_logits,
  teacher_logits,
  temperature: float,
  beta: float,
  alpha: float = 0.0,
  t_squared: bool = False,
  teacher_term: str = "cross_entropy",
) -> tf.Tensor:
  """Per-example student loss (1 - beta) hard + beta soft, float32 [N] (paper Section 4).

  What `Distiller.compute_loss` averages: both are `weigh_terms` of `distillation_terms`.

  Args:
    labels: one-hot [N, K] or integer class indices [N] / [N, 1].
    student_logits: raw scores [N, K], any float dtype.
    teacher_logits: raw scores [N, K], the same K.
    temperature: T > 0.
    beta: the weight of the teacher term, in [0, 1].
    alpha: label smoothing of the hard term, in [0, 1).
    t_squared: multiply the cross-entropy teacher term by T^2.
    teacher_term: "cross_entropy" (Section 4) or "logit_matching" (Appendix A.5).

  Returns:
    float32 [N]: nats with the cross-entropy term; with logit matching, beta of it is in
    squared logit units.

  Raises:
    UserError: as `distillation_terms`, or beta outside [0, 1].
  """
  check_hyperparameters(temperature, beta)
  hard, soft = distillation_terms(
    labels, student_logits, teacher_logits, temperature, alpha, t_squared, teacher_term
  )
  return weigh_terms(hard, soft, beta)


class _BatchMean(keras.losses.Loss):
  """Keras' own reduction of a per-example loss already computed (`y_pred`; `y_true` unused).

  The mean over this replica's batch, divided by the number of replicas under tf.distribute
  exactly as every Keras loss is, so the replicas' summed gradients are the global batch's.
  """

  def call(self, y_true, y_pred):
    del y_true
    return y_pred


def equivalent_smoothing(
  teacher_logits: np.ndarray, labels: np.ndarray, temperature: float
) -> float:
  """Gamma = E[sum_k (1 - y_k) p_teacher,k(T)] * K / (K - 1) (paper Section 4, Figure 5's axis).

  0 for one-hot teachers, 1 for uniform ones. For a model trained with label smoothing
  alpha, the same expression on its targets gives exactly alpha, which puts teachers and
  students on one axis.

  Args:
    teacher_logits: float raw scores [N, K] (finite; not probabilities).
    labels: integer class indices [N] / [N, 1] (e.g. int64) or one-hot [N, K].
    temperature: T, dimensionless, in [0.05, 1000].

  Returns:
    gamma as a Python float in [0, K / (K - 1)] (dimensionless, on alpha's scale).

  Raises:
    UserError: bad logits or labels (see `ls_keras.core.checks`), different numbers of
      them, or T outside [0.05, 1000].
  """
  check_hyperparameters(temperature, 0.0)
  logits = checks.logits(teacher_logits, "teacher logits")
  labels = checks.class_indices(labels, logits.shape[1])
  if len(labels) != len(logits):
    raise UserError(
      f"{len(logits)} teacher logits but {len(labels)} labels: they must be equally many."
    )
  probs = numerics.softmax(logits / temperature)
  k = probs.shape[1]
  off_target = 1.0 - probs[np.arange(len(labels)), labels]
  return float(off_target.mean() * k / (k - 1))


@keras.saving.register_keras_serializable(package="ls_keras")
class Distiller(keras.Model):
  """A frozen teacher and a trainable student; predictions are the student's logits.

  Knowledge distillation (Hinton et al. 2015) as the paper's Section 4 and Figure 5 train
  students: loss (1 - beta) H(y, p) + beta H(p_teacher(T), p(T)) per example, or logit
  matching for Appendix A.5's student, see `distillation_loss`. Compiled and fitted as any
  Keras model.

  Args:
    teacher: a Keras model from float32 images [N, H, W, C] (pixels 0-255) to logits
      [N, K]; frozen here (not trainable).
    student: a Keras model with the same input and K logits; the one trained.
    temperature: T, dimensionless, in [0.05, 1000].
    beta: weight of the teacher term, in [0, 1] (the paper: 1).
    alpha: label smoothing of the hard term, in [0, 1).
    t_squared: multiply the soft term by T^2 (Hinton et al.; the paper mentions none).
    loss_scale: multiplier on the mean cross-entropy (the paper's recipes use 3).
    teacher_term: "cross_entropy" (Section 4) or "logit_matching" (Appendix A.5's student:
      half the squared error to the teacher's logits).
    **kwargs: passed to keras.Model (e.g. name).

  Raises:
    UserError: T or beta outside their ranges, a bad teacher term (see
      `check_teacher_term`), or a teacher that ends in a softmax (its outputs are
      probabilities, not logits).
  """

  def __init__(
    self,
    teacher: keras.Model,
    student: keras.Model,
    temperature: float = 1.0,
    beta: float = 1.0,
    alpha: float = 0.0,
    t_squared: bool = False,
    loss_scale: float = 1.0,
    teacher_term: str = "cross_entropy",
    **kwargs,
  ):
    super().__init__(**kwargs)
    check_hyperparameters(temperature, beta)
    check_teacher_term(teacher_term, t_squared)
    softmax = heads.ends_in_softmax(teacher)
    if softmax is not None:
      raise UserError(
        f"the teacher '{teacher.name}' ends in a softmax (layer '{softmax}'): its outputs are "
        "probabilities, and the distillation loss takes logits (it applies softmax(teacher / "
        "T) itself). Give the teacher's pre-softmax output: a model without the final "
        "softmax (for a final Dense layer, the same layer with a linear activation)."
      )
    self.teacher, self.student = teacher, student
    self.teacher.trainable = False
    self.temperature, self.beta, self.alpha, self.t_squared = temperature, beta, alpha, t_squared
    self.loss_scale, self.teacher_term = loss_scale, teacher_term
    self.hard_loss = keras.metrics.Mean(name="hard_loss")
    self.soft_loss = keras.metrics.Mean(name="soft_loss")
    self._batch_mean = _BatchMean(name="distillation_loss")

  def call(self, inputs, training=None):
    """The student's logits: a Distiller predicts as its student."""
    return self.student(inputs, training=training)

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
    """loss_scale * mean(distillation_loss) + the student's regularisation, as Keras scales them.

    The mean and its division by the number of replicas are Keras' own (a `keras.losses.Loss`
    reduction), and the regularisation is added by `keras.Model.compute_loss`, so the
    Distiller trains through the same loop as every model. The frozen teacher adds no
    regularisation: Keras collects it from trainable weights only.
    """
    del sample_weight
    if y_pred is None:
      y_pred = self(x, training=training)
    teacher_logits = tf.stop_gradient(self.teacher(x, training=False))
    hard, soft = distillation_terms(
      y, y_pred, teacher_logits, self.temperature, self.alpha, self.t_squared, self.teacher_term
    )
    self.hard_loss.update_state(hard)
    self.soft_loss.update_state(soft)
    per_example = weigh_terms(hard, soft, self.beta)
    loss = self.loss_scale * self._batch_mean(per_example, per_example)
    if self.losses:  # Keras' compute_loss: the sum of the scaled regularisation losses.
      loss += super().compute_loss(x, y, y_pred, training=training)
    return loss

  @property
  def metrics(self):
    """The two loss terms, reported by the training loop as Keras reports a model's metrics."""
    return [self.hard_loss, self.soft_loss]


def check_hyperparameters(temperature: float, beta: float) -> None:
  """Checks the distillation hyperparameters as the run's settings check them (Section 4).

  Args:
    temperature: T, dimensionless; allowed in [0.05, 1000].
    beta: weight of the teacher term; allowed in [0, 1].

  Raises:
    UserError: T or beta outside its range, or not finite.
  """
  config_lib.check_field("temperature", temperature)
  config_lib.check_field("beta", beta)


def teacher_format(path: str, trust_saved_model: bool = False) -> str:
  """What `path` holds as a teacher: "workdir", "keras" or "saved_model"; a UserError otherwise.

  A workdir is read through its model.keras (safe mode), never its SavedModel. A SavedModel
  folder is accepted only with `trust_saved_model`: loading one runs the TensorFlow graph
  stored in it, a program its author wrote (it can read and write files), so it is refused
  unless the user vouches for its author. Read-only, so it can refuse before anything runs.

  Args:
    path: the --teacher value: a workdir, a .keras file or a SavedModel folder.
    trust_saved_model: whether the user vouched for a SavedModel's author.

  Returns:
    "workdir", "keras" or "saved_model".

  Raises:
    UserError: a SavedModel without `trust_saved_model`, or a path that is none of them.
  """
  if os.path.isdir(path) and os.path.exists(os.path.join(path, "model.keras")):
    return "workdir"
  if path.endswith(".keras"):
    return "keras"
  if os.path.exists(os.path.join(path, "saved_model.pb")):
    if not trust_saved_model:
      raise UserError(
        f"--teacher={path} is a SavedModel: {export_lib.SAVED_MODEL_TRUST}, or distil from the "
        "teacher's .keras file (loaded in Keras' safe mode, no code) or from its ls_keras workdir "
        "(which uses its model.keras)."
      )
    return "saved_model"
  raise UserError(
    f"--teacher={path} is neither a finished ls_keras workdir (with model.keras), a .keras file, "
    "nor a SavedModel folder."
  )


def load_teacher(path: str, trust_saved_model: bool = False) -> keras.Model:
  """A teacher from a workdir or a `.keras` file (safe mode), or a trusted SavedModel folder.

  See `teacher_format`: a SavedModel is loaded only with `trust_saved_model`. The teacher
  of the paper's Section 4 experiments (Figure 5).

  Args:
    path: the --teacher value: a workdir, a .keras file or a SavedModel folder.
    trust_saved_model: whether the user vouched for a SavedModel's author.

  Returns:
    A keras.Model from float32 images [N, H, W, C] (pixels 0-255) to logits [N, K].

  Raises:
    UserError: as `teacher_format`; a SavedModel without a 'serve' endpoint.
    WorkdirError (a UserError): a model file that is missing, too large when unpacked,
      corrupt, or (from a workdir) without ls_keras' layer contract.
  """
  kind = teacher_format(path, trust_saved_model)
  if kind == "workdir":
    return export_lib.load_keras_model(os.path.join(path, "model.keras"))
  if kind == "keras":
    return export_lib.load_keras_model(path)
  loaded = export_lib.load_saved_model(path)  # Clear error if corrupt.
  if not hasattr(loaded, "serve"):
    raise UserError(
      f"--teacher={path} is a SavedModel without a 'serve' endpoint; export it with model.export."
    )
  inputs = keras.Input(tuple(loaded.serve.input_signature[0].shape[1:]))
  # float32: the SavedModel's signature takes float32 images, whatever the run's precision.
  layer = keras.layers.TFSMLayer(path, call_endpoint="serve", trainable=False, dtype="float32")
  return keras.Model(inputs, layer(inputs), name="teacher")


def check_compatible(teacher: keras.Model, image_shape, num_classes: int) -> None:
  """The teacher must see the student's inputs and predict the student's classes.

  Checked before distillation starts, so a mismatched teacher fails at once (Section 4).

  Args:
    teacher: the loaded teacher (see `load_teacher`).
    image_shape: the student's (height, width, channels).
    num_classes: K, the student's data set's classes.

  Raises:
    UserError: a different input shape, or a different number of classes.
  """
  teacher_input = tuple(teacher.inputs[0].shape[1:])
  teacher_classes = teacher.outputs[0].shape[-1]
  if teacher_input != tuple(image_shape):
    raise UserError(
      f"the teacher takes inputs of shape {teacher_input}, but the student's data has "
      f"{tuple(image_shape)}: distil on the data set the teacher was trained on."
    )
  if teacher_classes != num_classes:
    raise UserError(
      f"the teacher predicts {teacher_classes} classes, the student's data has {num_classes}."
    )
