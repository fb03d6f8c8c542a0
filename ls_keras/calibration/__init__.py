"""Calibration (paper Section 3): ECE, reliability bins, temperature scaling; `report` for runs."""

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
  "summary",
  "temperature_scale",
]
