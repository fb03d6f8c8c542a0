"""Penultimate-layer geometry (paper Figure 1) and TensorBoard projector embeddings.

Notation as in the paper: logits z_k = x^T w_k, where x is the penultimate activation with
a 1 appended and w_k (the class "template") is column k of the logits kernel with its
bias appended. Figure 1 projects x onto the plane through three templates.
"""

import itertools
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from ls_keras.models import heads
from ls_keras.core import checks
from ls_keras.core.errors import UserError
from ls_keras.core.workdir import atomic_write_bytes


def extract(
  model: keras.Model,
  images: Optional[np.ndarray] = None,
  *,
  penultimate: Optional[str] = None,
  logits: Optional[str] = None,
) -> Tuple[Any, np.ndarray]:
  """The penultimate features and the logit templates [K, D+1] of any Keras classifier.

  Template k is column k of the logits kernel with its bias appended (paper Section 2).
  ls_keras' own models use their `penultimate` and `logits` layers; any other model its last
  Dense layer (a softmax activation is fine: the templates are its kernel and bias, which
  give the pre-softmax logits) and that layer's input, unless `penultimate` or `logits`
  name layers (see `models.heads.find_head`).

  Args:
    model: a Keras model with one image input.
    images: optional images [N, H, W, C] as the model takes them (ls_keras' own: float32
      pixels 0-255); when given, their features are computed (see Returns).
    penultimate: the layer whose output are the penultimate features (default: as above).
    logits: the Dense layer whose kernel gives the templates (default: as above).

  Returns:
    (features, templates): without `images`, a keras.Model from the model's input to its
    penultimate activations; with them, those activations, float64 [N, D]. The templates
    are float64 [K, D+1] (kernel column k, then bias k).

  Raises:
    UserError: a named layer that does not exist, no Dense logits layer, or features whose
      width does not match its kernel.
  """
  head = heads.find_head(model, penultimate=penultimate, logits=logits)
  if images is None:
    return head.features, head.templates
  return _activations(head.features, images), head.templates


def augment(activations: np.ndarray) -> np.ndarray:
  """Appends the constant 1 that pairs with the bias in each template, so z_k = x^T w_k.

  The paper's bias-augmented activations (Section 2, Figure 1).

  Args:
    activations: penultimate activations [N, D], any float dtype.

  Returns:
    float64 [N, D+1]: the activations with a last column of ones.
  """
  activations = np.asarray(activations, np.float64)
  return np.concatenate([activations, np.ones((len(activations), 1))], axis=1)


def plane_basis(templates: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """(origin [D+1], orthonormal basis [D+1, 2]) of the plane through three templates.

  Origin: the templates' mean; basis: QR of two template differences. The paper does not
  say how it built the basis (Section 2, Figure 1); any orthonormal basis of the plane gives
  the same picture up to a rotation or reflection.

  Args:
    templates: the three classes' templates [3, D+1], any float dtype.

  Returns:
    (origin, basis): float64 origin [D+1] and orthonormal columns [D+1, 2], in the
    templates' units.

  Raises:
    UserError: not exactly 3 templates, or collinear ones (no plane through them).
  """
  templates = np.asarray(templates, np.float64)
  if templates.shape[0] != 3:
    raise UserError(f"a projection plane needs exactly 3 templates; got {templates.shape[0]}.")
  q, r = np.linalg.qr(np.stack([templates[1] - templates[0], templates[2] - templates[0]], axis=1))
  if abs(r[1, 1]) < 1e-12 * max(abs(r[0, 0]), 1e-300):
    raise UserError("the three templates are collinear: they do not span a plane.")
  return templates.mean(0), q


def project(points: np.ndarray, origin: np.ndarray, basis: np.ndarray) -> np.ndarray:
  """Coordinates [N, 2] of (already augmented) points in the plane (paper Figure 1).

  Args:
    points: [N, D+1] points, e.g. `augment`ed activations or templates, any float dtype.
    origin: the plane's origin [D+1], from `plane_basis`.
    basis: its orthonormal basis [D+1, 2], from `plane_basis`.

  Returns:
    float64 [N, 2] coordinates along the basis, in the points' units.
  """
  return (np.asarray(points, np.float64) - origin) @ basis


def tightness(points: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
  """How tight and how equidistant the class clusters are (our measure of paper Figure 1's claim).

  spread: mean over classes of the RMS distance of a class's points to their centroid;
  separation: mean distance between class centroids; ratio = spread / separation (smaller
  is tighter); equidistance_cv: coefficient of variation of the centroid distances (0 when
  the centroids form an equilateral triangle). Distances are in the points' units.

  Args:
    points: [N, D] coordinates, any float dtype (in the template plane, or the full
      penultimate space).
    labels: integer class indices [N] / [N, 1] or one-hot [N, K]; at least 2 classes.

  Returns:
    Python floats "spread", "separation" (in the points' units), "ratio" and
    "equidistance_cv" (dimensionless).

  Raises:
    UserError: bad labels (see `ls_keras.core.checks.class_indices`), points that are not
      [N, D] with one row per label, or fewer than 2 classes.
  """
  points = np.asarray(points, np.float64)
  labels = checks.class_indices(labels)
  if points.ndim != 2 or len(points) != len(labels):
    raise UserError(
      f"points of shape {points.shape} and {len(labels)} labels do not match: give [N, D] and [N]."
    )
  classes = np.unique(labels)
  if len(classes) < 2:
    raise UserError(f"tightness needs points of at least 2 classes; got {len(classes)}.")
  centroids = np.stack([points[labels == c].mean(0) for c in classes])
  spread = float(
    np.mean(
      [
        np.sqrt(np.mean(np.sum((points[labels == c] - m) ** 2, -1)))
        for c, m in zip(classes, centroids)
      ]
    )
  )
  distances = np.array([np.linalg.norm(a - b) for a, b in itertools.combinations(centroids, 2)])
  return {
    "spread": spread,
    "separation": float(distances.mean()),
    "ratio": spread / float(distances.mean()),
    "equidistance_cv": float(distances.std() / distances.mean()),
  }


def confusion_matrix(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
  """counts[true, predicted], int64 [K, K]: which classes a model confuses.

  Chooses the "similar" and "dissimilar" class triples of the paper's Figure 1 rows (see
  `choose_classes`).

  Args:
    logits: float raw scores [N, K] (finite; not probabilities).
    labels: integer class indices [N] / [N, 1] or one-hot [N, K].
    num_classes: K.

  Returns:
    An int64 NumPy array [K, K] of example counts, rows the true class, columns the
    predicted (argmax) class.

  Raises:
    UserError: bad logits or labels (see `ls_keras.core.checks`), or K that does not match.
  """
  logits, labels = checks.predictions(labels, logits)
  if logits.shape[1] != num_classes:
    raise UserError(f"logits have {logits.shape[1]} classes, but num_classes={num_classes}.")
  counts = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(counts, (labels, logits.argmax(-1)), 1)
  return counts


def choose_classes(
  spec: str, class_names: Sequence[str], confusion: np.ndarray = None
) -> Tuple[int, int, int]:
  """Three class indices for a projection row (paper Figure 1).

  `spec` is names or indices ("0,2,4", "Shirt,T-shirt/top,Trouser"), `similar` (the most
  confused pair plus the class least confused with either, as the paper's
  poodle/poodle/tench row) or `dissimilar` (the least mutually confused triple).

  Args:
    spec: the --classes value, as above.
    class_names: the data set's K class names, in class-index order.
    confusion: int64 counts [K, K] from `confusion_matrix` (needed for similar/dissimilar).

  Returns:
    Three distinct class indices (Python ints).

  Raises:
    UserError: unknown classes, not exactly 3 distinct, or similar/dissimilar without confusions.
  """
  k = len(class_names)
  if spec in ("similar", "dissimilar"):
    if confusion is None:
      raise UserError(
        f"--classes={spec} needs a confusion matrix from the baseline's validation logits."
      )
    sym = (confusion + confusion.T).astype(np.float64)
    np.fill_diagonal(sym, 0)
    if spec == "similar":
      a, b = np.unravel_index(np.argmax(sym), sym.shape)
      others = [c for c in range(k) if c not in (a, b)]
      c = min(others, key=lambda c: (sym[a, c] + sym[b, c], c))
      return int(a), int(b), int(c)
    return _least_confused_triple(sym)
  parts = [p.strip() for p in spec.split(",") if p.strip()]
  chosen = []
  for part in parts:
    if part.isdigit() and int(part) < k:
      chosen.append(int(part))
    elif part in class_names:
      chosen.append(list(class_names).index(part))
    else:
      raise UserError(
        f"unknown class '{part}' in --classes={spec}; valid classes are 0-{k - 1} or the names "
        f"{', '.join(class_names)}; or use 'similar' / 'dissimilar'."
      )
  if len(set(chosen)) != 3 or len(chosen) != 3:
    raise UserError(
      f"--classes={spec} must name exactly 3 distinct classes (got {len(set(chosen))} distinct)."
    )
  return tuple(chosen)


def _least_confused_triple(sym: np.ndarray) -> Tuple[int, int, int]:
  """Exhaustive over all triples up to 100 classes; greedy from the least confused pair beyond."""
  k = len(sym)
  if k <= 100:
    total = sym[:, :, None] + sym[:, None, :] + sym[None, :, :]
    i, j, m = np.indices((k, k, k))
    total = np.where((i < j) & (j < m), total, np.inf)
    return tuple(int(v) for v in np.unravel_index(np.argmin(total), total.shape))
  masked = sym + np.diag(np.full(k, np.inf))
  a, b = np.unravel_index(np.argmin(masked), masked.shape)
  c = min((c for c in range(k) if c not in (a, b)), key=lambda c: (sym[a, c] + sym[b, c], c))
  return tuple(sorted((int(a), int(b), int(c))))


def penultimate(features: keras.Model, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
  """Penultimate activations [N, D] (float64) of float32 images [N, H, W, C], in batches.

  What Figure 1 projects (paper Section 2). A direct call rather than `Model.predict`,
  which traces a new function for every model of a sweep (and warns about retracing).

  Args:
    features: the inputs -> penultimate model from `extract`.
    images: float32 images [N, H, W, C], pixels 0-255 (the models normalise inside).
    batch_size: images per call.

  Returns:
    float64 activations [N, D].
  """
  return _activations(features, images, batch_size)


def _activations(features: keras.Model, images, batch_size: int = 512) -> np.ndarray:
  parts = [
    keras.ops.convert_to_numpy(features(images[i : i + batch_size], training=False))
    for i in range(0, len(images), batch_size)
  ]
  return np.concatenate(parts).astype(np.float64)


def project_examples(
  features: keras.Model,
  templates: np.ndarray,
  classes: Sequence[int],
  images: np.ndarray,
  labels: np.ndarray,
) -> Dict[str, object]:
  """Projects the examples of one triple onto the plane of that triple's templates (Figure 1).

  Args:
    features: the inputs -> penultimate model from `extract`.
    templates: all K templates [K, D+1] from `extract`.
    classes: the triple's three class indices.
    images: float32 images [N, H, W, C] of those classes, pixels 0-255.
    labels: their class indices [N] (int64), or one-hot [N, K].

  Returns:
    "points": float64 [N, 2] plane coordinates; "labels": the labels as given;
    "templates": float64 [3, 2] the templates' coordinates; "tightness_plane" and
    "tightness_full": `tightness` in the plane and in the full augmented space.

  Raises:
    UserError: collinear templates (see `plane_basis`), or bad labels or fewer than 2
      classes among them (see `tightness`).
  """
  activations = penultimate(features, images)
  origin, basis = plane_basis(templates[list(classes)])
  points = project(augment(activations), origin, basis)
  return {
    "points": points,
    "labels": labels,
    "templates": project(templates[list(classes)], origin, basis),
    "tightness_plane": tightness(points, labels),
    "tightness_full": tightness(augment(activations), labels),
  }


def write_projector(
  logdir: str,
  embeddings: np.ndarray,
  images: np.ndarray,
  metadata: List[Tuple[str, ...]],
  header: Tuple[str, ...],
) -> None:
  """Writes a TensorBoard projector run: checkpointed embeddings, metadata.tsv and a sprite.

  To explore the penultimate space beyond the paper's three-class planes (Figure 1).

  Args:
    logdir: the folder (a TensorBoard run) to write into.
    embeddings: [N, D] floats (stored as float32).
    images: [N, H, W, C] pixels in [0, 255] (C = 1 or 3), for the sprite.
    metadata: N rows of as many columns as `header`.
    header: the column names. With one column, TensorBoard's projector expects no header
      row (a metadata file of N lines, one label each), so none is written; with two or
      more, the first line is the header.

  Raises:
    UserError: metadata rows and embeddings of different counts, or rows whose width
      differs from the header's.
  """
  from tensorboard.plugins import projector

  if len(metadata) != len(embeddings) or any(len(row) != len(header) for row in metadata):
    raise UserError(
      f"{len(metadata)} metadata rows for {len(embeddings)} embeddings, with a header of "
      f"{len(header)} columns: give one row per embedding, each with one value per column."
    )
  os.makedirs(logdir, exist_ok=True)
  rows = ["\t".join(str(v) for v in row) for row in metadata]
  lines = rows if len(header) == 1 else ["\t".join(header)] + rows
  atomic_write_bytes(os.path.join(logdir, "metadata.tsv"), ("\n".join(lines) + "\n").encode())
  side = int(np.ceil(np.sqrt(len(images))))
  h, w = images.shape[1:3]
  sprite = np.full((side * h, side * w, 3), 255, np.uint8)
  rgb = np.clip(images, 0, 255).astype(np.uint8)
  if rgb.shape[-1] == 1:
    rgb = np.repeat(rgb, 3, axis=-1)
  for i, image in enumerate(rgb):
    r, c = divmod(i, side)
    sprite[r * h : (r + 1) * h, c * w : (c + 1) * w] = image
  atomic_write_bytes(os.path.join(logdir, "sprite.png"), tf.image.encode_png(sprite).numpy())
  checkpoint = tf.train.Checkpoint(embedding=tf.Variable(np.asarray(embeddings, np.float32)))
  checkpoint.save(os.path.join(logdir, "embedding.ckpt"))
  config = projector.ProjectorConfig()
  embedding = config.embeddings.add()
  embedding.tensor_name = "embedding/.ATTRIBUTES/VARIABLE_VALUE"
  embedding.metadata_path = "metadata.tsv"
  embedding.sprite.image_path = "sprite.png"
  embedding.sprite.single_image_dim.extend([w, h])
  projector.visualize_embeddings(logdir, config)
  # TensorBoard only looks for projector configs in runs, i.e. folders holding event files:
  # one summary makes `tensorboard --logdir=RUN/tb` (or any folder above) show the embeddings.
  if not any(name.startswith("events.out.tfevents") for name in os.listdir(logdir)):
    with tf.summary.create_file_writer(logdir).as_default():
      tf.summary.text(
        "projector",
        f"{len(embeddings)} penultimate-layer embeddings; see the Projector tab.",
        step=0,
      )
