"""Numerically stable softmax in NumPy (float64), shared by the analyses."""

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
  """Log softmax over the last axis; exact for any finite logits (no overflow)."""
  z = np.asarray(logits, np.float64)
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
  """Softmax over the last axis, as probabilities in float64."""
  return np.exp(log_softmax(logits))
