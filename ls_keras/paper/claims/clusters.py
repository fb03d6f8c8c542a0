"""Claim 2 (Figure 1): label smoothing makes tight, equidistant clusters.

Projects the penultimate activations of the main regime's runs at alpha 0 and the paper's
alpha (each seed's pair; `ls_keras.projection`), then judges the per-seed ratio of cluster
spread over centroid separation, LS over baseline, against CLUSTER_RATIO (below it: tighter).
For the first seed it also draws the t-SNE maps of both runs' penultimate features side by
side (`ls_keras.projection.tsne`, as in Zhang et al. 2021), shown beside Figure 1; they
carry no verdict.
"""

import os
from typing import Sequence

import numpy as np

from ls_keras.experiments.results import Table
from ls_keras.paper import verdicts
from ls_keras.paper.claims.common import ClaimResult

NUMBER = 2
TITLE = "Label smoothing makes tight, equidistant clusters (Figure 1)"
PAPER = (
  "With LS, penultimate activations form tight, equidistant clusters around their templates; "
  "a semantically similar pair spreads into an arc instead of overlapping (Figure 1)."
)
CLUSTER_RATIO = 1.0  # LS spread / separation over the baseline's: held if entirely below.


def judge(ratios: Sequence[float], alpha: float) -> verdicts.Verdict:
  """Per-seed tightness ratios (LS over baseline, positive) -> held if below CLUSTER_RATIO."""
  return verdicts.below(
    verdicts.ratio_interval(ratios),
    CLUSTER_RATIO,
    f"cluster spread / centroid separation in the template plane, alpha "
    f"{alpha:g} over alpha 0 (dissimilar classes, train and validation)",
  )


def evaluate(table: Table, preset, report_dir: str) -> ClaimResult:
  """Claim 2: projects each seed's pair into report_dir/projection/seed_<seed> (TensorFlow)."""
  from ls_keras.projection import report as projection_report  # Loads the models.
  from ls_keras.projection import tsne

  a = preset.accuracy_alpha
  seeds = table.seeds(curve="teacher")
  ratios, cvs, triples, maps = [], [], None, None
  for i, seed in enumerate(seeds):
    runs = [table.one(curve="teacher", key=k, seed=seed)["workdir"] for k in (0.0, a)]
    out = os.path.join(report_dir, "projection", f"seed_{seed}")
    summary = projection_report.project_runs(
      runs,
      ["dissimilar", "similar"],
      out,
      preset.projection_examples,
      1000 if i == 0 else 0,
      data_dir=preset.sweep.teacher.data_dir,  # The command's --data_dir.
      tsne=tsne.TsneSettings(preset.tsne_examples) if i == 0 else None,
    )
    triples = triples or summary["triples"]
    maps = maps or summary["tsne"]

    def mean_of(run, triple, key):
      values = [
        n["plane"][key]
        for n in summary["tightness"]
        if n["workdir"] == os.path.abspath(run) and n["classes"] == summary["triples"][triple]
      ]
      assert values, f"no projection of {run} for triple {triple}"
      return float(np.mean(values))

    ratios.append(mean_of(runs[1], 0, "ratio") / mean_of(runs[0], 0, "ratio"))
    cvs.append((mean_of(runs[0], 1, "equidistance_cv"), mean_of(runs[1], 1, "equidistance_cv")))
  cvs = np.array(cvs)
  ours = (
    f"Seed {seeds[0]}'s classes: dissimilar {' / '.join(triples[0])}, similar "
    f"{' / '.join(triples[1])} (each seed picks its own from its baseline's confusions). Spread "
    f"over separation, LS over baseline, per seed: {', '.join(f'{r:.3f}' for r in ratios)}. "
    "Equidistance of the similar triple's centroids (coefficient of variation, 0 = equilateral): "
    f"{cvs[:, 0].mean():.3f} without LS, {cvs[:, 1].mean():.3f} with LS (means over seeds). "
    f"The second figure: t-SNE maps of seed {seeds[0]}'s penultimate features, {maps['examples']} "
    f"validation examples (stratified, perplexity {maps['perplexity']:g}), alpha 0 left and "
    f"{a:g} right, as Zhang et al. (2021) draw them; silhouette of the classes (-1 to 1, higher "
    f"= tighter and better separated) in the penultimate space: {_silhouettes(maps, 'features')}"
    f"; in the maps: {_silhouettes(maps, 'tsne')}."
  )
  return ClaimResult(
    NUMBER,
    TITLE,
    PAPER,
    f"the main regime's runs at alpha 0 and {a:g} (see Regimes).",
    ours,
    judge(ratios, a),
    figures=[
      f"projection/seed_{seeds[0]}/projection.png",
      f"projection/seed_{seeds[0]}/tsne.png",
    ],
    data={"ratios": ratios, "equidistance_cv": cvs.tolist(), "tsne": maps},
  )


def _silhouettes(maps: dict, space: str) -> str:
  """'A without LS, B with LS' from `project_runs`' t-SNE summary (runs in that order)."""
  values = [r[f"silhouette_{space}"] for r in maps["runs"]]
  text = ["n/a" if v is None else f"{v:.3f}" for v in values]
  return f"{text[0]} without LS, {text[1]} with LS"
