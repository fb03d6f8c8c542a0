"""Figure 1 for finished runs: projections side by side, tightness numbers, projector embeddings.

With `tsne`, also t-SNE maps of the penultimate features side by side (Zhang et al. 2021).
"""

import os
import time
from typing import Dict, Optional, Sequence

import numpy as np

from ls_keras import data as data_lib
from ls_keras.models import export as export_lib
from ls_keras import projection
from ls_keras.core import config as config_lib
from ls_keras.core import plots
from ls_keras.core import workdir as workdir_lib
from ls_keras.core.errors import UserError
from ls_keras.projection import tsne as tsne_lib

SPLITS = ("train", "validation")


def _label(run: workdir_lib.Workdir, record: dict) -> str:
  return f"{os.path.basename(run.path)} ({config_lib.training_method(record['config'])})"


def project_runs(
  workdirs: Sequence[str],
  class_specs: Sequence[str],
  output_dir: str,
  examples_per_class: int = 100,
  projector_examples: int = 1000,
  data_dir: Optional[str] = None,
  tsne: Optional[tsne_lib.TsneSettings] = None,
) -> dict:
  """Projects every run on every class triple; writes projection.png/.npz/.json to output_dir.

  With `tsne`, also t-SNE maps of every run's penultimate features on one stratified
  subsample of the validation split, side by side in the order given (the baseline first,
  as in Zhang et al. 2021): tsne.png, tsne_points.npz (see `_tsne`) and the numbers under
  "tsne" in projection.json. The images are read from `data_dir` (the command's
  --data_dir; see `data.load_run_splits`), never prepared there.
  """
  if not workdirs:
    raise UserError("give at least one --workdir of a finished training run.")
  _check_counts(examples_per_class, projector_examples)
  workdir_lib.check_output_dir(output_dir)
  runs = [workdir_lib.require(path) for path in workdirs]
  _check_distinct_names(runs)
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
    (
      run
      for run, r in zip(runs, records)
      if config_lib.training_method(r["config"]) == config_lib.training_method({})
    ),
    runs[0],
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
            "method": config_lib.training_method(record["config"]),
            "classes": [splits.class_names[c] for c in triple],
            "split": split,
            "plane": result["tightness_plane"],
            "full": result["tightness_full"],
          }
        )
  if tsne is not None:
    maps = _tsne(
      [
        (
          os.path.basename(run.path),
          _label(run, record),
          projection.extract(model)[0],
          {
            "workdir": run.path,
            "alpha": record["config"].get("alpha", 0.0),
            "method": config_lib.training_method(record["config"]),
          },
        )
        for run, record, model in zip(runs, records, loaded)
      ],
      splits,
      tsne,
    )
  # Every check has passed: only now write into the runs and the output folder.
  if projector_examples:
    for run, model in zip(runs, loaded):
      features = projection.extract(model)[0]
      _write_projector(run.file("tb", "projector"), features, splits, projector_examples)
  os.makedirs(output_dir, exist_ok=True)
  names = [[splits.class_names[c] for c in t] for t in triples]
  fig = plots.projection_grid(panels, [" / ".join(n) for n in names], col_titles, names)
  plots.save(fig, os.path.join(output_dir, "projection.png"))
  workdir_lib.atomic_savez(os.path.join(output_dir, "projection_points.npz"), **arrays)
  summary = {"triples": names, "examples_per_class": examples_per_class, "tightness": numbers}
  if tsne is not None:
    summary["tsne"] = _write_tsne(output_dir, *maps)
  workdir_lib.atomic_write_json(os.path.join(output_dir, "projection.json"), summary)
  return summary


def _tsne(models, splits: data_lib.Splits, settings: tsne_lib.TsneSettings):
  """t-SNE maps of each model's penultimate features, all on the same validation examples.

  Args:
    models: (name, panel title, inputs -> penultimate features model, JSON fields naming
      the run) per run, in the figure's order.
    splits: the runs' data; the examples are a stratified subsample (at most
      `settings.examples`) of its validation split.
    settings: the cap, perplexity and seed.

  Returns:
    (figure, arrays for tsne_points.npz, the JSON summary): the arrays are "indices" (int64
    [N], into the validation split in its stored order), "labels" (int64 [N]),
    "class_names" and "<name>/coordinates" (float64 [N, 2]) per run.

  Raises:
    UserError: a validation split too small for t-SNE, or a perplexity out of range for it.
  """
  images, labels, indices = _stratified_examples(splits.validation, settings)
  perplexity = tsne_lib.perplexity_for(len(labels), settings.perplexity)
  panels, runs = [], []
  arrays = {"indices": indices, "labels": labels, "class_names": np.array(splits.class_names)}
  for name, title, features, fields in models:
    activations = projection.penultimate(features, images)
    start = time.perf_counter()
    coordinates = tsne_lib.embed(activations, perplexity, settings.seed)
    seconds = time.perf_counter() - start
    panels.append((title, coordinates, labels))
    arrays[f"{name}/coordinates"] = coordinates
    runs.append(
      {
        **fields,
        "silhouette_features": tsne_lib.silhouette(activations, labels),
        "silhouette_tsne": tsne_lib.silhouette(coordinates, labels),
        "seconds": round(seconds, 2),
      }
    )
  fig = tsne_lib.figure(
    panels,
    splits.class_names,
    f"t-SNE of penultimate features: {len(labels)} validation examples (stratified), "
    f"perplexity {perplexity:g}",
  )
  summary = {
    "split": "validation",
    "examples": len(labels),
    "perplexity": perplexity,
    "seed": settings.seed,
    "runs": runs,
  }
  return fig, arrays, summary


def _stratified_examples(ds, settings: tsne_lib.TsneSettings):
  """A stratified subsample of a split: (images, labels, indices into the split).

  float32 images [N, H, W, C] (pixels 0-255), int64 labels [N] and int64 indices [N], with
  N = min(split size, settings.examples). Two passes: the labels, then only the chosen images
  (a large split is never held whole).

  Raises:
    UserError: a split of fewer than `tsne_lib.MIN_EXAMPLES` examples, or fewer examples
      asked for than it has classes.
  """
  labels = [y for y in ds.map(lambda image, label: label).batch(4096).as_numpy_iterator()]
  labels = np.concatenate(labels).astype(np.int64) if labels else np.zeros(0, np.int64)
  if len(labels) < tsne_lib.MIN_EXAMPLES:
    raise UserError(
      f"the validation split holds {len(labels)} examples; t-SNE needs at least "
      f"{tsne_lib.MIN_EXAMPLES}."
    )
  classes = len(np.unique(labels))
  if settings.examples < classes:
    raise UserError(
      f"--tsne_examples={settings.examples} is not allowed here: the validation split holds "
      f"{classes} classes, and a stratified sample needs at least one example of each. Pass "
      f"--tsne_examples={classes} or more (default {tsne_lib.TsneSettings().examples})."
    )
  indices = tsne_lib.stratified_subsample(labels, settings.examples, settings.seed)
  keep = np.zeros(len(labels), bool)
  keep[indices] = True
  images, start = [], 0
  for batch, _ in ds.batch(4096).as_numpy_iterator():
    images.append(batch[keep[start : start + len(batch)]])
    start += len(batch)
  return np.concatenate(images).astype(np.float32), labels[indices], indices


def _write_tsne(output_dir: str, fig, arrays: dict, summary: dict) -> dict:
  """Writes `_tsne`'s figure and arrays (tsne.png, tsne_points.npz); returns its summary."""
  plots.save(fig, os.path.join(output_dir, "tsne.png"))
  workdir_lib.atomic_savez(os.path.join(output_dir, "tsne_points.npz"), **arrays)
  return summary


def _write_projector(logdir: str, features, splits: data_lib.Splits, count: int) -> None:
  """Half train, half validation examples' penultimate embeddings for TensorBoard's Projector.

  Each embedding's metadata: its label, the data set's name for that class, and its split.
  """
  parts = []
  for split, n in (("train", count // 2), ("validation", count - count // 2)):
    images, labels = zip(*getattr(splits, split).take(n).as_numpy_iterator())
    parts.append((split, np.stack(images).astype(np.float32), np.array(labels)))
  images = np.concatenate([p[1] for p in parts])
  embeddings = projection.penultimate(features, images)
  metadata = [
    (int(label), splits.class_names[int(label)], split) for split, _, ls in parts for label in ls
  ]
  projection.write_projector(logdir, embeddings, images, metadata, ("label", "class", "split"))


def project_model_file(
  model_path: str,
  dataset: str,
  class_specs: Sequence[str],
  output_dir: str,
  examples_per_class: int = 100,
  projector_examples: int = 1000,
  *,
  data_dir: str = "",
  penultimate_layer: str = "",
  logits_layer: str = "",
  trust_saved_model: bool = False,
  tsne: Optional[tsne_lib.TsneSettings] = None,
) -> dict:
  """`project_runs` for one classifier trained anywhere (a `.keras` file) on a data set.

  Features and templates come from `models.model_file` (by default the last Dense layer
  and its input; a softmax activation does not matter: the templates are its kernel and
  bias). `similar` / `dissimilar` read the model's confusions on the validation split (the
  last 10000 examples of the train split). Writes projection.png/.npz/.json and, with
  `projector_examples`, the projector embeddings (tb/projector) into `output_dir`, never
  next to the model; with `tsne`, its t-SNE map as `project_runs` writes them. The data is
  read from `data_dir`, never prepared there.

  Raises:
    UserError: bad flags, a SavedModel (its layers cannot be read), a model that does not
      fit the data set, or layers that cannot be found.
  """
  from ls_keras.models import model_file as model_file_lib

  _check_counts(examples_per_class, projector_examples)
  workdir_lib.check_output_dir(output_dir)
  model = model_file_lib.open_model_file(
    model_path,
    trust_saved_model=trust_saved_model,
    penultimate_layer=penultimate_layer,
    logits_layer=logits_layer,
  )
  features, templates = model.features_and_templates()
  splits = data_lib.load_splits(dataset, data_dir=data_dir, prepare=False)
  model_file_lib.check_data(model, splits.spec.image_shape, splits.num_classes, dataset)
  confusion = None
  if any(spec in ("similar", "dissimilar") for spec in class_specs):
    val_logits, val_labels = model_file_lib.split_logits(model, splits.validation, "validation")
    confusion = projection.confusion_matrix(val_logits, val_labels, splits.num_classes)
  triples = [projection.choose_classes(spec, splits.class_names, confusion) for spec in class_specs]
  name = os.path.basename(os.path.normpath(model_path))
  panels, numbers, arrays, col_titles = [[] for _ in triples], [], {}, []
  for split in SPLITS:
    col_titles.append(f"{name}\n{split}")
  for row, triple in enumerate(triples):
    for split in SPLITS:
      images, labels = data_lib.class_examples(getattr(splits, split), triple, examples_per_class)
      result = projection.project_examples(features, templates, triple, images, labels)
      panels[row].append(result)
      key = f"{name}/{'-'.join(map(str, triple))}/{split}"
      arrays[key + "/points"], arrays[key + "/labels"] = result["points"], result["labels"]
      arrays[key + "/templates"] = result["templates"]
      numbers.append(
        {
          "model_file": os.path.abspath(model_path),
          "classes": [splits.class_names[c] for c in triple],
          "split": split,
          "plane": result["tightness_plane"],
          "full": result["tightness_full"],
        }
      )
  if tsne is not None:
    maps = _tsne(
      [(name, name, features, {"model_file": os.path.abspath(model_path)})], splits, tsne
    )
  os.makedirs(output_dir, exist_ok=True)
  if projector_examples:
    logdir = os.path.join(output_dir, "tb", "projector")
    _write_projector(logdir, features, splits, projector_examples)
  names = [[splits.class_names[c] for c in t] for t in triples]
  fig = plots.projection_grid(panels, [" / ".join(n) for n in names], col_titles, names)
  plots.save(fig, os.path.join(output_dir, "projection.png"))
  workdir_lib.atomic_savez(os.path.join(output_dir, "projection_points.npz"), **arrays)
  summary = {
    "model_file": os.path.abspath(model_path),
    "features_and_logits": model.description,
    "dataset": dataset,
    "triples": names,
    "examples_per_class": examples_per_class,
    "tightness": numbers,
  }
  if tsne is not None:
    summary["tsne"] = _write_tsne(output_dir, *maps)
  workdir_lib.atomic_write_json(os.path.join(output_dir, "projection.json"), summary)
  return summary


def _check_distinct_names(runs: Sequence[workdir_lib.Workdir]) -> None:
  """Runs are named by their folder in every output: two with one name would overwrite."""
  names = [os.path.basename(run.path) for run in runs]
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    paths = [run.path for run in runs if os.path.basename(run.path) in repeated]
    raise UserError(
      f"the --workdir folders {', '.join(paths)} share the name {', '.join(repeated)}, which "
      "names each run in the figures and point files: project them in separate calls, or "
      "rename (or link) one folder."
    )


def _check_counts(examples_per_class: int, projector_examples: int) -> None:
  if examples_per_class < 1 or projector_examples < 0:
    raise UserError(
      f"--examples_per_class={examples_per_class} must be >= 1 and --projector_examples="
      f"{projector_examples} >= 0."
    )


def tightness_table(summary: Dict) -> str:
  """Markdown: spread / centroid separation per run, triple and split (smaller = tighter).

  With t-SNE maps in the summary, a second table: each run's class silhouettes.
  """
  lines = [
    "| run | alpha, or loss | classes | split | ratio (plane) | ratio (full space) | "
    "equidistance CV (plane) |",
    "| --- | --- | --- | --- | --- | --- | --- |",
  ]
  for n in summary["tightness"]:
    run, alpha = _run_and_method(n)
    lines.append(
      f"| {run} | {alpha} | {' / '.join(n['classes'])} | "
      f"{n['split']} | {n['plane']['ratio']:.3f} | {n['full']['ratio']:.3f} | "
      f"{n['plane']['equidistance_cv']:.3f} |"
    )
  if "tsne" in summary:
    t = summary["tsne"]
    lines += [
      "",
      f"t-SNE of {t['examples']} validation examples (perplexity {t['perplexity']:g}); "
      "silhouette of the classes, -1 to 1 (higher = tighter, better separated):",
      "",
      "| run | alpha, or loss | silhouette (penultimate features) | silhouette (t-SNE map) |",
      "| --- | --- | --- | --- |",
    ]
    for n in t["runs"]:
      run, alpha = _run_and_method(n)
      lines.append(
        f"| {run} | {alpha} | {_optional(n['silhouette_features'])} | "
        f"{_optional(n['silhouette_tsne'])} |"
      )
  return "\n".join(lines) + "\n"


def _run_and_method(entry: Dict) -> tuple:
  """A summary entry's run (its folder's or model file's name) and its alpha, or other loss."""
  run = os.path.basename(entry.get("workdir") or entry["model_file"])
  return run, entry.get("method", f"{entry['alpha']:g}") if "alpha" in entry else "n/a"


def _optional(value: Optional[float]) -> str:
  return "n/a" if value is None else f"{value:.3f}"
