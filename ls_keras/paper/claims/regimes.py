"""The report's Regimes section and whether the main regime reached the paper's (claims 1-4).

The paper's claims are about over-confident networks; `judge_over_confidence` says whether
the hard-target baseline is one, by the rule printed with it, from numbers this report
measured (the results table's calibration columns).
"""

import numpy as np

from ls_keras.experiments.results import Table
from ls_keras.paper.claims.common import describe_config, mean_std

OVER_CONFIDENT_T = 1.3  # Fitted temperature at or above which the baseline is over-confident...
OVER_CONFIDENT_RATIO = 3.0  # ... and its test ECE at least this many times its scaled ECE.


def judge_over_confidence(temperature: float, ece: float, scaled: float) -> dict:
  """Whether a baseline is over-confident (both thresholds met), with the rule in words.

  `temperature` is its mean fitted T, `ece` its test ECE, `scaled` its temperature-scaled
  test ECE. Returns {"reached", "temperature", "ece", "scaled", "ratio", "text"}.
  """
  ratio = ece / max(scaled, 1e-12)
  reached = temperature >= OVER_CONFIDENT_T and ratio >= OVER_CONFIDENT_RATIO
  text = (
    f"The paper's regime means an over-confident baseline: fitted T >= {OVER_CONFIDENT_T:g} and "
    f"test ECE at least {OVER_CONFIDENT_RATIO:g}x its temperature-scaled ECE. "
    f"Here T = {temperature:.2f} and ECE {ece:.3f} = {ratio:.1f}x {scaled:.3f}: "
    f"**{'reached' if reached else 'not reached'}**"
    f"{'.' if reached else ', so the verdicts below are outside the regime the paper studies.'}"
  )
  return {
    "reached": reached,
    "temperature": temperature,
    "ece": ece,
    "scaled": scaled,
    "ratio": ratio,
    "text": text,
  }


def over_confidence(table: Table) -> dict:
  """`judge_over_confidence` on the means over seeds of the alpha 0 teachers' calibration."""
  return judge_over_confidence(
    float(np.mean(table.column("ts_temperature", curve="teacher", key=0.0))),
    float(np.mean(table.column("ts_test_ece", curve="teacher", key=0.0))),
    float(np.mean(table.column("ts_test_ece_scaled", curve="teacher", key=0.0))),
  )


def describe(table: Table, preset) -> str:
  """Markdown: each regime's recipe, why it was chosen, and what it reached (measured here).

  `preset.why` may name {temperature} and {ratio}: the baseline's fitted T and ECE ratio.
  """
  reached = over_confidence(table)
  seeds = table.seeds(curve="teacher")
  alphas = table.keys(curve="teacher")
  base = table.column("train_accuracy", curve="teacher", key=0.0)
  mi = table.column("train_accuracy", curve="mi", key=0.0)
  why = preset.why.format(
    temperature=f"{reached['temperature']:.2f}", ratio=f"{reached['ratio']:.1f}"
  )
  return (
    f"**Main regime** (claims 1-4, the teachers of claim 4, and the figure above): "
    f"{describe_config(preset.sweep.teacher)}; LS grid "
    f"{', '.join(f'{a:g}' for a in alphas)}; "
    f"{len(seeds)} seeds. Training accuracy of the baseline: {mean_std(base)}. "
    f"{reached['text']}\n\n*Why:* {why}\n\n"
    f"**Mutual-information regime** (claim 5): {describe_config(preset.mi)}; alpha 0 and "
    f"{preset.accuracy_alpha:g}; {len(table.seeds(curve='mi'))} seeds. Training accuracy of the "
    f"baseline: {mean_std(mi)}.\n\n*Why:* {preset.mi_why}"
  )
