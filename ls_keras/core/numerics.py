"""Numerically stable softmax in NumPy (float64), shared by the analyses."""

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
  """Log softmax over the last axis, exact for any finite logits (no overflow).

  Subtracting each row's maximum first keeps exp() in range (the standard log-sum-exp
  shift), so the NLL of calibration (paper Section 3) is finite even for huge logits.

  Args:
    logits: array-like of raw scores [..., K], any float dtype (finite).

  Returns:
    float64 log-probabilities in nats, of the same shape [..., K]; each row's exp sums to 1.
  """
  z = np.asarray(logits, np.float64)
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
  """Softmax over the last axis: the model's probabilities, from `log_softmax` so no overflow.

  Args:
    logits: array-like of raw scores [..., K], any float dtype (finite).

  Returns:
    float64 probabilities of the same shape [..., K], each row summing to 1.
  """
  return np.exp(log_softmax(logits))
