"""Figure 1: `python -m ls_keras.project --workdir=RUN_A0 --workdir=RUN_LS --classes=similar`.

Projects penultimate activations of 3 classes onto the plane of their templates, for the
train and validation splits of every run side by side; writes the figure, the points,
tightness numbers, and TensorBoard projector embeddings into each run (tb/projector). Or
for a model trained anywhere: `--model_file=PATH.keras --dataset=NAME [--data_dir=DIR]`,
with the embeddings in --output_dir/tb/projector. With --tsne, also t-SNE maps of the
penultimate features of validation examples, the runs side by side (Zhang et al. 2021):
tsne.png and tsne_points.npz in --output_dir.
"""

import sys

from absl import flags

from ls_keras import calibrate, cli
from ls_keras.core.errors import UserError


def define_flags(flag_values: flags.FlagValues) -> None:
  """Defines this command's flags on `flag_values` (by cli.run and cli.invoke, not at import)."""
  fv = {"flag_values": flag_values}
  flags.DEFINE_multi_string(
    "workdir", [], "A finished training run (repeat; e.g. alpha 0 and alpha 0.1).", **fv
  )
  flags.DEFINE_multi_string(
    "classes",
    ["dissimilar", "similar"],
    "A class triple per figure row: names or indices (e.g. 0,1,8), 'similar' or "
    "'dissimilar' (chosen from the alpha=0 run's validation confusion matrix).",
    **fv,
  )
  cli.define_folder_flag(
    "output_dir", "workdirs/projection", "Where projection.png/.npz/.json go.", flag_values
  )
  flags.DEFINE_integer(
    "examples_per_class", 100, "Examples of each class per panel (the paper: 100).", **fv
  )
  flags.DEFINE_integer(
    "projector_examples", 1000, "Embeddings written for TensorBoard's Projector (0: none).", **fv
  )
  flags.DEFINE_bool(
    "tsne",
    False,
    "Also draw t-SNE maps of every run's penultimate features side by side (tsne.png, "
    "tsne_points.npz), as in Zhang et al. 2021 (the baseline first: give its --workdir first).",
    **fv,
  )
  flags.DEFINE_integer(
    "tsne_examples",
    2000,
    "With --tsne: the most validation examples embedded, a stratified subsample (at least 4; "
    "2000 take 4-20 s per run on 2 CPU cores).",
    **fv,
  )
  flags.DEFINE_float(
    "tsne_perplexity",
    0.0,
    "With --tsne: t-SNE's perplexity, in [1, (examples - 1) / 3]; 0: min(30, (examples - 1) / 3).",
    **fv,
  )
  flags.DEFINE_string(
    "data_dir",
    "",
    "TFDS data directory holding the runs' (or --dataset's) data set, prepared (empty: TFDS' "
    "default). Read only: analyses never prepare data, nor read it from where a run's "
    "config.json says.",
    **fv,
  )

  calibrate.define_model_file_flags(flag_values, "project")
  flags.declare_key_flag("flagfile", flag_values=flag_values)  # --help lists it.


def main(flag_values: flags.FlagValues) -> None:
  """Runs the command on parsed flags; bad input raises UserError (exit code 2 in cli)."""
  calibrate.check_source(flag_values)
  given = [f"--{n}" for n in ("tsne_examples", "tsne_perplexity") if flag_values[n].present]
  if given and not flag_values.tsne:
    raise UserError(f"{' and '.join(given)} apply only with --tsne; add --tsne or drop them.")
  cli.start_tensorflow()
  from ls_keras.projection import report as projection_report
  from ls_keras.projection import tsne as tsne_lib

  tsne = (
    tsne_lib.TsneSettings(flag_values.tsne_examples, flag_values.tsne_perplexity)
    if flag_values.tsne
    else None
  )

  if flag_values.model_file:
    summary = projection_report.project_model_file(
      flag_values.model_file,
      flag_values.dataset,
      flag_values.classes,
      flag_values.output_dir,
      flag_values.examples_per_class,
      flag_values.projector_examples,
      data_dir=flag_values.data_dir,
      penultimate_layer=flag_values.penultimate_layer,
      logits_layer=flag_values.logits_layer,
      trust_saved_model=flag_values.trust_saved_model,
      tsne=tsne,
    )
  else:
    summary = projection_report.project_runs(
      flag_values.workdir,
      flag_values.classes,
      flag_values.output_dir,
      flag_values.examples_per_class,
      flag_values.projector_examples,
      data_dir=flag_values.data_dir,
      tsne=tsne,
    )
  print(projection_report.tightness_table(summary))
  also = ", tsne.png, tsne_points.npz" if tsne else ""
  print(
    f"Wrote {flag_values.output_dir}/projection.png, projection_points.npz{also} and "
    "projection.json."
  )


def run():
  """The console script entry point."""
  cli.run(sys.modules[__name__])


if __name__ == "__main__":
  run()
