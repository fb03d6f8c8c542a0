"""Mutual information between training-example index and a logit difference (paper Figure 6).

X is the index of one of N training examples of two classes; Y is the difference of those
classes' logits for an augmented copy of it. With L copies per example, Y | x is modelled
as Gaussian with mean mu_x (the mean over copies) and one shared variance sigma^2, and

  I = mean_{x,l} [ log N(y_xl; mu_x, sigma) - log( (1/N) sum_x' N(y_xl; mu_x', sigma) ) ],

which lies in [0, log N]: 0 when the logits carry nothing about which example it was,
log N when every example is told apart.
"""

from typing import Dict, Sequence

import numpy as np

from ls_keras.core.errors import UserError


def mutual_information(y: np.ndarray) -> Dict[str, float]:
  """I(X; Y) between example index and logit difference: the paper's Gaussian estimate (Figure 6).

  Each example's L copies give its mean mu_x; one variance sigma^2, the mean squared
  deviation from those means over all examples and copies, is shared (paper Section 4,
  Figure 6; the formula is in this module's docstring). Densities are combined by
  log-sum-exp, so no term underflows however far apart the examples are.

  Args:
    y: logit differences z_a - z_b [N examples, L augmented copies], any float dtype
      (finite), in logit units; N >= 2, L >= 2.

  Returns:
    "mi": the estimate in nats, clipped to [0, log N]; "sigma": the shared standard
    deviation, in logit units; "log_n": log N in nats, the largest possible value. All
    Python floats.

  Raises:
    UserError: y is not 2-D with N >= 2 and L >= 2, or holds NaN or infinite values.
  """
  y = np.asarray(y, np.float64)
  if y.ndim != 2 or y.shape[0] < 2 or y.shape[1] < 2:
    raise UserError(
      f"the estimate needs N >= 2 examples with L >= 2 copies each; got shape {y.shape}."
    )
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
  return {
    "mi": float(np.clip(estimate, 0.0, np.log(n))),
    "sigma": float(np.sqrt(variance)),
    "log_n": float(np.log(n)),
  }


def check_settings(classes: Sequence[int], num_classes: int, per_class: int, copies: int) -> None:
  """Checks the Figure 6 settings before any model runs, so a bad flag fails at once.

  The paper uses classes "airplane" and "dog" of CIFAR-10, 300 examples each (N = 600),
  and L = 5 augmented copies (paper Section 4, Figure 6).

  Args:
    classes: the two class indices whose logit difference is measured (Python ints).
    num_classes: K, the number of classes of the data set.
    per_class: training examples taken from each of the two classes (N = 2 * per_class).
    copies: L, augmented copies of each example.

  Raises:
    UserError: not exactly two different classes, a class outside 0-(K - 1),
      per_class < 1 or copies < 2; the message names the command-line flag.
  """
  if len(classes) != 2 or classes[0] == classes[1]:
    raise UserError(f"--mi_classes={','.join(map(str, classes))} must be two different classes.")
  if min(classes) < 0 or max(classes) >= num_classes:
    raise UserError(f"--mi_classes={','.join(map(str, classes))} must lie in 0-{num_classes - 1}.")
  if per_class < 1 or copies < 2:
    raise UserError(
      f"--mi_examples_per_class={per_class} must be >= 1 and --mi_augmentations={copies} >= 2 "
      "(the estimate needs N >= 2 and L >= 2)."
    )
