"""The results table of a plan: one row per run, what it is and what it measured.

After the runs, `build` makes one `Table` from the plan's `Job`s and their metrics: per run
its plan fields (name, kind, curve, key, seed, regime, alpha, T), its final metrics
(accuracy, NLL and ECE on train, validation and test; gamma for a student), optionally its
calibration from the saved logits (fitted T, test ECE, adaptive ECE, classwise ECE and RMS
calibration error before and after temperature scaling, validation ECE; selective
classification: test AURC and the rest), and where its workdir, logits and history are.
Analyses select rows by field (`table.one(curve="teacher", key=0.1, seed=2)`), never by
building run names. The table is saved as JSON Lines (`results.jsonl`;
`pandas.read_json(path, lines=True)` reads it).
"""

import json
import math
import os
from typing import Dict, Iterable, List, Optional, Sequence

from ls_keras.core import workdir as workdir_lib
from ls_keras.experiments.plan import Job

FILE = "results.jsonl"
SPLITS = ("train", "validation", "test")
METRICS = ("accuracy", "nll", "ece")
# From the saved logits, as `ls_keras.calibrate` computes them (not metrics.json): fitted T,
# the test split's accuracy, NLL and ECE before temperature scaling, its ECE after, and the
# validation ECE (on which an LS alpha is chosen); then the later calibration measures
# (adaptive ECE, classwise ECE, RMS calibration error) on test before and after scaling and
# on validation (on which an alpha is chosen per measure), and the number of classes
# (classwise ECE's scale).
MEASURES = ("adaptive_ece", "classwise_ece", "rms_ce")
CALIBRATION = (
  "ts_temperature",
  "ts_test_accuracy",
  "ts_test_nll",
  "ts_test_ece",
  "ts_test_ece_scaled",
  "ts_validation_ece",
  *(f"ts_test_{m}{scaled}" for m in MEASURES for scaled in ("", "_scaled")),
  *(f"ts_validation_{m}" for m in MEASURES),
  "ts_num_classes",
)
# Selective classification on test from the same logits (`calibration.selective`, Xia et al.
# 2025): AURC, E-AURC, risk at 80% coverage and coverage at 5% risk of the MSP
# (selective_test_aurc, ...), the temperature-scaled MSP (..._ts) and MaxLogit-pNorm
# (..._pnorm), T and p fitted on validation; and that p (selective_p).
_SELECTIVE_METRICS = {
  "aurc": "aurc",
  "eaurc": "eaurc",
  "risk80": "risk_at_coverage",
  "cov5": "coverage_at_risk",
}
_SELECTIVE_METHODS = {"msp": "", "ts": "_ts", "pnorm": "_pnorm"}
SELECTIVE = tuple(
  f"selective_test_{column}{suffix}"
  for suffix in _SELECTIVE_METHODS.values()
  for column in _SELECTIVE_METRICS
) + ("selective_p",)


def row(job: Job, metrics: dict, root: str, calibration: Optional[dict] = None) -> dict:
  """One run's row: `job`'s fields, its `metrics` (metrics.json) and `calibration` columns.

  Missing calibration columns are None. Paths are root/<job.name> and what it holds.
  """
  workdir = os.path.join(root, job.name)
  out = {
    "name": job.name,
    "kind": job.kind,
    "curve": job.curve,
    "key": float(job.key),
    "seed": int(job.seed),
    "regime": job.regime,
    "alpha": float(job.config.alpha),
    "temperature": float(getattr(job.config, "temperature", 1.0)),
    "gamma": float(metrics.get("equivalent_smoothing", job.config.alpha)),
  }
  for split in SPLITS:
    for metric in METRICS:
      out[f"{split}_{metric}"] = float(metrics[split][metric])
  for column in CALIBRATION + SELECTIVE:
    out[column] = None if calibration is None else calibration.get(column)
  out.update(
    workdir=workdir,
    logits=os.path.join(workdir, "logits"),
    history=os.path.join(workdir, "history.json"),
  )
  return out


def calibrate(workdir: str) -> Dict[str, float]:
  """The CALIBRATION and SELECTIVE columns of a finished run, from its saved logits."""
  from ls_keras import calibration  # Here: building a plan's table without them needs no TF.
  from ls_keras.calibration import report as calibration_report

  run = workdir_lib.Workdir(workdir)
  result = calibration_report.calibrate_run(run, write=False)
  logits, labels = run.load_logits("validation")
  return {
    "ts_temperature": float(result["temperature"]),
    "ts_test_accuracy": float(result["uncalibrated"]["accuracy"]),
    "ts_test_nll": float(result["uncalibrated"]["nll"]),
    "ts_test_ece": float(result["uncalibrated"]["ece"]),
    "ts_test_ece_scaled": float(result["temperature_scaled"]["ece"]),
    "ts_validation_ece": float(calibration.expected_calibration_error(labels, logits=logits)),
    **{f"ts_test_{m}": float(result["uncalibrated"][m]) for m in MEASURES},
    **{f"ts_test_{m}_scaled": float(result["temperature_scaled"][m]) for m in MEASURES},
    **{
      f"ts_validation_{m}": value
      for m, value in calibration.measures(labels, logits=logits, names=MEASURES).items()
    },
    "ts_num_classes": int(logits.shape[1]),
    **selective_columns(result["selective"]),
  }


def selective_columns(selective: dict) -> Dict[str, float]:
  """The SELECTIVE columns from `calibration.report.selective_result`'s dict."""
  columns = {"selective_p": float(selective["p"])}
  for method, suffix in _SELECTIVE_METHODS.items():
    for column, key in _SELECTIVE_METRICS.items():
      columns[f"selective_test_{column}{suffix}"] = float(selective[method][key])
  return columns


class Table:
  """Rows of runs (dicts, see `row`) and the selections analyses make of them."""

  def __init__(self, rows: Iterable[dict]):
    self.rows: List[dict] = [dict(r) for r in rows]

  def __len__(self) -> int:
    return len(self.rows)

  def select(self, **fields) -> List[dict]:
    """The rows whose every named field equals the value given, in seed order (stable)."""
    for name in fields:
      if self.rows and name not in self.rows[0]:
        raise KeyError(f"the results table has no column {name!r}")
    found = [r for r in self.rows if all(r[k] == v for k, v in fields.items())]
    return sorted(found, key=lambda r: r["seed"])

  def one(self, **fields) -> dict:
    """The single row with these fields; KeyError if there is none or more than one."""
    found = self.select(**fields)
    if len(found) != 1:
      raise KeyError(f"{len(found)} rows of the results table have {fields}; expected 1")
    return found[0]

  def column(self, name: str, **fields) -> List:
    """`name` of the rows with these fields, in seed order."""
    return [r[name] for r in self.select(**fields)]

  def keys(self, **fields) -> List[float]:
    """The distinct keys (alpha, T) of the rows with these fields, ascending."""
    return sorted({r["key"] for r in self.select(**fields)})

  def seeds(self, **fields) -> List[int]:
    """The distinct seeds of the rows with these fields, ascending."""
    return sorted({r["seed"] for r in self.select(**fields)})

  def save(self, path: str) -> None:
    """Writes the table as JSON Lines (one row per line; NaN written as null)."""
    text = "".join(json.dumps(_finite(r), sort_keys=False) + "\n" for r in self.rows)
    workdir_lib.atomic_write_bytes(path, text.encode())

  @classmethod
  def load(cls, path: str) -> "Table":
    """The table `save` wrote."""
    with open(path) as f:
      return cls(json.loads(line) for line in f if line.strip())


def _finite(r: dict) -> dict:
  return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}


def build(
  jobs: Sequence[Job], results: Dict[str, dict], root: str, calibrate_runs: bool = True
) -> Table:
  """The table of a finished plan: `results` maps job names to metrics; runs under `root`.

  With `calibrate_runs`, every run's calibration columns are computed from its logits
  (TensorFlow; about a second a run), once, here, rather than by each analysis.
  """
  return Table(
    row(j, results[j.name], root, calibrate(os.path.join(root, j.name)) if calibrate_runs else None)
    for j in jobs
  )
