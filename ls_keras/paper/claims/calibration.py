"""Claim 3 (Table 3, Figure 2): label smoothing calibrates about as well as temperature scaling.

From the results table's calibration columns (temperature fitted on validation, every
number on test; the LS alpha chosen on validation ECE): held if LS lowers the baseline's
ECE and comes within CALIBRATION_MARGIN of the temperature-scaled baseline, both by rule.
The same two rules are then applied to adaptive ECE, classwise ECE and RMS calibration
error, and the verdict says whether its answer changes with the measure.
"""

import dataclasses
import os
from typing import Dict, Sequence, Tuple

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
# The measures the verdict is checked under (results-table names: their names in the text).
# ECE-15's margin serves the top-1 measures; classwise ECE, the mean over K classes of each
# class's ECE, sees a top-1 gap g about CLASSWISE_SCALE * g / K times (once in the top
# class's bins, once spread over the others'), so its margin is scaled alike.
MEASURES = {
  "adaptive_ece": "adaptive ECE",
  "classwise_ece": "classwise ECE",
  "rms_ce": "RMS calibration error",
}
CLASSWISE_SCALE = 2.0


def margin(measure: str, num_classes: int) -> float:
  """The "about as well as" margin of `measure` (a MEASURES key or "ece") for K classes."""
  if measure == "classwise_ece":
    return CALIBRATION_MARGIN * CLASSWISE_SCALE / num_classes
  return CALIBRATION_MARGIN


def judge(
  baseline: Sequence[float],
  scaled: Sequence[float],
  smoothed: Sequence[float],
  alpha: float,
  measure: str = "ECE",
  gap_margin: float = CALIBRATION_MARGIN,
) -> Tuple[verdicts.Verdict, verdicts.Verdict, verdicts.Verdict]:
  """Per-seed test `measure` of the baseline, the temperature-scaled baseline and LS at `alpha`.

  Returns (verdict, improvement, gap): held if both parts held (LS below the baseline;
  LS minus temperature scaling below `gap_margin`), did not hold if either did not,
  inconclusive otherwise.
  """
  improvement = verdicts.above(
    verdicts.interval(np.subtract(baseline, smoothed)),
    IMPROVEMENT,
    f"test {measure} of the baseline minus that of LS (alpha {alpha:g})",
  )
  gap = verdicts.below(
    verdicts.interval(np.subtract(smoothed, scaled)),
    gap_margin,
    f"test {measure} of LS (alpha {alpha:g}) minus that of the temperature-scaled baseline",
  )
  verdict = dataclasses.replace(
    gap,
    outcome=verdicts.all_of(improvement, gap),
    rule=f"held if both parts hold: {improvement.rule}; and "
    f"{gap.rule}. Did not hold if either did not.",
  )
  return verdict, improvement, gap


Judged = Tuple[verdicts.Verdict, verdicts.Verdict, verdicts.Verdict]


def across_measures(ece: Judged, others: Dict[str, Judged]) -> str:
  """One sentence: whether `judge`'s answer on ECE is also its answer on each other measure.

  `ece` and each value of `others` (keyed by the measure's name in words) are what `judge`
  returned. Says "same verdict under ..." for those that agree, and for each that does not,
  its outcome and the part(s) that differ from ECE's, with their estimates (no final full
  stop: the report's rule line adds one).
  """
  same = [name for name, judged in others.items() if judged[0].outcome == ece[0].outcome]
  differ = []
  for name, judged in others.items():
    if judged[0].outcome == ece[0].outcome:
      continue
    parts = [
      f"{part.effect} {part.estimate.format(3)}: {part.outcome}"
      for part, ece_part in zip(judged[1:], ece[1:])
      if part.outcome != ece_part.outcome
    ]
    differ.append(f"under {name} it {_phrase(judged[0].outcome)} ({'; '.join(parts)})")
  if not differ:
    return f"Same verdict under {_listing(same)}: the answer does not change with the measure"
  tail = f"; same verdict under {_listing(same)}" if same else ""
  return (
    f"The answer changes with the measure: ECE-15 {_phrase(ece[0].outcome)}, but "
    f"{'; '.join(differ)}{tail}"
  )


def _phrase(outcome: str) -> str:
  return {verdicts.HELD: "held", verdicts.NOT_HELD: "did not hold"}.get(outcome, "is inconclusive")


def _listing(names: Sequence[str]) -> str:
  names = list(names)
  return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def best_alpha(table: Table, measure: str = "ece") -> float:
  """The LS alpha (> 0) of the main regime with the lowest mean validation `measure`.

  Each measure chooses its own alpha, so that a verdict under one measure is not that of an
  alpha tuned to another.
  """
  smoothed = [a for a in table.keys(curve="teacher") if a > 0]
  return min(
    smoothed,
    key=lambda a: np.mean(table.column(f"ts_validation_{measure}", curve="teacher", key=a)),
  )


def evaluate(table: Table, preset, report_dir: str) -> ClaimResult:
  """Claim 3; writes the first seed's reliability diagrams to report_dir/calibration."""
  del preset  # Everything comes from the table.
  best = best_alpha(table)

  def column(name, alpha):
    return table.column(name, curve="teacher", key=alpha)

  chosen = {m: best_alpha(table, m) for m in ("ece", *MEASURES)}

  def judged(measure, name):
    return judge(
      column(f"ts_test_{measure}", 0.0),
      column(f"ts_test_{measure}_scaled", 0.0),
      column(f"ts_test_{measure}", chosen[measure]),
      chosen[measure],
      name,
      margin(measure, num_classes),
    )

  num_classes = int(column("ts_num_classes", 0.0)[0])
  verdict, improvement, gap = judged("ece", "ECE")
  by_measure = {name: judged(m, name) for m, name in MEASURES.items()}
  sentence = across_measures((verdict, improvement, gap), by_measure)
  verdict = dataclasses.replace(
    verdict,
    rule=f"{verdict.rule} The same two rules on {_listing(MEASURES.values())} (classwise "
    f"margin {CLASSWISE_SCALE:g} x {CALIBRATION_MARGIN:g} / {num_classes} classes = "
    f"{margin('classwise_ece', num_classes):.4f}): {sentence}",
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
  measures = [
    "| measure (test) | baseline | temperature scaling | LS alpha (chosen on validation by "
    "this measure) | LS | LS minus temperature scaling [95% CI over seeds] | margin | verdict |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
  ]
  for m, name in {"ece": "ECE-15", **MEASURES}.items():
    v, _, g = (verdict, improvement, gap) if m == "ece" else by_measure[name]
    measures.append(
      f"| {name} | {np.mean(column(f'ts_test_{m}', 0.0)):.4f} | "
      f"{np.mean(column(f'ts_test_{m}_scaled', 0.0)):.4f} | {chosen[m]:g} | "
      f"{np.mean(column(f'ts_test_{m}', chosen[m])):.4f} | {g.estimate.format(4)} | "
      f"{margin(m, num_classes):.4f} | {v.outcome} |"
    )
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
    + "\n\nThe same comparison under the calibration measures of later work, each with the LS "
    "alpha it chooses on validation (means over seeds; adaptive ECE: equal-mass bins; "
    "classwise ECE: every class's probability, Kull et al. 2019; RMS: root mean square of the "
    f"bin gaps): {sentence}.\n\n" + "\n".join(measures)
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
      "measures": {m: by_measure[name][0].outcome for m, name in MEASURES.items()},
      "across_measures": sentence,
    },
  )


def _reliability(workdirs, out: str) -> None:
  from ls_keras.calibration import report as calibration_report  # TensorFlow.

  calibration_report.calibrate_runs(workdirs, out)
