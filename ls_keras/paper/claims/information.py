"""Claim 5 (Figure 6): label smoothing erases information in the logits.

Reads each MI run's mutual_information.json (through the results table's workdirs): the
estimate at the end of training, LS over baseline per seed, held if below INFORMATION_RATIO.
Also says whether the baseline's estimate fell after its peak: final / peak entirely below
FALL_RATIO.
"""

import os
from typing import Sequence, Tuple

import numpy as np

from ls_keras.core import workdir as workdir_lib
from ls_keras.experiments.results import Table
from ls_keras.paper import verdicts
from ls_keras.paper.claims.common import ClaimResult, mean_std

NUMBER = 5
TITLE = "Label smoothing erases information in the logits (Figure 6)"
PAPER = (
  "The mutual information between example index and logit difference rises, then falls; "
  "with LS it ends much lower, near log 2 (Figure 6)."
)
INFORMATION_RATIO = 1.0  # Final MI with LS over without: held if entirely below.
FALL_RATIO = 0.97  # The baseline's MI fell after its peak if final / peak lies entirely below.
FLOOR = 1e-6  # Nats added to each estimate (clipped to [0, log N]) so a zero cannot divide.


def judge(
  final_baseline: Sequence[float],
  final_smoothed: Sequence[float],
  peak_baseline: Sequence[float],
  alpha: float,
) -> Tuple[verdicts.Verdict, verdicts.Estimate, bool]:
  """Per-seed final MI (nats) with and without LS, and the baseline's peak.

  Returns (the verdict on final LS / final baseline, the estimate of the baseline's
  final / peak, and whether that fall came: its whole interval below FALL_RATIO).
  """
  ratios = [(s + FLOOR) / (b + FLOOR) for b, s in zip(final_baseline, final_smoothed)]
  verdict = verdicts.below(
    verdicts.ratio_interval(ratios),
    INFORMATION_RATIO,
    f"mutual information at the end of training, alpha {alpha:g} over alpha 0",
  )
  fall = verdicts.ratio_interval(
    [(f + FLOOR) / (p + FLOOR) for f, p in zip(final_baseline, peak_baseline)]
  )
  return verdict, fall, bool(fall.high < FALL_RATIO)


def evaluate(table: Table, preset, report_dir: str) -> ClaimResult:
  """Claim 5; writes report_dir/mutual_information.png."""
  from ls_keras.core import plots  # matplotlib: only when a figure is drawn.

  a = preset.accuracy_alpha
  seeds = table.seeds(curve="mi")
  series = {
    (r["key"], r["seed"]): workdir_lib.read_json(
      os.path.join(r["workdir"], "mutual_information.json")
    )
    for alpha in (0.0, a)
    for r in table.select(curve="mi", key=alpha)
  }
  final = {k: v[-1]["mi"] for k, v in series.items()}
  peak = {k: max(p["mi"] for p in v) for k, v in series.items()}
  verdict, fall, came = judge(
    [final[(0.0, s)] for s in seeds],
    [final[(a, s)] for s in seeds],
    [peak[(0.0, s)] for s in seeds],
    a,
  )
  log_n = series[(0.0, seeds[0])][0]["log_n"]
  steps = np.array([p["step"] for p in series[(0.0, seeds[0])]])

  def band(alpha):
    values = np.array([[p["mi"] for p in series[(alpha, s)]] for s in seeds])
    return values.mean(0), values.min(0), values.max(0)

  fig = plots.panels_against(
    steps,
    [("I(X; logit difference) [nats]", {"alpha 0": band(0.0), f"alpha {a:g}": band(a)})],
    "training step",
    f"Mutual information (log N = {log_n:.2f}, log 2 = 0.69)\nbands: min / max over seeds",
  )
  plots.save(fig, os.path.join(report_dir, "mutual_information.png"))
  ours = (
    f"At the end of training: {mean_std([final[(0.0, s)] for s in seeds])} nats without LS, "
    f"{mean_std([final[(a, s)] for s in seeds])} with LS; peaks "
    f"{np.mean([peak[(0.0, s)] for s in seeds]):.3f} "
    f"and {np.mean([peak[(a, s)] for s in seeds]):.3f} (log N = {log_n:.3f}, log 2 = "
    "0.693). The fall "
    f"after the peak {'came' if came else 'did not come (within the interval)'} for the "
    f"baseline: final / peak = {fall.format(3)} (it came if the 95% CI lies entirely below "
    f"{FALL_RATIO:g})."
  )
  return ClaimResult(
    NUMBER,
    TITLE,
    PAPER,
    "the mutual-information regime (see Regimes).",
    ours,
    verdict,
    figures=["mutual_information.png"],
    data={"fall": {"mean": fall.mean, "low": fall.low, "high": fall.high}, "fell": came},
  )
