"""Penultimate-layer geometry (paper Figure 1) and projector embeddings; `report` for runs."""

from ls_keras.projection.geometry import (
  augment,
  choose_classes,
  confusion_matrix,
  extract,
  penultimate,
  plane_basis,
  project,
  project_examples,
  tightness,
  write_projector,
)

__all__ = [
  "augment",
  "choose_classes",
  "confusion_matrix",
  "extract",
  "penultimate",
  "plane_basis",
  "project",
  "project_examples",
  "tightness",
  "write_projector",
]
