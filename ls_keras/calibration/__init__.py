"""Calibration (paper Section 3): ECE and later measures, intervals, bins, temperature scaling.

`selective`: selective classification (AURC, E-AURC, MaxLogit-pNorm; Xia et al. 2025).
"""

from ls_keras.calibration import selective
from ls_keras.calibration.metrics import (
  DEFAULT_BINS,
  DEFAULT_CONFIDENCE,
  DEFAULT_RESAMPLES,
  ExpectedCalibrationError,
  Interval,
  LATER,
  NAMES,
  SUITE,
  Temperature,
  TemperatureScaling,
  adaptive_calibration_error,
  bin_statistics,
  bootstrap_intervals,
  class_indices_tensor,
  classwise_calibration_error,
  expected_calibration_error,
  fit_temperature,
  measures,
  resample_indices,
  rms_calibration_error,
  summary,
  temperature_scale,
)

__all__ = [
  "DEFAULT_BINS",
  "DEFAULT_CONFIDENCE",
  "DEFAULT_RESAMPLES",
  "ExpectedCalibrationError",
  "Interval",
  "LATER",
  "NAMES",
  "SUITE",
  "Temperature",
  "TemperatureScaling",
  "adaptive_calibration_error",
  "bin_statistics",
  "bootstrap_intervals",
  "class_indices_tensor",
  "classwise_calibration_error",
  "expected_calibration_error",
  "fit_temperature",
  "measures",
  "resample_indices",
  "rms_calibration_error",
  "selective",
  "summary",
  "temperature_scale",
]
