"""Claim 3 (Table 3, Figure 2): label smoothing calibrates about as well as temperature scaling.

From the results table's calibration columns (temperature fitted on validation, every
number on test; the LS alpha chosen on validation ECE): held if LS lowers the baseline's
ECE and comes within CALIBRATION_MARGIN of the temperature-scaled baseline, both by rule.
"""

import dataclasses
import os
from typing import Sequence, Tuple

import numpy as np

from ls_keras.experiments.results import Table
from ls_keras.paper import verdicts
from ls_keras.paper.claims import common, regimes
from ls_keras.paper.claims.common import ClaimResult

NUMBER = 3
TITLE = "Label smoothing calibrates about as well as temperature scaling (Table 3, Figure 2)"
PAPER = (
  "ECE, CIFAR-100 ResNet-56: baseline 0.150, temperature scaling 0.021 (T 1.9), LS 0.024 "
  "(alpha 0.05); ImageNet Inception-v4: 0.071, 0.022 (T 1.4), 0.035 (alpha 0.1) (Table 3)."
)
IMPROVEMENT = 0.0  # Baseline ECE minus LS ECE: held if entirely above.
CALIBRATION_MARGIN = 0.015  # ECE within which LS calibrates "about as well as" temperature scaling.


def judge(
  baseline: Sequence[float], scaled: Sequence[float], smoothed: Sequence[float], alpha: float
) -> Tuple[verdicts.Verdict, verdicts.Verdict, verdicts.Verdict]:
  """Per-seed test ECE of the baseline, the temperature-scaled baseline and LS at `alpha`.

  Returns (verdict, improvement, gap): held if both parts held, did not hold if either did
  not, inconclusive otherwise.
  """
  improvement = verdicts.above(
    verdicts.interval(np.subtract(baseline, smoothed)),
    IMPROVEMENT,
    f"test ECE of the baseline minus that of LS (alpha {alpha:g})",
  )
  gap = verdicts.below(
    verdicts.interval(np.subtract(smoothed, scaled)),
    CALIBRATION_MARGIN,
    f"test ECE of LS (alpha {alpha:g}) minus that of the temperature-scaled baseline",
  )
  verdict = dataclasses.replace(
    gap,
    outcome=verdicts.all_of(improvement, gap),
    rule=f"held if both parts hold: {improvement.rule}; and "
    f"{gap.rule}. Did not hold if either did not.",
  )
  return verdict, improvement, gap


def best_alpha(table: Table) -> float:
  """The LS alpha (> 0) of the main regime with the lowest mean validation ECE."""
  smoothed = [a for a in table.keys(curve="teacher") if a > 0]
  return min(
    smoothed,
    key=lambda a: np.mean(table.column("ts_validation_ece", curve="teacher", key=a)),
  )


def evaluate(table: Table, preset, report_dir: str) -> ClaimResult:
  """Claim 3; writes the first seed's reliability diagrams to report_dir/calibration."""
  del preset  # Everything comes from the table.
  best = best_alpha(table)

  def column(name, alpha):
    return table.column(name, curve="teacher", key=alpha)

  verdict, improvement, gap = judge(
    column("ts_test_ece", 0.0), column("ts_test_ece_scaled", 0.0), column("ts_test_ece", best), best
  )

  def row(label, curve, key):
    def runs(name):
      return table.column(name, curve=curve, key=key)

    return (
      f"| {label} | "
      f"{np.mean(runs('ts_test_accuracy')):.4f} | "
      f"{np.mean(runs('ts_test_nll')):.3f} | "
      f"{verdicts.interval(runs('ts_test_ece')).format(3)} | "
      f"{np.mean(runs('ts_temperature')):.2f} | "
      f"{np.mean(runs('ts_test_ece_scaled')):.3f} |"
    )

  rows = [
    "| LS alpha, or loss | test accuracy | test NLL | test ECE [95% CI] | fitted T | ECE after "
    "temperature scaling |",
    "| --- | --- | --- | --- | --- | --- |",
  ]
  for alpha in table.keys(curve="teacher"):
    rows.append(
      row(f"{alpha:g}{' (best on validation)' if alpha == best else ''}", "teacher", alpha)
    )
  others = common.other_losses(table)
  rows += [row(label, curve, key) for label, curve, key in others]
  compared = {
    "the baseline": float(np.mean(column("ts_test_ece", 0.0))),
    "temperature scaling": float(np.mean(column("ts_test_ece_scaled", 0.0))),
    f"LS alpha {best:g}": float(np.mean(column("ts_test_ece", best))),
    **{
      label: float(np.mean(table.column("ts_test_ece", curve=curve, key=key)))
      for label, curve, key in others
    },
  }
  reached = regimes.over_confidence(table)
  first = table.seeds(curve="teacher")[0]
  _reliability(
    [table.one(curve="teacher", key=a, seed=first)["workdir"] for a in (0.0, best)],
    os.path.join(report_dir, "calibration"),
  )
  ours = (
    "Temperature fitted on validation, every number on test; the LS alpha is chosen on "
    "validation ECE"
    + (", the other losses' settings are the presets' (not tuned)" if others else "")
    + ".\n\n"
    + "\n".join(rows)
    + f"\n\nMean test ECE, lowest first: {common.ranking(compared)}."
  )
  return ClaimResult(
    NUMBER,
    TITLE,
    PAPER,
    f"the main regime (see Regimes). {reached['text']}",
    ours,
    verdict,
    parts=(improvement, gap),
    figures=["calibration/reliability.png"],
    data={
      "best_alpha": best,
      "over_confidence": {k: v for k, v in reached.items() if k != "text"},
      "test_ece": compared,
    },
  )


def _reliability(workdirs, out: str) -> None:
  from ls_keras.calibration import report as calibration_report  # TensorFlow.

  calibration_report.calibrate_runs(workdirs, out)
