"""Claim 4 (Figure 5): teachers trained with label smoothing distil worse.

From the results table: the best student of the hard-target teacher (its T chosen on
validation) against the best student of an LS teacher at T = 1 (its alpha chosen on
validation), paired by seed; held if the difference lies above DISTILLATION_MARGIN points.
Also draws Figure 5 and the students against T.
"""

import os
from typing import Sequence

import numpy as np

from ls_keras.experiments import kd_sweep
from ls_keras.experiments.results import Table
from ls_keras.paper import verdicts
from ls_keras.paper.claims.common import ClaimResult, describe_config, mean_std

NUMBER = 4
TITLE = "Teachers trained with label smoothing distil worse (Figure 5)"
PAPER = (
  "Every student distilled from the hard-target teacher beats the student trained with LS; "
  "LS teachers make no better, sometimes worse, students (Figure 5)."
)
DISTILLATION_MARGIN = 0.0  # Points by which the hard teacher's best student must win.


def judge(differences: Sequence[float], temperature: float, alpha: float) -> verdicts.Verdict:
  """Judges per-seed accuracy differences (points): held if above DISTILLATION_MARGIN.

  Each is the test accuracy of the hard teacher's student at `temperature` minus that of
  the LS teacher's (`alpha`, T = 1) student of the same seed.
  """
  return verdicts.above(
    verdicts.interval(differences),
    DISTILLATION_MARGIN,
    f"test accuracy of the best student of the hard-target teacher (T = {temperature:g}) minus "
    f"that of the best student of an LS teacher (alpha {alpha:g}, T = 1), in points; both "
    "chosen on validation",
  )


def _best(table: Table, curve: str, keys) -> float:
  """The key of `curve` with the highest mean validation accuracy (the first if tied)."""
  return max(keys, key=lambda k: np.mean(table.column("validation_accuracy", curve=curve, key=k)))


def evaluate(table: Table, preset, report_dir: str) -> ClaimResult:
  """Claim 4; writes report_dir/figure5.png and students_against_T.png."""
  summary = kd_sweep.curves(table)
  kd_sweep.figure5(summary, os.path.join(report_dir, "figure5.png"))
  students_against_temperature(table, os.path.join(report_dir, "students_against_T.png"))
  seeds = table.seeds(curve="kd_hard")
  best_t = _best(table, "kd_hard", table.keys(curve="kd_hard"))
  best_a = _best(table, "kd_ls", table.keys(curve="kd_ls"))

  def test(curve, key, seed):
    return table.one(curve=curve, key=key, seed=seed)["test_accuracy"]

  diffs = [100 * (test("kd_hard", best_t, s) - test("kd_ls", best_a, s)) for s in seeds]
  lines = [kd_sweep.table(summary)]
  direct_alphas = [a for a in table.keys(curve="direct") if a > 0]
  if direct_alphas:
    best_alpha = _best(table, "direct", direct_alphas)
    best_direct = np.mean(table.column("test_accuracy", curve="direct", key=best_alpha))
    beaten = sum(m > best_direct for m in summary["kd_hard"]["mean"])
    lines.append(
      f"Students of the hard-target teacher that beat the student trained directly with LS "
      f"(alpha {best_alpha:g}, chosen on validation; test {best_direct:.4f}): {beaten} of "
      f"{len(summary['kd_hard']['mean'])} temperatures."
    )
  for t in table.keys(curve="kd_hard_t2"):
    with_t2 = table.column("test_accuracy", curve="kd_hard_t2", key=t)
    without = table.column("test_accuracy", curve="kd_hard", key=t)
    lines.append(
      f"The T^2 variant at T = {t:g}: {mean_std(with_t2)} (the paper's loss: {mean_std(without)})."
    )
  regime = (
    "teachers: the main regime's runs (LS grid "
    f"{', '.join(f'{a:g}' for a in table.keys(curve='teacher'))}). Students: "
    f"{describe_config(preset.sweep.student)}, distilled with the paper's loss (beta = 1, "
    "no T^2) or trained directly with LS."
  )
  return ClaimResult(
    NUMBER,
    TITLE,
    PAPER,
    regime,
    "\n\n".join(lines),
    judge(diffs, best_t, best_a),
    figures=["figure5.png", "students_against_T.png"],
    data={"best_temperature": best_t, "best_alpha": best_a, "differences": diffs},
  )


def students_against_temperature(table: Table, path: str) -> None:
  """Student test accuracy against T: the hard teacher's (with and without T^2), each LS one's."""
  from ls_keras.core import plots  # matplotlib: only when a figure is drawn.

  groups = {
    "students of the hard-target teacher": table.select(curve="kd_hard"),
    "... with the T^2 factor": table.select(curve="kd_hard_t2"),
  }
  for alpha in [a for a in table.keys(curve="teacher") if a > 0]:
    groups[f"students of the alpha {alpha:g} teacher"] = [
      r for r in table.rows if r["curve"] in ("kd_ls", "kd_ls_hot") and r["key"] == alpha
    ]
  curves, bands = {}, {}
  for label, group in groups.items():
    by_t = {}
    for r in group:
      by_t.setdefault(r["temperature"], []).append(r["test_accuracy"])
    if not by_t:
      continue
    ts = np.array(sorted(by_t))
    values = [np.array(by_t[t]) for t in ts]
    curves[label] = (ts, np.array([v.mean() for v in values]))
    bands[label] = (np.array([v.min() for v in values]), np.array([v.max() for v in values]))
  fig = plots.line_plot(
    curves,
    "distillation temperature T",
    "student test accuracy",
    band=bands,
    title="Students against temperature (bands: min / max over seeds)",
  )
  plots.save(fig, path)
