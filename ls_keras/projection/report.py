"""Figure 1 for finished runs: projections side by side, tightness numbers, projector embeddings."""

import os
from typing import Dict, Optional, Sequence

import numpy as np

from ls_keras import data as data_lib
from ls_keras.training import export as export_lib
from ls_keras import projection
from ls_keras.core import plots
from ls_keras.core import workdir as workdir_lib
from ls_keras.core.errors import UserError

SPLITS = ("train", "validation")


def _label(run: workdir_lib.Workdir, record: dict) -> str:
  return f"{os.path.basename(run.path)} (alpha={record['config'].get('alpha', 0.0):g})"


def project_runs(
  workdirs: Sequence[str],
  class_specs: Sequence[str],
  output_dir: str,
  examples_per_class: int = 100,
  projector_examples: int = 1000,
  data_dir: Optional[str] = None,
) -> dict:
  """Projects every run on every class triple; writes projection.png/.npz/.json to output_dir.

  The images are read from `data_dir` (the command's --data_dir; see
  `data.load_run_splits`), never prepared there.
  """
  if not workdirs:
    raise UserError("give at least one --workdir of a finished training run.")
  if examples_per_class < 1 or projector_examples < 0:
    raise UserError(
      f"--examples_per_class={examples_per_class} must be >= 1 and --projector_examples="
      f"{projector_examples} >= 0."
    )
  workdir_lib.check_output_dir(output_dir)
  runs = [workdir_lib.require(path) for path in workdirs]
  if projector_examples:
    workdir_lib.check_writable(
      [run.path for run in runs],
      "the projector embeddings (tb/projector)",
      subfolders=("tb", os.path.join("tb", "projector")),
    )
  records = [run.read_record() for run in runs]
  datasets = {r["config"]["dataset"] for r in records}
  if len(datasets) != 1:
    raise UserError(
      f"the runs were trained on different data sets ({', '.join(sorted(datasets))}); project "
      "runs of one data set together."
    )
  loaded = [
    export_lib.load_keras_model(run.keras_model) for run in runs
  ]  # Fail fast on a bad model.
  splits = data_lib.load_run_splits(runs[0].run_config(), data_dir)
  baseline = next(
    (run for run, r in zip(runs, records) if r["config"].get("alpha", 0.0) == 0.0), runs[0]
  )
  val_logits, val_labels = baseline.load_logits("validation")
  confusion = projection.confusion_matrix(val_logits, val_labels, splits.num_classes)
  triples = [projection.choose_classes(spec, splits.class_names, confusion) for spec in class_specs]
  examples = {
    (t, s): data_lib.class_examples(getattr(splits, s), t, examples_per_class)
    for t in triples
    for s in SPLITS
  }
  panels, numbers, arrays = [[] for _ in triples], [], {}
  col_titles = []
  for run, record, model in zip(runs, records, loaded):
    features, templates = projection.extract(model)
    if templates.shape[0] != splits.num_classes:
      raise UserError(
        f"{run.path} has {templates.shape[0]} classes, the data {splits.num_classes}."
      )
    for split in SPLITS:
      col_titles.append(f"{_label(run, record)}\n{split}")
    for row, triple in enumerate(triples):
      for split in SPLITS:
        images, labels = examples[(triple, split)]
        result = projection.project_examples(features, templates, triple, images, labels)
        panels[row].append(result)
        key = f"{os.path.basename(run.path)}/{'-'.join(map(str, triple))}/{split}"
        arrays[key + "/points"], arrays[key + "/labels"] = result["points"], result["labels"]
        arrays[key + "/templates"] = result["templates"]
        numbers.append(
          {
            "workdir": run.path,
            "alpha": record["config"].get("alpha", 0.0),
            "classes": [splits.class_names[c] for c in triple],
            "split": split,
            "plane": result["tightness_plane"],
            "full": result["tightness_full"],
          }
        )
  # Every check has passed: only now write into the runs and the output folder.
  if projector_examples:
    for run, model in zip(runs, loaded):
      _write_projector(run, projection.extract(model)[0], splits, projector_examples)
  os.makedirs(output_dir, exist_ok=True)
  names = [[splits.class_names[c] for c in t] for t in triples]
  fig = plots.projection_grid(panels, [" / ".join(n) for n in names], col_titles, names)
  plots.save(fig, os.path.join(output_dir, "projection.png"))
  workdir_lib.atomic_savez(os.path.join(output_dir, "projection_points.npz"), **arrays)
  summary = {"triples": names, "examples_per_class": examples_per_class, "tightness": numbers}
  workdir_lib.atomic_write_json(os.path.join(output_dir, "projection.json"), summary)
  return summary


def _write_projector(
  run: workdir_lib.Workdir, features, splits: data_lib.Splits, count: int
) -> None:
  """Half train, half validation examples' penultimate embeddings for TensorBoard's Projector."""
  parts = []
  for split, n in (("train", count // 2), ("validation", count - count // 2)):
    images, labels = zip(*getattr(splits, split).take(n).as_numpy_iterator())
    parts.append((split, np.stack(images).astype(np.float32), np.array(labels)))
  images = np.concatenate([p[1] for p in parts])
  embeddings = projection.penultimate(features, images)
  metadata = [
    (int(label), splits.class_names[int(label)], split) for split, _, ls in parts for label in ls
  ]
  projection.write_projector(
    run.file("tb", "projector"), embeddings, images, metadata, ("label", "class", "split")
  )


def tightness_table(summary: Dict) -> str:
  """Markdown: spread / centroid separation per run, triple and split (smaller = tighter)."""
  lines = [
    "| run | alpha | classes | split | ratio (plane) | ratio (full space) | equidistance CV "
    "(plane) |",
    "| --- | --- | --- | --- | --- | --- | --- |",
  ]
  for n in summary["tightness"]:
    lines.append(
      f"| {os.path.basename(n['workdir'])} | {n['alpha']:g} | {' / '.join(n['classes'])} | "
      f"{n['split']} | {n['plane']['ratio']:.3f} | {n['full']['ratio']:.3f} | "
      f"{n['plane']['equidistance_cv']:.3f} |"
    )
  return "\n".join(lines) + "\n"
