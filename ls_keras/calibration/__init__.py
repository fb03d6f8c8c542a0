"""Calibration (paper Section 3): ECE, reliability bins, temperature scaling; `report` for runs.

`selective`: selective classification (AURC, E-AURC, MaxLogit-pNorm; Xia et al. 2025).
"""

from ls_keras.calibration import selective
from ls_keras.calibration.metrics import (
  DEFAULT_BINS,
  ExpectedCalibrationError,
  Temperature,
  TemperatureScaling,
  bin_statistics,
  class_indices_tensor,
  expected_calibration_error,
  fit_temperature,
  summary,
  temperature_scale,
)

__all__ = [
  "DEFAULT_BINS",
  "ExpectedCalibrationError",
  "Temperature",
  "TemperatureScaling",
  "bin_statistics",
  "class_indices_tensor",
  "expected_calibration_error",
  "fit_temperature",
  "selective",
  "summary",
  "temperature_scale",
]
