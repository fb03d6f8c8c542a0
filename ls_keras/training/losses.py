"""The losses training compiles (`--loss`), and the targets they take.

- `cross_entropy` (the paper, Section 2): label smoothing trains on y * (1 - alpha) + alpha / K
  instead of the one-hot y (Szegedy et al. 2016, as the paper's Preliminaries write it);
  Keras' CategoricalCrossentropy computes it.
- `online_ls`: online label smoothing (Zhang et al., "Delving Deep into Label Smoothing",
  IEEE TIP 2021): soft targets per class from the model's own correctly classified training
  predictions of the previous epoch. Pure functions first, then `OnlineLabelSmoothing`, the
  Keras loss holding their state.
- `focal`: the focal loss (Lin et al. 2017) as Mukhoti et al. (NeurIPS 2020, "Calibrating Deep
  Neural Networks using Focal Loss") use it for calibration, through Keras' own
  CategoricalFocalCrossentropy.

`training_loss` picks one from a config.
"""

from typing import List, Tuple

import keras
import tensorflow as tf

from ls_keras.core import checks
from ls_keras.core.errors import UserError


def one_hot_targets(labels, num_classes: int) -> tf.Tensor:
  """float32 targets [N, K] from integer labels [N] / [N, 1] or one-hot (or soft) targets [N, K].

  The one form the losses take, so that every public loss accepts every label form.
  Integer dtypes are class indices; floating ones are target distributions. Called eagerly
  (from user code) the values are checked too; inside a training graph only the shapes are.

  Args:
    labels: integer class indices (any integer dtype, e.g. int64) of shape [N] or [N, 1];
      or floating targets [N, K]: one-hot, smoothed, or a teacher's probabilities.
    num_classes: K, the number of classes (the logits' width).

  Returns:
    A float32 tensor [N, K] of probabilities, each row a target distribution.

  Raises:
    UserError: integer labels not of shape [N] or [N, 1]; floating targets not of shape
      [N, num_classes] (floating class indices included); eagerly, class indices outside
      [0, K), or target rows that are not distributions (outside [0, 1], or not summing
      to 1 within 1e-3).
  """
  labels = tf.convert_to_tensor(labels)
  if labels.dtype.is_integer:
    if labels.shape.rank not in (None, 1) and not (
      labels.shape.rank == 2 and labels.shape[-1] == 1
    ):
      raise UserError(f"integer labels must have shape (N,) or (N, 1); got {labels.shape}.")
    if tf.executing_eagerly():
      checks.class_indices(labels.numpy(), num_classes)
    return tf.one_hot(tf.reshape(labels, [-1]), num_classes, dtype=tf.float32)
  if labels.shape.rank != 2 or labels.shape[-1] not in (None, num_classes):
    raise UserError(
      f"target distributions must have shape (N, {num_classes}); got {labels.shape} (class "
      "indices must be integers)."
    )
  if tf.executing_eagerly():
    checks.probabilities(labels.numpy(), "targets")
  return tf.cast(labels, tf.float32)


def label_smoothing_loss(alpha: float, reduction: str = "sum_over_batch_size") -> keras.losses.Loss:
  """The training loss: Keras' categorical cross-entropy on raw logits with LS alpha (Section 2).

  Keras' `CategoricalCrossentropy(label_smoothing=alpha)` computes exactly
  H(y (1 - alpha) + alpha / K, softmax(z)) on one-hot labels (pinned against a NumPy
  reference of the paper's formula in tests/test_losses.py). Classifiers compile it; the
  Distiller's terms call it.

  Args:
    alpha: label smoothing, in [0, 1) (checked by the config, not here).
    reduction: Keras' reduction: the batch mean (scaled for tf.distribute) by default,
      None for per-example values.

  Returns:
    A keras.losses.Loss taking float32 one-hot or soft targets [N, K] and float32 logits
    [N, K]; its value is float32 in nats (a scalar, or [N] with reduction=None).
  """
  return keras.losses.CategoricalCrossentropy(
    from_logits=True, label_smoothing=alpha, reduction=reduction
  )


def focal_loss(gamma: float, reduction: str = "sum_over_batch_size") -> keras.losses.Loss:
  """The multi-class focal loss -(1 - p_y)^gamma log p_y on raw logits (Mukhoti et al. 2020).

  Keras' `CategoricalFocalCrossentropy` with what makes it that loss: `alpha=1` (Keras'
  default 0.25 is Lin et al.'s class-balancing weight for detection, which only rescales the
  loss here) and `from_logits=True` (Keras' default expects probabilities). Keras clips p to
  [1e-7, 1 - 1e-7] before the log, so an example's loss is at most 16.1 nats. Mukhoti et al.
  calibrate with gamma = 3 (their FL-3).

  Args:
    gamma: the focusing parameter (> 0; checked by the config, not here).
    reduction: Keras' reduction: the batch mean (scaled for tf.distribute) by default,
      None for per-example values.

  Returns:
    A keras.losses.Loss taking float32 one-hot targets [N, K] and float32 logits [N, K];
    its value is float32 in nats (a scalar, or [N] with reduction=None).
  """
  return keras.losses.CategoricalFocalCrossentropy(
    alpha=1.0, gamma=gamma, from_logits=True, reduction=reduction
  )


# Online label smoothing (Zhang et al., IEEE TIP 2021, arXiv 2011.12562; the
# authors' code: github.com/zhangchbin/OnlineLabelSmoothing, cifar/scripts/
# train_cifar_all_methods.py, `update_loss_lams`, `soft_cross_entropy` and the end of `train`).
# S is a K x K matrix whose row k is the soft target of class k. During epoch t the loss is
#   mix * H(y, p) + (1 - mix) * H(S^{t-1}[y], p),
# and the predicted distributions p of the epoch's correctly classified training examples
# (argmax p = y) are summed per true class; at the epoch's end row k of S^t is their mean over
# the class' examples (the uniform 1/K where none was correct). S^0 = 0, as in the authors'
# CIFAR and ImageNet code, so the first epoch trains on mix * H(y, p) alone. Their fine-grained
# code instead starts from the uniform S^0 with weights 1 and 1 and freezes rows whose largest
# entry reaches 0.88, which "can be better for fine-grained classification, not for ImageNet or
# CIFAR"; that variant is not implemented.
ONLINE_LS_MIX = 0.5  # The paper's alpha (its default, and the authors' CIFAR/ImageNet code's).


def online_targets(labels, soft_labels, mix: float) -> tf.Tensor:
  """The targets of online LS: mix * one_hot(y) + (1 - mix) * S[y] (Zhang et al. 2021).

  The cross-entropy is linear in its target, so H(targets, p) is the loss
  mix * H(y, p) + (1 - mix) * H(S[y], p). The rows sum to 1, or to `mix` while S = S^0 = 0.

  Args:
    labels: the true classes as one-hot float targets [N, K] or integer indices [N]
      (see `one_hot_targets`).
    soft_labels: S, float32 [K, K]: row k is the soft target of class k (or zeros).
    mix: the weight of the hard targets, in (0, 1) (the paper: 0.5).

  Returns:
    float32 targets [N, K].
  """
  soft_labels = tf.convert_to_tensor(soft_labels, tf.float32)
  one_hot = one_hot_targets(labels, soft_labels.shape[0])
  return mix * one_hot + (1.0 - mix) * tf.gather(soft_labels, tf.argmax(one_hot, -1))


def soft_cross_entropy(targets, logits) -> tf.Tensor:
  """-sum_k t_k log softmax(z)_k per example, with its exact gradient for any targets t >= 0.

  Written out rather than through Keras' cross-entropy: TensorFlow's fused
  softmax_cross_entropy_with_logits, which Keras calls on logits, takes the gradient to be
  softmax(z) - t, true only for targets that sum to 1, and online LS' first epoch has
  targets that sum to `mix`.

  Args:
    targets: float [N, K], non-negative.
    logits: float [N, K] (cast to float32).

  Returns:
    float32 [N], in nats.
  """
  log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
  return -tf.reduce_sum(tf.cast(targets, tf.float32) * log_probs, axis=-1)


def correct_prediction_sums(labels, logits) -> Tuple[tf.Tensor, tf.Tensor]:
  """Per true class, the sum of the predicted distributions of the correctly classified examples.

  An example is correct when the argmax of its logits (the first, on ties) is its label.
  No gradient flows through the sums.

  Args:
    labels: the true classes as one-hot float targets [N, K] or integer indices [N].
    logits: float [N, K].

  Returns:
    (sums, counts): float32 [K, K], row k the sum of softmax(z) over the correct examples of
    class k; and float32 [K], their number.
  """
  logits = tf.stop_gradient(tf.cast(logits, tf.float32))
  one_hot = one_hot_targets(labels, logits.shape[-1])
  correct = tf.cast(tf.equal(tf.argmax(logits, -1), tf.argmax(one_hot, -1)), tf.float32)
  kept = one_hot * correct[:, None]  # [N, K]: the correct examples' classes.
  return tf.matmul(kept, tf.nn.softmax(logits), transpose_a=True), tf.reduce_sum(kept, 0)


def soft_label_matrix(sums, counts) -> tf.Tensor:
  """S^t from an epoch's sums: row k is the mean of class k's correct predictions, or 1/K.

  The uniform row 1/K is for a class without a correct example that epoch (as the authors'
  code does).

  Args:
    sums: float [K, K] (`correct_prediction_sums`, summed over the epoch and the replicas).
    counts: float [K], the number of examples in each row's sum.

  Returns:
    float32 [K, K], each row a distribution.
  """
  sums, counts = tf.cast(sums, tf.float32), tf.cast(counts, tf.float32)
  num_classes = sums.shape[-1]
  means = sums / tf.maximum(counts, 1.0)[:, None]
  return tf.where(counts[:, None] > 0, means, tf.fill(tf.shape(sums), 1.0 / num_classes))


class OnlineLabelSmoothing(keras.losses.Loss):
  """Online label smoothing (Zhang et al. 2021) as a Keras loss with its state in variables.

  Calling it returns mix * H(y, p) + (1 - mix) * H(S^{t-1}[y], p) per example (`online_targets`,
  `soft_cross_entropy`) and, as a side effect, adds the batch's `correct_prediction_sums` to
  the epoch's: training calls it once per step, inside Keras' `compute_loss`. `end_epoch`
  makes S^t of them and starts the next epoch's sums. Create it inside the strategy's scope.

  State, non-trainable float32 variables (`variables`, which the run's checkpoint holds, so a
  resumed run continues with the same S and the sums of a partly trained epoch):
  `soft_labels` S [K, K], mirrored; `sums` [K, K] and `counts` [K], on-read with SUM
  aggregation: each replica adds to its own copy, a read outside `strategy.run` sums them.
  """

  def __init__(
    self,
    num_classes: int,
    mix: float = ONLINE_LS_MIX,
    reduction: str = "sum_over_batch_size",
    name: str = "online_label_smoothing",
  ):
    """The loss for K classes, its state zero (S^0 = 0, no sums yet).

    Args:
      num_classes: K.
      mix: the weight of the hard-target cross-entropy, in (0, 1) (the paper: 0.5).
      reduction: Keras' reduction (None: per-example values).
      name: the loss' name.
    """
    super().__init__(name=name, reduction=reduction, dtype="float32")
    self.num_classes, self.mix = num_classes, mix
    shape = (num_classes, num_classes)
    self.soft_labels = keras.Variable(
      tf.zeros(shape), trainable=False, dtype="float32", name="soft_labels"
    )
    accumulated = dict(trainable=False, dtype="float32", synchronization="on_read")
    self.sums = keras.Variable(tf.zeros(shape), aggregation="sum", name="sums", **accumulated)
    self.counts = keras.Variable(
      tf.zeros((num_classes,)), aggregation="sum", name="counts", **accumulated
    )

  @property
  def variables(self) -> List[keras.Variable]:
    """The state a checkpoint must hold: S, the epoch's sums and counts."""
    return [self.soft_labels, self.sums, self.counts]

  def call(self, y_true, y_pred):
    """Per-example loss [N] of one-hot targets y_true [N, K] and logits y_pred [N, K]."""
    sums, counts = correct_prediction_sums(y_true, y_pred)
    self.sums.assign_add(sums)
    self.counts.assign_add(counts)
    targets = online_targets(y_true, self.soft_labels.value, self.mix)
    return soft_cross_entropy(targets, y_pred)

  def end_epoch(self) -> None:
    """S^t from the epoch's sums over every replica; the sums start again from zero.

    Call it outside `strategy.run`, on every worker, once the epoch's last step has run.
    """
    self.soft_labels.assign(soft_label_matrix(self.sums.value, self.counts.value))
    self.sums.assign(tf.zeros_like(self.sums.value))
    self.counts.assign(tf.zeros_like(self.counts.value))

  def get_config(self) -> dict:
    """What rebuilds the loss (its state is in the checkpoint, not the config)."""
    return {"num_classes": self.num_classes, "mix": self.mix, **super().get_config()}


def training_loss(config, num_classes: int) -> keras.losses.Loss:
  """The loss `config.loss` names, on logits, with its settings.

  Args:
    config: a TrainConfig; reads loss ("cross_entropy", "online_ls" or "focal"), alpha,
      online_ls_mix and focal_gamma (validated by the config).
    num_classes: K (online LS' matrix is K x K).

  Returns:
    `label_smoothing_loss(alpha)`, `OnlineLabelSmoothing(K, online_ls_mix)` (create it in
    the strategy's scope) or `focal_loss(focal_gamma)`.
  """
  if config.loss == "online_ls":
    return OnlineLabelSmoothing(num_classes, config.online_ls_mix)
  if config.loss == "focal":
    return focal_loss(config.focal_gamma)
  return label_smoothing_loss(config.alpha)
