"""Calibration of finished runs (Table 3, Figure 2), from their saved logits: nothing is retrained.

Temperature is fitted on each run's validation logits and every number is reported on its
test logits, so the fit never sees the data it is judged on. Beside the paper's ECE-15,
adaptive ECE, classwise ECE and RMS calibration error, with bootstrap intervals over the
test examples (`ls_keras.calibration.bootstrap_intervals`).
"""

import collections
import dataclasses
import os
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf

from ls_keras import calibration
from ls_keras.core import checks, numerics, plots
from ls_keras.core import config as config_lib
from ls_keras.core import workdir as workdir_lib
from ls_keras.core.errors import UserError


def calibrate_run(
  run: workdir_lib.Workdir,
  num_bins: int = calibration.DEFAULT_BINS,
  write: bool = True,
  num_resamples: int = 0,
) -> dict:
  """Metrics of one run before and after temperature scaling, and the bins (calibration.json).

  With `num_resamples` > 0, also "intervals": bootstrap intervals of the calibration
  measures (`calibration.SUITE`) on the test split before and after temperature scaling
  (the same resamples; T held fixed). With `write`, also writes calibration.json,
  reliability.png and a TensorBoard image into the run; `calibrate_runs` computes every
  run first and writes only then.
  """
  val_logits, val_labels = run.load_logits("validation")
  test_logits, test_labels = run.load_logits("test")
  if val_logits.ndim != 2 or test_logits.ndim != 2 or val_logits.shape[1] != test_logits.shape[1]:
    raise UserError(
      f"{run.logits_path('validation')} holds logits of shape {val_logits.shape} but "
      f"{run.logits_path('test')} {test_logits.shape}: one run's splits must have the same "
      "classes. The files are corrupt; rerun the training with --overwrite."
    )
  scaling = calibration.temperature_scale(
    val_labels, val_logits, test_labels, test_logits, num_bins=num_bins
  )
  record = run.read_record()
  result = {
    "workdir": run.path,
    "alpha": record["config"].get("alpha", 0.0),
    "loss": record["config"].get("loss", "cross_entropy"),
    "method": config_lib.training_method(record["config"]),
    "num_bins": num_bins,
    "split": "test",
    "temperature": scaling.temperature,
    "temperature_at_bound": scaling.temperature.at_bound,
    **_with_measures(scaling, test_labels, test_logits, num_bins),
    "bins": calibration.bin_statistics(test_labels, logits=test_logits, num_bins=num_bins),
    "bins_temperature_scaled": calibration.bin_statistics(
      test_labels, logits=test_logits / scaling.temperature, num_bins=num_bins
    ),
    "selective": selective_result(val_labels, val_logits, test_labels, test_logits),
  }
  if num_resamples:
    result["intervals"] = intervals(test_labels, test_logits, scaling, num_bins, num_resamples)
  if write:
    write_run(run, result, test_logits)
  return result


def selective_result(val_labels, val_logits, test_labels, test_logits) -> dict:
  """AURC and the rest on test for MSP, TS and MaxLogit-pNorm, T and p fitted on validation.

  {"p": the fitted order, and for each of `calibration.selective.METHODS` its `summary`}.
  """
  found = calibration.selective.compare(val_labels, val_logits, test_labels, test_logits)
  return {"p": found.p, **found.summaries}


def selective_table(rows: Dict[str, List[dict]]) -> str:
  """Markdown: AURC and E-AURC (means) per row label, each from `selective_result`s."""
  lines = [
    "Selective classification (test; T and p fitted on validation; Xia et al. 2025):",
    "",
    "| | test AURC: MSP | temperature-scaled MSP | MaxLogit-pNorm (p) | E-AURC: MSP | "
    "MaxLogit-pNorm |",
    "| --- | --- | --- | --- | --- | --- |",
  ]
  for label, found in rows.items():
    aurc, eaurc = (
      {m: np.mean([f[m][key] for f in found]) for m in calibration.selective.METHODS}
      for key in ("aurc", "eaurc")
    )
    ps = ", ".join(f"{p:g}" for p in sorted({f["p"] for f in found}))
    lines.append(
      f"| {label} | {aurc['msp']:.4f} | {aurc['ts']:.4f} | {aurc['pnorm']:.4f} (p = {ps}) | "
      f"{eaurc['msp']:.4f} | {eaurc['pnorm']:.4f} |"
    )
  return "\n".join(lines) + "\n"


def write_run(run: workdir_lib.Workdir, result: dict, test_logits: np.ndarray) -> None:
  """calibration.json, reliability.png and the diagram in TensorBoard (tb/calibration)."""
  workdir_lib.atomic_write_json(run.file("calibration.json"), _nan_to_none(result))
  t = result["temperature"]
  series = {
    _method_of(result): (result["bins"], _confidences(test_logits)),
    f"{_method_of(result)}, T={t:.2f}": (
      result["bins_temperature_scaled"],
      _confidences(test_logits / t),
    ),
  }
  png = plots.to_png(plots.reliability_diagram(series, title=os.path.basename(run.path)))
  workdir_lib.atomic_write_bytes(run.file("reliability.png"), png)
  with tf.summary.create_file_writer(run.file("tb", "calibration")).as_default(step=0):
    tf.summary.image("reliability_diagram", tf.image.decode_png(png)[tf.newaxis], step=0)


def _with_measures(scaling, labels, logits, num_bins: int) -> dict:
  """Before and after T: `summary` and `calibration.measures` of the test logits (and / T).

  Returns {"uncalibrated": ..., "temperature_scaled": ...}, each one dict of floats.
  """
  return {
    key: {**found, **calibration.measures(labels, logits / t, num_bins=num_bins)}
    for key, found, t in (
      ("uncalibrated", scaling.before, 1.0),
      ("temperature_scaled", scaling.after, scaling.temperature),
    )
  }


def intervals(labels, logits, scaling, num_bins: int, num_resamples: int) -> dict:
  """{"uncalibrated", "temperature_scaled"}: each {measure: Interval as a dict} (JSON-able)."""
  return {
    key: {
      name: dataclasses.asdict(interval)
      for name, interval in calibration.bootstrap_intervals(
        labels, scaled, num_bins=num_bins, num_resamples=num_resamples
      ).items()
    }
    for key, scaled in (
      ("uncalibrated", logits),
      ("temperature_scaled", logits / scaling.temperature),
    )
  }


def measures_table(rows: Sequence[tuple]) -> str:
  """Markdown: the calibration measures of `rows` (name, result), each before and after T.

  A result is what `calibrate_run` returns (or the same keys: temperature, uncalibrated,
  temperature_scaled and optionally intervals); a cell is "value [95% interval]" when the
  result has intervals, the value alone otherwise.
  """
  names = calibration.SUITE
  header = " | ".join(calibration.NAMES[m] for m in names)
  lines = [f"| run | predictions | {header} |", "| --- | --- |" + " --- |" * len(names)]
  for name, result in rows:
    for key, label in (
      ("uncalibrated", "as trained"),
      ("temperature_scaled", f"temperature scaled (T = {result['temperature']:.2f})"),
    ):
      found = result.get("intervals", {}).get(key, {})
      cells = [
        calibration.Interval(**found[m]).format(4) if m in found else f"{result[key][m]:.4f}"
        for m in names
      ]
      lines.append(f"| {name} | {label} | {' | '.join(cells)} |")
  return "\n".join(lines) + "\n"


def _measures_note(results: Sequence[dict]) -> str:
  first = results[0]
  note = (
    f"Calibration measures on the test split ({first['num_bins']} bins each: ECE-15 and RMS "
    "calibration error over equal-width top-1 bins, adaptive ECE over equal-mass ones, "
    "classwise ECE over equal-width bins of every class's probability, averaged over classes)"
  )
  if "intervals" in first:
    interval = next(iter(first["intervals"]["uncalibrated"].values()))
    note += (
      f"; [{interval['confidence']:.0%} bootstrap percentile interval over test examples, "
      f"{interval['num_resamples']} resamples, T held fixed; binned measures are biased "
      "upwards, a resample's more, so near 0 an interval can lie above its value]"
    )
  return note + ":"


def _confidences(logits: np.ndarray) -> np.ndarray:
  return numerics.softmax(logits).max(-1)


def _nan_to_none(value):
  if isinstance(value, dict):
    return {k: _nan_to_none(v) for k, v in value.items()}
  if isinstance(value, np.ndarray):
    return [None if np.isnan(x) else float(x) for x in value]
  return value


def _method_of(result: dict) -> str:
  return result.get("method", f"alpha {result['alpha']:g}")


def table3(results: Sequence[dict]) -> str:
  """Markdown in the form of the paper's Table 3 (ECE, mean over seeds of each alpha).

  Then every run's calibration measures before and after temperature scaling
  (`measures_table`), with their intervals when `results` have them.
  """
  by_alpha: Dict[float, List[dict]] = collections.defaultdict(list)
  by_loss: Dict[str, List[dict]] = collections.defaultdict(list)
  for r in results:
    if r.get("loss", "cross_entropy") == "cross_entropy":
      by_alpha[r["alpha"]].append(r)
    else:
      by_loss[r["method"]].append(r)

  def mean(rs, key):
    return float(np.mean([r[key]["ece"] for r in rs]))

  baseline = by_alpha.get(0.0)
  smoothed = {a: rs for a, rs in by_alpha.items() if a > 0}
  base = f"{mean(baseline, 'uncalibrated'):.3f}" if baseline else "n/a (no alpha = 0 run)"
  if baseline:
    t = np.mean([r["temperature"] for r in baseline])
    ts = f"{mean(baseline, 'temperature_scaled'):.3f} (T = {t:.2f})"
  else:
    ts = "n/a"
  if smoothed:
    best = min(smoothed, key=lambda a: mean(smoothed[a], "uncalibrated"))
    ls = f"{mean(smoothed[best], 'uncalibrated'):.3f} (alpha = {best:g})"
  else:
    ls = "n/a (no alpha > 0 run)"
  n = len(results)
  lines = [
    "| runs | baseline ECE | temperature scaling ECE (T) | label smoothing ECE (best alpha) |",
    "| --- | --- | --- | --- |",
    f"| {n} | {base} | {ts} | {ls} |",
    "",
    "| alpha, or loss | seeds | test accuracy | test NLL | test ECE | ECE after temperature "
    "scaling (T) |",
    "| --- | --- | --- | --- | --- | --- |",
  ]
  groups = [(f"{a:g}", by_alpha[a]) for a in sorted(by_alpha)] + sorted(by_loss.items())
  for label, rs in groups:
    acc = np.mean([r["uncalibrated"]["accuracy"] for r in rs])
    nll = np.mean([r["uncalibrated"]["nll"] for r in rs])
    t = np.mean([r["temperature"] for r in rs])
    lines.append(
      f"| {label} | {len(rs)} | {acc:.4f} | {nll:.4f} | {mean(rs, 'uncalibrated'):.4f} | "
      f"{mean(rs, 'temperature_scaled'):.4f} ({t:.2f}) |"
    )
  rows = [
    (f"{os.path.basename(os.path.normpath(r['workdir']))} ({_method_of(r)})", r)
    for r in sorted(results, key=lambda r: (r.get("loss", "cross_entropy"), r["alpha"]))
  ]
  return "\n".join(lines) + "\n\n" + _measures_note(results) + "\n\n" + measures_table(rows)


def calibrate_runs(
  workdirs: Sequence[str],
  output_dir: str,
  num_bins: int = calibration.DEFAULT_BINS,
  num_resamples: int = calibration.DEFAULT_RESAMPLES,
) -> dict:
  """Calibrates every run, then writes the joint reliability diagram and Table 3 to output_dir.

  `num_resamples` bootstrap resamples give each run's intervals (0: none).
  """
  checks.num_bins(num_bins)
  checks.num_resamples(num_resamples, allow_none=True)
  if not workdirs:
    raise UserError("give at least one --workdir of a finished training run.")
  workdir_lib.check_output_dir(output_dir)
  runs = [workdir_lib.require(path) for path in workdirs]
  workdir_lib.check_writable(
    [run.path for run in runs],
    "calibration.json, reliability.png and tb/calibration",
    subfolders=("tb", os.path.join("tb", "calibration")),
  )
  results = [  # Every check before any write.
    calibrate_run(run, num_bins, write=False, num_resamples=num_resamples) for run in runs
  ]
  os.makedirs(output_dir, exist_ok=True)
  series = {}
  for run, result in zip(runs, results):
    logits, _ = run.load_logits("test")
    write_run(run, result, logits)
    name = f"{result['method']} ({os.path.basename(run.path)})"
    series[name] = (result["bins"], _confidences(logits))
    baseline = result["loss"] == "cross_entropy" and result["alpha"] == 0.0
    if baseline and "temperature scaling" not in " ".join(series):
      series[f"{name} + temperature scaling, T={result['temperature']:.2f}"] = (
        result["bins_temperature_scaled"],
        _confidences(logits / result["temperature"]),
      )
  plots.save(
    plots.reliability_diagram(series, title="Reliability (test split)"),
    os.path.join(output_dir, "reliability.png"),
  )
  by_alpha: Dict[str, List[dict]] = collections.defaultdict(list)
  for r in sorted(results, key=lambda r: (r["loss"] != "cross_entropy", r["alpha"], r["method"])):
    by_alpha[r["method"]].append(r["selective"])
  table = table3(results) + "\n" + selective_table(by_alpha)
  workdir_lib.atomic_write_bytes(os.path.join(output_dir, "table3.md"), table.encode())
  keys = ("workdir", "alpha", "loss", "method", "temperature", "temperature_at_bound")
  summary = {
    "runs": [
      {
        k: r[k]
        for k in (*keys, "uncalibrated", "temperature_scaled", "selective", "intervals")
        if k in r
      }
      for r in results
    ],
    "table": table,
  }
  workdir_lib.atomic_write_json(os.path.join(output_dir, "calibration.json"), summary)
  summary["warnings"] = [
    f"{r['workdir']}: {r['temperature'].bound_warning()}"
    for r in results
    if r["temperature_at_bound"]
  ]
  return summary


def calibrate_model_file(
  model_path: str,
  dataset: str,
  output_dir: str,
  *,
  data_dir: str = "",
  num_bins: int = calibration.DEFAULT_BINS,
  logits_layer: str = "",
  trust_saved_model: bool = False,
  validation_size: int = 10000,
  eval_examples: int = 0,
  num_resamples: int = calibration.DEFAULT_RESAMPLES,
) -> dict:
  """Calibration of a classifier trained anywhere, on a data set's validation and test splits.

  The model (see `models.model_file`: raw [0, 255] pixels in, logits found and a final
  softmax undone) is evaluated on the validation split (the last `validation_size` examples
  of the train split), where T is fitted, and on the test split, where every number is
  reported: as for a workdir. Writes calibration.json (the numbers and the bins),
  reliability.png and table3.md into `output_dir`, never next to the model. The data is
  read from `data_dir`, never prepared there. `num_resamples` bootstrap resamples of the
  test examples give the calibration measures' intervals (0: none).

  Returns:
    The summary written to calibration.json, plus "table" and "warnings" (sentences, e.g. a
    temperature at a search bound).

  Raises:
    UserError: bad flags, a model file that does not load or does not fit the data set,
      data not prepared in `data_dir`, or outputs that are probabilities.
  """
  from ls_keras import data as data_lib
  from ls_keras.models import model_file as model_file_lib

  checks.num_bins(num_bins)
  checks.num_resamples(num_resamples, allow_none=True)
  if validation_size < 1 or eval_examples < 0:
    raise UserError(
      f"--validation_size={validation_size} must be >= 1 and --eval_examples={eval_examples} "
      ">= 0 (0: every example)."
    )
  workdir_lib.check_output_dir(output_dir)
  model = model_file_lib.open_model_file(
    model_path, trust_saved_model=trust_saved_model, logits_layer=logits_layer
  )
  splits = data_lib.load_splits(
    dataset,
    data_dir=data_dir,
    validation_size=validation_size,
    eval_examples=eval_examples,
    prepare=False,
  )
  model_file_lib.check_data(model, splits.spec.image_shape, splits.num_classes, dataset)
  val_logits, val_labels = model_file_lib.split_logits(model, splits.validation, "validation")
  test_logits, test_labels = model_file_lib.split_logits(model, splits.test, "test")
  scaling = calibration.temperature_scale(
    val_labels, val_logits, test_labels, test_logits, num_bins=num_bins
  )
  t = scaling.temperature
  bins = calibration.bin_statistics(test_labels, logits=test_logits, num_bins=num_bins)
  scaled_bins = calibration.bin_statistics(test_labels, logits=test_logits / t, num_bins=num_bins)
  name = model_file_lib.describe(model)
  selective = selective_result(val_labels, val_logits, test_labels, test_logits)
  result = {
    "model_file": os.path.abspath(model_path),
    "logits": model.description,
    "dataset": dataset,
    "num_bins": num_bins,
    "split": "test",
    "fit_split": "validation",
    "temperature": t,
    "temperature_at_bound": t.at_bound,
    **_with_measures(scaling, test_labels, test_logits, num_bins),
    "bins": bins,
    "bins_temperature_scaled": scaled_bins,
    "selective": selective,
  }
  if num_resamples:
    result["intervals"] = intervals(test_labels, test_logits, scaling, num_bins, num_resamples)
  result["table"] = table = model_table(name, result) + "\n" + selective_table({name: [selective]})
  title = os.path.basename(os.path.normpath(model_path))
  series = {
    title: (bins, _confidences(test_logits)),
    f"{title}, T={t:.2f}": (scaled_bins, _confidences(test_logits / t)),
  }
  os.makedirs(output_dir, exist_ok=True)
  plots.save(
    plots.reliability_diagram(series, title=f"Reliability ({dataset}, test split)"),
    os.path.join(output_dir, "reliability.png"),
  )
  workdir_lib.atomic_write_bytes(os.path.join(output_dir, "table3.md"), table.encode())
  workdir_lib.atomic_write_json(os.path.join(output_dir, "calibration.json"), _nan_to_none(result))
  result["warnings"] = [f"{model_path}: {t.bound_warning()}"] if t.at_bound else []
  return result


def model_table(name: str, result: dict) -> str:
  """Markdown in the form of Table 3's per-alpha rows, for one model (no alpha is known).

  `result` holds temperature, uncalibrated, temperature_scaled, num_bins and optionally
  intervals (as `calibrate_model_file` builds it); then its calibration measures.
  """
  before, after = result["uncalibrated"], result["temperature_scaled"]
  return (
    "| model | test accuracy | test NLL | test ECE | ECE after temperature scaling (T) |\n"
    "| --- | --- | --- | --- | --- |\n"
    f"| {name} | {before['accuracy']:.4f} | {before['nll']:.4f} | {before['ece']:.4f} | "
    f"{after['ece']:.4f} ({result['temperature']:.2f}) |\n\n"
    f"{_measures_note([result])}\n\n{measures_table([(name, result)])}"
  )
