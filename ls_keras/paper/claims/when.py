"""When does label smoothing help? The report's own figure: calibration against training length.

Follows the main regime's LS grid through training (each run's history.json: test ECE,
accuracy and the fitted T after every evaluation) and says, from those numbers only, when
LS beat the baseline. `judge` decides which sentences the numbers support. The other
calibrating losses trained in that regime (online LS, the focal loss) are followed beside
it, and the lowest final ECE named, so the user sees which calibrates this network best.
"""

import os
from typing import Dict, List

import numpy as np

from ls_keras.core import workdir as workdir_lib
from ls_keras.experiments.results import Table
from ls_keras.paper.claims import common
from ls_keras.paper.claims.common import ClaimResult
from ls_keras.paper.claims.regimes import OVER_CONFIDENT_T

TITLE = "When does label smoothing help?"
FIGURE = "when.png"


def judge(
  first_temperature: float,
  last_temperature: float,
  baseline_first: float,
  baseline_last: float,
  ls_first: Dict[float, float],
  ls_last: Dict[float, float],
) -> dict:
  """Which findings the numbers support (plain booleans, and the best alpha at the end).

  Inputs: the baseline's fitted T and ECE and each LS alpha's ECE ({alpha: ECE}) after
  the first and the last evaluation.

  "only_then" (LS helps once the baseline is over-confident, and only then) needs all of:
  at the first evaluation the baseline is not over-confident (T < OVER_CONFIDENT_T) and
  every alpha's ECE is above the baseline's; at the last, the baseline is over-confident
  and the best alpha's ECE is below the baseline's.
  """
  best = min(ls_last, key=ls_last.get)
  helps_at_end = ls_last[best] < baseline_last
  above_first = [a for a, e in ls_first.items() if e > baseline_first]
  worse_while_calibrated = first_temperature < OVER_CONFIDENT_T and len(above_first) == len(
    ls_first
  )
  return {
    "best": best,
    "above_first": above_first,
    "helps_at_end": helps_at_end,
    "only_then": bool(
      helps_at_end and worse_while_calibrated and last_temperature >= OVER_CONFIDENT_T
    ),
  }


def evaluate(table: Table, preset, report_dir: str) -> ClaimResult:
  """The figure (report_dir/when.png) and what it shows; no verdict."""
  del preset  # Everything comes from the table and the histories it points to.
  plots = _plots()
  alphas, seeds = table.keys(curve="teacher"), table.seeds(curve="teacher")
  smoothed = [a for a in alphas if a > 0]
  others = common.other_losses(table)  # Online LS and the focal loss, in the same regime.
  histories = {
    (r["curve"], r["key"], r["seed"]): workdir_lib.read_json(r["history"])
    for curve in ["teacher"] + [curve for _, curve, _ in others]
    for r in table.select(curve=curve)
  }
  epochs = np.array([h["epoch"] for h in histories[("teacher", 0.0, seeds[0])]])

  def band(alpha, key, curve="teacher"):
    runs = table.seeds(curve=curve, key=alpha)
    values = np.array([[h[key] for h in histories[(curve, alpha, s)]] for s in runs])
    return values.mean(0), values.min(0), values.max(0)

  ece = {
    "alpha 0 (hard targets)": band(0.0, "test_ece"),
    "alpha 0 + temperature scaling": band(0.0, "test_ece_temperature_scaled"),
  }
  ece.update({f"alpha {a:g}": band(a, "test_ece") for a in smoothed})
  ece.update({label: band(key, "test_ece", curve) for label, curve, key in others})
  accuracy = {"alpha 0 (hard targets)": band(0.0, "test_accuracy")}
  accuracy.update({f"alpha {a:g}": band(a, "test_accuracy") for a in smoothed})
  accuracy.update({label: band(key, "test_accuracy", curve) for label, curve, key in others})
  temperature = band(0.0, "temperature")[0]
  plots.save(
    plots.panels_against(
      epochs,
      [("test ECE", ece), ("test accuracy", accuracy)],
      "epochs trained",
      "When does label smoothing help? (bands: min / max over seeds)",
    ),
    os.path.join(report_dir, FIGURE),
  )
  base = ece["alpha 0 (hard targets)"][0]

  def crossing(name):
    """The first epoch from which `name`'s mean ECE stays below the baseline's to the end."""
    worse = np.nonzero(~(ece[name][0] < base))[0]
    start = worse[-1] + 1 if len(worse) else 0
    return int(epochs[start]) if start < len(epochs) else None

  crossings = {a: crossing(f"alpha {a:g}") for a in smoothed}
  over = np.nonzero(temperature >= OVER_CONFIDENT_T)[0]
  when = {
    "epochs": epochs.tolist(),
    "baseline_ece": base.tolist(),
    "baseline_temperature": temperature.tolist(),
    "crossings": crossings,
    "over_confident_from": int(epochs[over[0]]) if len(over) else None,
    "ls_ece_first": {a: float(ece[f"alpha {a:g}"][0][0]) for a in smoothed},
    "ls_ece_last": {a: float(ece[f"alpha {a:g}"][0][-1]) for a in smoothed},
    "scaled_last": float(ece["alpha 0 + temperature scaling"][0][-1]),
    "others": {
      label: {
        "first": float(ece[label][0][0]),
        "last": float(ece[label][0][-1]),
        "crossing": crossing(label),
      }
      for label, _, _ in others
    },
  }
  return ClaimResult(None, TITLE, "", "", "\n".join(text(when)), None, (), [FIGURE], when)


def text(when: dict) -> List[str]:
  """Markdown lines: what the figure shows, in numbers, and only what they support."""
  epochs, base, temperature = when["epochs"], when["baseline_ece"], when["baseline_temperature"]
  lines = [
    "The figure follows the LS grid of claims 1-3 through training (means over seeds, test "
    f"split). After epoch {epochs[0]} the hard-target baseline has ECE {base[0]:.3f} (fitted T = "
    f"{temperature[0]:.2f}); "
    f"after epoch {epochs[-1]}, ECE {base[-1]:.3f} (T = {temperature[-1]:.2f}), against "
    f"{when['scaled_last']:.3f} once temperature-scaled.",
  ]
  over = when["over_confident_from"]
  lines.append(
    f"The baseline is over-confident (T >= {OVER_CONFIDENT_T:g}) from epoch {over} on."
    if over is not None
    else f"The baseline never became over-confident (T >= {OVER_CONFIDENT_T:g}) here."
  )
  for alpha, epoch in when["crossings"].items():
    first, last = when["ls_ece_first"][alpha], when["ls_ece_last"][alpha]
    lines.append(
      f"- alpha {alpha:g}: ECE {first:.3f} after epoch {epochs[0]}, {last:.3f} at the end; "
      f"{_crossing(epoch)}."
    )
  others = when.get("others", {})
  for label, numbers in others.items():
    lines.append(
      f"- {label}, instead of LS: ECE {numbers['first']:.3f} after epoch {epochs[0]}, "
      f"{numbers['last']:.3f} at the end; {_crossing(numbers['crossing'])}."
    )
  found = judge(
    temperature[0], temperature[-1], base[0], base[-1], when["ls_ece_first"], when["ls_ece_last"]
  )
  best, above_first = found["best"], found["above_first"]
  if found["only_then"]:
    ending = (
      ": label smoothing helps calibration once the baseline is over-confident, and only then."
    )
  elif found["helps_at_end"]:
    ending = ": label smoothing ends with the better calibration."
  else:
    ending = ": label smoothing does not end with the better calibration here."
  lines += [
    "",
    "Read left to right: after the first evaluation, "
    + (
      f"every alpha's ECE is above the baseline's ({base[0]:.3f}): LS only makes a calibrated "
      "network under-confident there. "
      if len(above_first) == len(when["ls_ece_first"]) and temperature[0] < OVER_CONFIDENT_T
      else f"alphas {', '.join(f'{a:g}' for a in above_first) or 'none'} are above the baseline's "
      f"{base[0]:.3f}. "
    )
    + f"At the end, alpha {best:g} has the lowest ECE ({when['ls_ece_last'][best]:.3f}) against "
    f"the baseline's {base[-1]:.3f} and temperature scaling's {when['scaled_last']:.3f}" + ending,
  ]
  if others:
    final = {
      "the baseline": base[-1],
      "temperature scaling": when["scaled_last"],
      **{f"LS alpha {a:g}": e for a, e in when["ls_ece_last"].items()},
      **{label: numbers["last"] for label, numbers in others.items()},
    }
    lines += ["", f"Test ECE at the end, lowest first: {common.ranking(final)}."]
  return lines


def _plots():
  from ls_keras.core import plots  # matplotlib: only when a figure is drawn.

  return plots


def _crossing(epoch) -> str:
  """The phrase for a crossing epoch (`evaluate`'s: below the baseline from then to the end)."""
  if epoch is None:
    return "its ECE is not below the baseline's at the end"
  return f"its ECE is below the baseline's from epoch {epoch} to the end"
