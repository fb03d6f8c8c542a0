"""Claim 1 (Table 2): label smoothing keeps test accuracy about the same.

Read from the results table: the main regime's runs at alpha 0 and the paper's alpha,
paired by seed. Judged by an equivalence rule with margin ACCURACY_MARGIN (points).
"""

from typing import Sequence

from ls_keras.experiments.results import Table
from ls_keras.paper import verdicts
from ls_keras.paper.claims.common import ClaimResult, mean_std

NUMBER = 1
TITLE = "Label smoothing keeps accuracy about the same (Table 2)"
PAPER = (
  "CIFAR-10 AlexNet 86.8 ± 0.2 (alpha 0) vs 86.7 ± 0.3 (alpha 0.1); CIFAR-100 ResNet-56 "
  "72.1 ± 0.3 vs 72.7 ± 0.3; ImageNet Inception-v4 80.9 vs 80.9 (Table 2)."
)
ACCURACY_MARGIN = 1.0  # Points of accuracy within which "about the same" holds.


def judge(differences: Sequence[float], alpha: float) -> verdicts.Verdict:
  """Per-seed test accuracy of alpha minus alpha 0, in points -> held if within ±margin."""
  return verdicts.within(
    verdicts.interval(differences),
    ACCURACY_MARGIN,
    f"test accuracy of alpha {alpha:g} minus alpha 0, in points",
  )


def evaluate(table: Table, preset, report_dir: str) -> ClaimResult:
  """Claim 1 from the table's teacher rows (writes nothing)."""
  del report_dir  # No figure.
  a = preset.accuracy_alpha
  seeds = table.seeds(curve="teacher")

  def test_accuracy(alpha, seed):
    return table.one(curve="teacher", key=alpha, seed=seed)["test_accuracy"]

  diffs = [100 * (test_accuracy(a, s) - test_accuracy(0.0, s)) for s in seeds]
  rows = [
    "| alpha | training accuracy | test accuracy (mean ± sd over seeds) |",
    "| --- | --- | --- |",
  ]
  for alpha in table.keys(curve="teacher"):
    rows.append(
      f"| {alpha:g} | {mean_std(table.column('train_accuracy', curve='teacher', key=alpha))} | "
      f"{mean_std(table.column('test_accuracy', curve='teacher', key=alpha))} |"
    )
  return ClaimResult(
    NUMBER,
    TITLE,
    PAPER,
    "the main regime (see Regimes).",
    "\n".join(rows),
    judge(diffs, a),
    data={"alpha": a, "differences": diffs},
  )
