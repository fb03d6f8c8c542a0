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
  """The paper's estimate from y [N examples, L copies]; also returns sigma and log N."""
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
  """Raises UserError unless the two classes exist and N >= 2, L >= 2."""
  if len(classes) != 2 or classes[0] == classes[1]:
    raise UserError(f"--mi_classes={','.join(map(str, classes))} must be two different classes.")
  if min(classes) < 0 or max(classes) >= num_classes:
    raise UserError(f"--mi_classes={','.join(map(str, classes))} must lie in 0-{num_classes - 1}.")
  if per_class < 1 or copies < 2:
    raise UserError(
      f"--mi_examples_per_class={per_class} must be >= 1 and --mi_augmentations={copies} >= 2 "
      "(the estimate needs N >= 2 and L >= 2)."
    )
