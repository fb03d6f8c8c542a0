"""Penultimate-layer geometry (paper Figure 1), projector embeddings, t-SNE maps; `report`.

`tsne` draws the t-SNE maps of Zhang et al. (2021); `report` analyses finished runs.
"""

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
