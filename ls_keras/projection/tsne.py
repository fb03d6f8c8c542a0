"""t-SNE maps of penultimate features, runs side by side (Zhang et al. 2021).

As in the t-SNE figures of Zhang et al., "Delving Deep into Label Smoothing" (IEEE TIP
2021), the picture most readers set beside the paper's Figure 1. Where Figure 1 of Müller
et al. (2019) projects three classes onto their templates' plane, t-SNE (van der Maaten &
Hinton, JMLR 2008) maps every class at once. The embedding is
scikit-learn's `sklearn.manifold.TSNE` (Barnes-Hut); this module fixes its settings,
subsamples the examples by class so that it stays fast, and draws the runs side by side.

Cost (1000 iterations, scikit-learn 1.9), measured on 2 cores of an "Intel(R) Xeon(R)
Processor" (lscpu's name; AVX512) shared with other jobs (load 5-6): the penultimate features
of an MLP 256-256 on Fashion-MNIST take 7 s for 1000 points and 10-19 s for 2000 on one
thread (34 s and 47-90 s on two: see THREADS); on idle cores, synthetic 256-D clusters took
2 s for 1000 points, 4 s for 2000 and 22 s for 4000 on two threads. Hence the default cap
`MAX_EXAMPLES`.
"""

import dataclasses
import math
from typing import Optional, Sequence, Tuple

from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
import numpy as np

from ls_keras.core.errors import UserError

MAX_EXAMPLES = 2000  # Default cap on the points embedded (4-19 s on 2 cores; see above).
MIN_EXAMPLES = 4  # The fewest points with a perplexity of at least 1 (see `perplexity_for`).
PERPLEXITY = 30.0  # scikit-learn's default, in van der Maaten & Hinton's typical range 5-50.
ITERATIONS = 1000  # scikit-learn's default number of optimisation steps.
# OpenMP threads of the Barnes-Hut gradient. Each step ends at a barrier where libgomp's
# threads spin, so on shared cores 2 threads ran 4-20x slower than 1 (2000 points: 80 s
# against 20 s at a load of 6 on 2 cores); on idle cores 1 thread costs at most 2x.
THREADS = 1
LEGEND_CLASSES = 20  # Up to this many classes get a legend with their names.


@dataclasses.dataclass(frozen=True)
class TsneSettings:
  """How `project --tsne` and the main job embed penultimate features.

  Attributes:
    examples: the most validation examples embedded per run (a stratified subsample when the
      split holds more), at least MIN_EXAMPLES.
    perplexity: t-SNE's effective number of neighbours; 0 chooses `perplexity_for`'s
      default, anything else must lie in [1, (examples - 1) / 3].
    seed: the subsample's and the embedding's random seed.

  Raises:
    UserError: a count below MIN_EXAMPLES or a perplexity outside the range above, naming
      the flag and what is allowed.
  """

  examples: int = MAX_EXAMPLES
  perplexity: float = 0.0
  seed: int = 0

  def __post_init__(self):
    if isinstance(self.examples, bool) or not isinstance(self.examples, (int, np.integer)):
      raise UserError(f"--tsne_examples={self.examples!r} must be a whole number.")
    if self.examples < MIN_EXAMPLES:
      raise UserError(
        f"--tsne_examples={self.examples} must be at least {MIN_EXAMPLES}: t-SNE needs a "
        "perplexity of at least 1, which needs 3 neighbours of every point."
      )
    if self.perplexity != 0:
      perplexity_for(self.examples, self.perplexity)
    if self.seed < 0:
      raise UserError(f"the t-SNE seed {self.seed} must be >= 0.")


def perplexity_for(n: int, perplexity: float = 0.0) -> float:
  """The perplexity used for n points: `perplexity`, checked, or min(PERPLEXITY, (n - 1) / 3).

  scikit-learn's Barnes-Hut t-SNE fits each point's Gaussian to its 3 * perplexity nearest
  neighbours, so the perplexity is bounded by (n - 1) / 3 (all other points); below 1 a point
  has fewer than one effective neighbour.

  Args:
    n: the number of points embedded.
    perplexity: the perplexity asked for; 0 for the default.

  Returns:
    The perplexity, a Python float in [1, (n - 1) / 3].

  Raises:
    UserError: a perplexity that is not finite or lies outside [1, (n - 1) / 3], or n below
      MIN_EXAMPLES.
  """
  n = int(n)
  if n < MIN_EXAMPLES:
    raise UserError(
      f"t-SNE needs at least {MIN_EXAMPLES} points for a perplexity of at least 1; got {n}."
    )
  high = (n - 1) / 3
  if perplexity == 0:
    return float(min(PERPLEXITY, high))
  if not (math.isfinite(perplexity) and 1 <= perplexity <= high):
    raise UserError(
      f"--tsne_perplexity={perplexity:g} must lie in [1, {high:g}] for {n} points (each "
      "point's 3 x perplexity nearest neighbours must exist), or be 0 for min(30, (points - 1) "
      "/ 3)."
    )
  return float(perplexity)


def stratified_subsample(labels: np.ndarray, max_examples: int, seed: int = 0) -> np.ndarray:
  """Indices of at most `max_examples` examples, each class keeping its share of them.

  scikit-learn's `sklearn.utils.resample(stratify=...)` (without replacement): class c of
  n_c examples out of n keeps floor or ceil of max_examples * n_c / n. All examples when
  there are no more than `max_examples`.

  Args:
    labels: integer class indices [N].
    max_examples: the cap, >= 1.
    seed: the random seed of the choice.

  Returns:
    int64 indices [min(N, max_examples)] into `labels`, sorted and distinct.
  """
  from sklearn.utils import resample

  labels = np.asarray(labels).reshape(-1)
  if len(labels) <= max_examples:
    return np.arange(len(labels), dtype=np.int64)
  chosen = resample(
    np.arange(len(labels)),
    replace=False,
    n_samples=max_examples,
    random_state=seed,
    stratify=labels,
  )
  return np.sort(chosen).astype(np.int64)


def embed(features: np.ndarray, perplexity: float = 0.0, seed: int = 0) -> np.ndarray:
  """2-D t-SNE coordinates of penultimate features (van der Maaten & Hinton 2008).

  scikit-learn's Barnes-Hut `TSNE` with a PCA initialisation (stable, and the same
  picture for the same features), its automatic learning rate (max(N / 12 / 4, 50),
  Belkina et al. 2019) and `ITERATIONS` steps, on `THREADS` OpenMP threads. Distances are
  Euclidean in the features' own units, as in Zhang et al. (2021); t-SNE's axes and scale
  carry no meaning.

  Args:
    features: penultimate activations [N, D], any float dtype, finite; N >= MIN_EXAMPLES.
    perplexity: see `perplexity_for` (0: its default).
    seed: the embedding's random seed.

  Returns:
    float64 coordinates [N, 2].

  Raises:
    UserError: features that are not [N, D] or not finite, or a perplexity out of range
      for N (see `perplexity_for`).
  """
  from sklearn.manifold import TSNE
  from threadpoolctl import threadpool_limits

  features = np.asarray(features, np.float64)
  if features.ndim != 2 or not np.all(np.isfinite(features)):
    raise UserError(
      f"t-SNE needs finite penultimate features [N, D]; got shape {features.shape}"
      f"{'' if features.ndim != 2 else ' with NaN or infinite values'}."
    )
  tsne = TSNE(
    n_components=2,
    perplexity=perplexity_for(len(features), perplexity),
    init="pca",
    learning_rate="auto",
    max_iter=ITERATIONS,
    random_state=seed,
  )
  with threadpool_limits(limits=THREADS, user_api="openmp"):
    return tsne.fit_transform(features).astype(np.float64)


def silhouette(points: np.ndarray, labels: np.ndarray) -> Optional[float]:
  """Mean silhouette of the classes in `points` (scikit-learn's `silhouette_score`), or None.

  In [-1, 1]: near 1 when every point is much closer to its own class than to the nearest
  other class. A scale-free companion to the figure: tighter, better separated clusters
  (the paper's Figure 1 claim) score higher. None with fewer than 2 classes, or a class per
  point.

  Args:
    points: [N, D] points, e.g. penultimate features or their t-SNE coordinates.
    labels: integer class indices [N].
  """
  from sklearn.metrics import silhouette_score

  labels = np.asarray(labels).reshape(-1)
  if not 2 <= len(np.unique(labels)) <= len(labels) - 1:
    return None
  return float(silhouette_score(np.asarray(points, np.float64), labels))


def figure(
  panels: Sequence[Tuple[str, np.ndarray, np.ndarray]],
  class_names: Sequence[str],
  title: str = "",
) -> Figure:
  """The runs' t-SNE maps side by side, points coloured by class (Zhang et al. 2021).

  Each panel is scaled to its own points (t-SNE's scale is arbitrary) with equal aspect and
  no ticks. One legend names the classes (colour k is class k in every panel) when there are
  at most LEGEND_CLASSES; more classes are coloured along a colour map without names.

  Args:
    panels: (title, coordinates [N, 2], class indices [N]) per run, left to right (e.g. the
      baseline, then label smoothing).
    class_names: the data set's K class names, in class-index order.
    title: an optional title above the panels.

  Returns:
    A matplotlib Figure (save it with `ls_keras.core.plots.save`).
  """
  k = len(class_names)
  if k <= 10:
    colors = [colormaps["tab10"](i) for i in range(k)]
  elif k <= LEGEND_CLASSES:
    colors = [colormaps["tab20"](i) for i in range(k)]
  else:
    colors = [colormaps["turbo"](i / max(k - 1, 1)) for i in range(k)]
  fig = Figure(figsize=(4.2 * len(panels) + (1.8 if k <= LEGEND_CLASSES else 0), 4.4))
  axes = fig.subplots(1, len(panels), squeeze=False)[0]
  for ax, (panel_title, points, labels) in zip(axes, panels):
    labels = np.asarray(labels).reshape(-1)
    for c in np.unique(labels):
      mask = labels == c
      ax.scatter(
        points[mask, 0],
        points[mask, 1],
        s=4,
        alpha=0.7,
        color=colors[int(c)],
        label=class_names[int(c)],
        linewidths=0,
      )
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(panel_title, fontsize=9)
  if k <= LEGEND_CLASSES:
    handles = [
      Line2D([], [], marker="o", linestyle="", color=colors[c], label=name)
      for c, name in enumerate(class_names)
    ]
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout(rect=(0, 0, 1 - 1.8 / fig.get_figwidth() if k <= LEGEND_CLASSES else 1, 1))
  return fig
