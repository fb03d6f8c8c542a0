import keras
import numpy as np
import pytest

from ls_keras import models, projection
from ls_keras.core.errors import UserError
from test_models import SHAPES


def test_basis_is_orthonormal_and_spans_the_templates_plane():
  rng = np.random.RandomState(0)
  templates = rng.normal(size=(3, 6))
  origin, basis = projection.plane_basis(templates)
  np.testing.assert_allclose(basis.T @ basis, np.eye(2), atol=1e-12)
  np.testing.assert_allclose(origin, templates.mean(0))
  for t in templates:  # Each template minus the origin lies in span(basis).
    np.testing.assert_allclose(basis @ (basis.T @ (t - origin)), t - origin, atol=1e-12)


def test_known_geometry_gives_exact_coordinates():
  templates = np.array([[3.0, 0, 0, 1], [0, 3.0, 0, 1], [0, 0, 3.0, 1]])
  origin, basis = projection.plane_basis(templates)
  normal = np.array([1.0, 1.0, 1.0, 0]) / np.sqrt(3)
  off_plane = np.array([0, 0, 0, 1.0])
  point = origin + 2.0 * basis[:, 0] - 0.5 * basis[:, 1] + 7.0 * normal + 4.0 * off_plane
  np.testing.assert_allclose(
    projection.project(point[None], origin, basis), [[2.0, -0.5]], atol=1e-12
  )


def test_equidistant_templates_project_to_an_equilateral_triangle():
  rng = np.random.RandomState(1)
  q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
  templates = 5.0 * q[:3] + rng.normal(size=8)  # Orthonormal rows, scaled and shifted: equidistant.
  origin, basis = projection.plane_basis(templates)
  corners = projection.project(templates, origin, basis)
  sides = [np.linalg.norm(corners[i] - corners[j]) for i, j in ((0, 1), (0, 2), (1, 2))]
  np.testing.assert_allclose(sides, [5.0 * np.sqrt(2)] * 3, rtol=1e-12)
  np.testing.assert_allclose(corners.mean(0), [0.0, 0.0], atol=1e-12)
  assert projection.tightness(corners, np.arange(3))["equidistance_cv"] == pytest.approx(
    0.0, abs=1e-12
  )


def test_collinear_templates_are_rejected():
  with pytest.raises(UserError, match="collinear"):
    projection.plane_basis(np.array([[0.0, 0], [1, 1], [2, 2]]))


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_extractor_reproduces_logits_from_templates_for_every_model(name):
  shape = SHAPES.get(name, (32, 32, 3))
  model = models.build_model(
    name,
    shape,
    4,
    mean=[0.0] * shape[-1],
    std=[255.0] * shape[-1],
    options=models.ModelOptions(hidden_units=(12,)),
  )
  features, templates = projection.extract(model)
  x = np.random.RandomState(0).uniform(0, 255, (3, *shape)).astype("float32")
  activations = features.predict(x, verbose=0)
  assert templates.shape == (4, activations.shape[1] + 1)
  # The paper's notation: z_k = x^T w_k with x 1-augmented and w_k bias-augmented.
  np.testing.assert_allclose(
    projection.augment(activations) @ templates.T, model.predict(x, verbose=0), rtol=1e-4, atol=1e-4
  )
  given, same = projection.extract(model, x)  # With images: their features directly.
  np.testing.assert_allclose(given, activations, rtol=1e-5, atol=1e-5)
  assert given.dtype == np.float64 and np.array_equal(same, templates)


def test_model_without_named_layers_uses_its_last_dense_layer_and_its_input():
  """A model trained elsewhere: templates from its last Dense layer (see tests/test_heads.py)."""
  model = keras.Sequential(
    [keras.Input((4,)), keras.layers.Dense(5, name="hidden"), keras.layers.Dense(3, name="out")]
  )
  features, templates = projection.extract(model)
  out = model.get_layer("out")
  expected = np.concatenate(
    [keras.ops.convert_to_numpy(out.kernel), keras.ops.convert_to_numpy(out.bias)[None]]
  ).T
  np.testing.assert_array_equal(templates, expected)
  x = np.random.RandomState(0).normal(size=(6, 4)).astype("float32")
  hidden = keras.Model(model.inputs[0], model.get_layer("hidden").output)
  np.testing.assert_allclose(
    projection.penultimate(features, x), keras.ops.convert_to_numpy(hidden(x)), rtol=1e-6
  )
  with pytest.raises(UserError, match="--logits_layer=logits is not a layer"):
    projection.extract(model, logits="logits")


NAMES = [f"c{i}" for i in range(10)]


def test_similar_picks_the_most_confused_pair_and_a_distant_class():
  confusion = np.diag(np.full(10, 100))
  confusion[3, 5], confusion[5, 3] = 30, 25  # 3 and 5 look alike.
  confusion[1, 3], confusion[5, 2] = 4, 6
  confusion[[0, 2, 4, 6, 7, 8, 9], 3] = 2  # Everything but class 1 is a little confused with 3 ...
  confusion[1, 5] = 0
  confusion[7, 3] = 0  # ... except class 7, never confused with 3 or 5.
  assert projection.choose_classes("similar", NAMES, confusion) == (3, 5, 7)


def test_dissimilar_picks_the_least_confused_triple():
  confusion = np.ones((10, 10), int) * 5
  confusion[np.ix_([2, 6, 9], [2, 6, 9])] = 0
  assert projection.choose_classes("dissimilar", NAMES, confusion) == (2, 6, 9)


def test_classes_by_names_and_indices():
  assert projection.choose_classes("c4,1,c9", NAMES) == (4, 1, 9)


@pytest.mark.parametrize(
  "spec, message",
  [
    ("c1,c2,poodle", "unknown class 'poodle'.*c0, c1"),
    ("1,1,2", "exactly 3 distinct classes"),
    ("1,2", "exactly 3 distinct"),
    ("1,2,3,4", "exactly 3 distinct"),
    ("12,1,2", "unknown class '12'"),
  ],
)
def test_bad_class_choices_are_clear_errors(spec, message):
  with pytest.raises(UserError, match=message):
    projection.choose_classes(spec, NAMES)


def test_tightness_of_perfect_clusters_is_zero():
  points = np.repeat(np.array([[0.0, 0], [1, 0], [0, 1]]), 4, axis=0)
  t = projection.tightness(points, np.repeat(np.arange(3), 4))
  assert t["spread"] == 0.0 and t["separation"] == pytest.approx((2 + np.sqrt(2)) / 3)


def _clusters(per_class, dims=20, classes=5, seed=0):
  """Well-separated Gaussian classes: centres 20 apart in every direction, unit noise."""
  rng = np.random.RandomState(seed)
  labels = np.repeat(np.arange(classes), per_class)
  centres = 20.0 * np.eye(classes, dims)
  return centres[labels] + rng.normal(size=(len(labels), dims)), labels


def _nearest_neighbour_agreement(points, labels):
  """Leave-one-out 1-NN: the share of points whose nearest other point has their class."""
  distances = np.sum((points[:, None] - points[None]) ** 2, -1)
  np.fill_diagonal(distances, np.inf)
  return float(np.mean(labels[distances.argmin(1)] == labels))


def test_tsne_keeps_well_separated_classes_apart():
  from ls_keras.projection import tsne

  features, labels = _clusters(40)
  coordinates = tsne.embed(features)
  assert coordinates.shape == (200, 2) and coordinates.dtype == np.float64
  assert _nearest_neighbour_agreement(coordinates, labels) == 1.0
  assert tsne.silhouette(coordinates, labels) > 0.5
  # The same classes with shuffled labels: no structure, as a check that the measure can fail.
  shuffled = np.random.RandomState(1).permutation(labels)
  assert _nearest_neighbour_agreement(coordinates, shuffled) < 0.5
  assert tsne.silhouette(coordinates, shuffled) < 0.1


def test_tsne_is_deterministic_for_a_seed():
  from ls_keras.projection import tsne

  features, _ = _clusters(30, seed=2)
  np.testing.assert_array_equal(tsne.embed(features, 10, seed=3), tsne.embed(features, 10, seed=3))


def test_silhouette_agrees_with_a_direct_implementation():
  from ls_keras.projection import tsne

  points, labels = _clusters(8, dims=3, classes=3, seed=4)
  points += np.random.RandomState(5).normal(scale=15.0, size=points.shape)  # Overlapping.
  distances = np.sqrt(np.sum((points[:, None] - points[None]) ** 2, -1))
  a = np.array([distances[i, labels == labels[i]].sum() / 7 for i in range(24)])
  b = np.array(
    [min(distances[i, labels == c].mean() for c in set(range(3)) - {labels[i]}) for i in range(24)]
  )
  assert tsne.silhouette(points, labels) == pytest.approx(np.mean((b - a) / np.maximum(a, b)))
  assert tsne.silhouette(points, np.zeros(24, int)) is None  # One class: undefined.


def test_subsample_is_stratified_capped_distinct_and_seeded():
  from ls_keras.projection import tsne

  counts = np.array([500, 300, 150, 49, 1])
  labels = np.random.RandomState(0).permutation(np.repeat(np.arange(5), counts))
  chosen = tsne.stratified_subsample(labels, 100, seed=7)
  assert len(chosen) == 100 and len(set(chosen)) == 100 and np.all(np.diff(chosen) > 0)
  taken = np.bincount(labels[chosen], minlength=5)
  assert np.all(np.abs(taken - 100 * counts / counts.sum()) < 1), taken  # Each class its share.
  np.testing.assert_array_equal(chosen, tsne.stratified_subsample(labels, 100, seed=7))
  assert not np.array_equal(chosen, tsne.stratified_subsample(labels, 100, seed=8))
  np.testing.assert_array_equal(tsne.stratified_subsample(labels[:80], 100), np.arange(80))


def test_perplexity_is_the_default_within_what_the_points_allow():
  from ls_keras.projection import tsne

  assert tsne.perplexity_for(2000) == 30.0
  assert tsne.perplexity_for(31) == 10.0  # (31 - 1) / 3: every other point a neighbour.
  assert tsne.perplexity_for(31, 2.5) == 2.5


@pytest.mark.parametrize(
  "call, message",
  [
    (lambda t: t.perplexity_for(31, 11), r"--tsne_perplexity=11 must lie in \[1, 10\] for 31"),
    (lambda t: t.perplexity_for(31, 0.5), r"--tsne_perplexity=0.5 must lie in \[1, 10\]"),
    (lambda t: t.perplexity_for(31, float("nan")), "--tsne_perplexity=nan must lie"),
    (lambda t: t.perplexity_for(3), "at least 4 points.*got 3"),
    (lambda t: t.TsneSettings(examples=3), "--tsne_examples=3 must be at least 4"),
    (lambda t: t.TsneSettings(examples=100, perplexity=40), r"must lie in \[1, 33\] for 100"),
    (lambda t: t.embed(np.full((10, 2), np.nan)), "NaN or infinite"),
    (lambda t: t.embed(np.zeros(10)), r"\[N, D\]; got shape \(10,\)"),
  ],
)
def test_bad_tsne_settings_are_clear_errors(call, message):
  from ls_keras.projection import tsne

  with pytest.raises(UserError, match=message):
    call(tsne)


def test_tsne_figure_shows_runs_side_by_side_with_one_colour_per_class():
  from matplotlib.colors import to_rgba

  from ls_keras.projection import tsne

  features, labels = _clusters(10, classes=3)
  points = features[:, :2]
  names = ["cat", "dog", "tench"]
  fig = tsne.figure([("baseline", points, labels), ("LS", -points, labels)], names, "t-SNE")
  axes = fig.axes
  assert [ax.get_title() for ax in axes] == ["baseline", "LS"]
  (legend,) = fig.legends
  assert [t.get_text() for t in legend.get_texts()] == names
  for ax in axes:  # Class k has legend entry k's colour in every panel.
    colours = {c.get_label(): to_rgba(c.get_facecolor()[0]) for c in ax.collections}
    for handle, name in zip(legend.legend_handles, names):
      assert colours[name][:3] == pytest.approx(to_rgba(handle.get_color())[:3])
