"""Claim 6 (Xia et al. 2025, after the paper): label smoothing worsens selective classification.

From the results table's selective columns (test split; temperature and the p of
MaxLogit-pNorm fitted on validation, see `ls_keras.calibration.selective`): the main
regime's teachers at alpha 0 and the paper's alpha, paired by seed. Held if LS's test AURC
with the maximum softmax probability (MSP) minus the baseline's lies above WORSENING. Also
says how much of that gap logit normalisation (MaxLogit-pNorm) and temperature scaling
close, and draws the first seed's risk-coverage curves.
"""

import dataclasses
import os
from typing import Optional, Sequence, Tuple

import numpy as np

from ls_keras.experiments.results import Table
from ls_keras.paper import verdicts
from ls_keras.paper.claims.common import ClaimResult

NUMBER = 6
# The verdict judges the worsening only; how much logit normalisation recovers is reported
# beside it, so the title promises no more than the rule checks.
TITLE = "Label smoothing worsens selective classification (Xia et al. 2025)"
PAPER = (
  "Not in the 2019 paper. Xia et al., ICLR 2025 (arXiv 2403.14715), Sections 3 and 5: across "
  "ImageNet (ResNet-50, ViT-S), CIFAR-100, Cityscapes and IMDB, LS consistently raises the "
  "AURC of the MSP, even where it improves accuracy; post-hoc logit normalisation "
  "(MaxLogit-pNorm of Cattelan & Silva 2024: centre the logits, divide by their p-norm, take "
  "the max, p chosen on held-out data to minimise AURC) recovers most of the loss."
)
WORSENING = 0.0  # LS minus baseline test AURC (MSP): the claim holds if entirely above.
RECOVERY = 0.0  # LS's test AURC with the MSP minus with MaxLogit-pNorm: recovers if above.
FIGURE = "risk_coverage.png"
# The table's score columns: (suffix of the selective_test_* columns, name in the text).
SCORES = (("", "MSP"), ("_ts", "temperature-scaled MSP"), ("_pnorm", "MaxLogit-pNorm"))


def judge(
  baseline: Sequence[float], smoothed: Sequence[float], normalised: Sequence[float], alpha: float
) -> Tuple[verdicts.Verdict, verdicts.Verdict, verdicts.Verdict]:
  """Per-seed test AURC: the baseline's and LS's (`alpha`) with the MSP, LS's normalised.

  Returns (verdict, worse, recovers): the verdict is `worse` (LS minus baseline AURC above
  WORSENING); `recovers` says whether MaxLogit-pNorm lowers LS's AURC (the difference
  above RECOVERY), reported beside it but not part of the rule.
  """
  worse = verdicts.above(
    verdicts.interval(np.subtract(smoothed, baseline)),
    WORSENING,
    f"test AURC (MSP) of LS (alpha {alpha:g}) minus that of the baseline, paired by seed",
  )
  recovers = verdicts.above(
    verdicts.interval(np.subtract(smoothed, normalised)),
    RECOVERY,
    f"test AURC of LS (alpha {alpha:g}) with the MSP minus with MaxLogit-pNorm",
  )
  verdict = dataclasses.replace(
    worse,
    rule=f"{worse.rule}. Whether MaxLogit-pNorm recovers it is reported beside the verdict, "
    "not part of it",
  )
  return verdict, worse, recovers


def closed_fraction(
  baseline: Sequence[float], smoothed: Sequence[float], fixed: Sequence[float]
) -> Optional[float]:
  """The fraction of LS's AURC gap a post-hoc fix closes: mean(LS - fixed) / mean(LS - base).

  1 means the fixed LS model's AURC equals the baseline's (with the MSP); above 1, it is
  lower. None when LS has no gap to close (its mean AURC is not above the baseline's).
  """
  gap = float(np.mean(np.subtract(smoothed, baseline)))
  if gap <= 0:
    return None
  return float(np.mean(np.subtract(smoothed, fixed))) / gap


def evaluate(table: Table, preset, report_dir: str) -> ClaimResult:
  """Claim 6 from the teachers' selective columns; writes report_dir/risk_coverage.png."""
  alpha = preset.accuracy_alpha
  seeds = table.seeds(curve="teacher")

  def column(name, key):
    return np.array([table.one(curve="teacher", key=key, seed=s)[name] for s in seeds])

  aurc = {
    (key, suffix): column(f"selective_test_aurc{suffix}", key)
    for key in (0.0, alpha)
    for suffix, _ in SCORES
  }
  base, smoothed = aurc[(0.0, "")], aurc[(alpha, "")]
  verdict, worse, recovers = judge(base, smoothed, aurc[(alpha, "_pnorm")], alpha)
  fractions = {
    name: closed_fraction(base, smoothed, aurc[(alpha, suffix)])
    for suffix, name in SCORES
    if suffix
  }
  both = verdicts.interval(aurc[(alpha, "_pnorm")] - aurc[(0.0, "_pnorm")])
  own = verdicts.interval(aurc[(0.0, "")] - aurc[(0.0, "_pnorm")])
  first = seeds[0]
  _figure(
    table.one(curve="teacher", key=0.0, seed=first)["workdir"],
    table.one(curve="teacher", key=alpha, seed=first)["workdir"],
    alpha,
    os.path.join(report_dir, FIGURE),
  )

  def closed(name):
    fraction = fractions[name]
    return "nothing (LS has no gap)" if fraction is None else f"{100 * fraction:.0f}%"

  lines = [
    "Every number is on test; T (by NLL) and p (by AURC, grid 1-10) are fitted per run on "
    "validation. Means over seeds; each cell MSP / temperature-scaled MSP / MaxLogit-pNorm.",
    "",
    "| alpha | test error | AURC | E-AURC | risk at 80% coverage | coverage at 5% risk | p |",
    "| --- | --- | --- | --- | --- | --- | --- |",
  ]
  for key in table.keys(curve="teacher"):

    def cells(metric, digits, key=key):
      return " / ".join(
        f"{np.mean(column(f'selective_test_{metric}{suffix}', key)):.{digits}f}"
        for suffix, _ in SCORES
      )

    ps = ", ".join(f"{p:g}" for p in column("selective_p", key))
    lines.append(
      f"| {key:g} | {1 - np.mean(column('test_accuracy', key)):.4f} | {cells('aurc', 4)} | "
      f"{cells('eaurc', 4)} | {cells('risk80', 4)} | {cells('cov5', 3)} | {ps} |"
    )
  lines += [
    "",
    f"LS (alpha {alpha:g}) minus the baseline, test AURC with the MSP: "
    f"{worse.estimate.format(4)}. LS's AURC with the MSP minus with MaxLogit-pNorm: "
    f"{recovers.estimate.format(4)}, which closes {closed('MaxLogit-pNorm')} of that gap; "
    f"temperature scaling closes {closed('temperature-scaled MSP')}. With both models' logits "
    f"normalised, LS minus the baseline: {both.format(4)}. The baseline's own AURC with the "
    f"MSP minus with MaxLogit-pNorm: {own.format(4)}. (Mean [95% CI] over {len(seeds)} seeds.)",
  ]
  return ClaimResult(
    NUMBER,
    TITLE,
    PAPER,
    f"the main regime's teachers (see Regimes), alpha 0 and {alpha:g}.",
    "\n".join(lines),
    verdict,
    parts=(recovers,),  # Beside the verdict (which is `worse`), not part of it.
    figures=[FIGURE],
    data={
      "alpha": alpha,
      "differences": (smoothed - base).tolist(),
      "closed_fraction": fractions,
      "normalised_difference": dataclasses.asdict(both),
    },
  )


def _figure(baseline: str, smoothed: str, alpha: float, path: str) -> None:
  """Risk-coverage curves of one seed: the baseline, LS, and LS with MaxLogit-pNorm."""
  from ls_keras.calibration import selective  # TensorFlow (the temperature fit).
  from ls_keras.core import plots
  from ls_keras.core import workdir as workdir_lib

  curves = {}
  for name, workdir, methods in (
    ("alpha 0", baseline, ("msp",)),
    (f"LS alpha {alpha:g}", smoothed, ("msp", "pnorm")),
  ):
    run = workdir_lib.Workdir(workdir)
    val_logits, val_labels = run.load_logits("validation")
    logits, labels = run.load_logits("test")
    found = selective.compare(val_labels, val_logits, labels, logits)
    for method in methods:
      curve = selective.risk_coverage(labels, logits, scores=found.scores[method])
      score = "MSP" if method == "msp" else f"MaxLogit-pNorm, p = {found.p:g}"
      label = f"{name}, {score} (AURC {found.summaries[method]['aurc']:.4f})"
      curves[label] = (curve["coverage"], curve["risk"])
  plots.save(plots.risk_coverage(curves, "Risk-coverage on test (first seed)"), path)
