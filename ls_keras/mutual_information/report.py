"""Figure 6 for finished runs: the mutual-information series of several runs on one plot."""

import os
from typing import Optional, Sequence

import numpy as np

from ls_keras.core import config as config_lib
from ls_keras import data as data_lib
from ls_keras import mutual_information, training
from ls_keras.core import plots
from ls_keras.core import workdir as workdir_lib
from ls_keras.core.errors import UserError, WorkdirError


def plot_runs(
  workdirs: Sequence[str],
  output_dir: str,
  recompute: bool = False,
  data_dir: Optional[str] = None,
) -> dict:
  """Plots each run's I(X; Y) against training step, with log N and log 2 for reference.

  With `recompute`, the images are read from `data_dir` (the command's --data_dir; see
  `data.load_run_splits`), never prepared there.
  """
  if not workdirs:
    raise UserError("give at least one --workdir of a finished training run.")
  workdir_lib.check_output_dir(output_dir)
  if recompute:
    workdir_lib.check_writable(
      [workdir_lib.require(path).path for path in workdirs], "mutual_information_recomputed.json"
    )
  curves, log_n, results = {}, None, {}
  for path in workdirs:
    run = workdir_lib.require(path)
    record = run.read_record()
    if recompute:
      if record["kind"] != "train":
        raise UserError(f"{run.path} is a {record['kind']} run; --recompute works on train runs.")
      config = config_lib.from_dict(config_lib.TrainConfig, record["config"])
      # The statistics the run's model normalised with, as it recorded them.
      splits = data_lib.load_run_splits(config, data_dir, training.recorded_statistics(record))
      series = mutual_information.recompute_from_checkpoints(
        run,
        config,
        splits,
        lambda c=config, s=splits: training.build_classifier(
          c, s, training.make_schedule(c, s.sizes["train"], replicas=1).total_steps
        ),
      )
    else:
      series_path = run.file("mutual_information.json")
      if not os.path.exists(series_path):
        raise UserError(
          f"{run.path} has no mutual_information.json: train it with --mi_every_steps > 0, or "
          "pass --recompute to estimate from its checkpoints."
        )
      series = _read_series(series_path)
    label = f"alpha={record['config'].get('alpha', 0.0):g} ({os.path.basename(run.path)})"
    curves[label] = (np.array([p["step"] for p in series]), np.array([p["mi"] for p in series]))
    log_n = series[0]["log_n"]
    results[run.path] = series
  if recompute:  # Every run computed without error: only now write into them.
    for path, series in results.items():
      workdir_lib.atomic_write_json(
        os.path.join(path, "mutual_information_recomputed.json"), series
      )
  os.makedirs(output_dir, exist_ok=True)
  fig = plots.line_plot(
    curves,
    "training step",
    "I(X; logit difference) [nats]",
    hlines={"log N": log_n, "log 2": float(np.log(2))},
    title="Mutual information between example index and logits",
  )
  plots.save(fig, os.path.join(output_dir, "mutual_information.png"))
  workdir_lib.atomic_write_json(os.path.join(output_dir, "mutual_information.json"), results)
  return results


def _read_series(path: str) -> list:
  """mutual_information.json: a non-empty list of {step, mi, log_n} numbers; else WorkdirError."""
  series = workdir_lib.read_json(path)
  number = (int, float)
  usable = (
    isinstance(series, list)
    and series
    and all(
      isinstance(p, dict)
      and all(isinstance(p.get(k), number) and not isinstance(p.get(k), bool) for k in _POINT)
      for p in series
    )
  )
  if not usable:
    raise WorkdirError(
      f"{path} is not a mutual-information series (a non-empty list of points with numbers "
      f"{', '.join(_POINT)}); the file is corrupt. Pass --recompute to estimate it afresh from "
      "the run's checkpoints."
    )
  return series


_POINT = ("step", "mi", "log_n")
