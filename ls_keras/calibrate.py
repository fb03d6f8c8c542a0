"""Calibration of trained runs: `python -m ls_keras.calibrate --workdir=RUN [--workdir=RUN ...]`.

Writes calibration.json and reliability.png into each run (and the diagram into its
TensorBoard), plus a joint reliability diagram and a Table 3 in --output_dir: ECE-15, adaptive
ECE, classwise ECE and RMS calibration error, with bootstrap intervals. Or of a model trained
anywhere: `--model_file=PATH.keras --dataset=NAME [--data_dir=DIR]` evaluates it on
the data set's validation and test splits and writes the same into --output_dir.
"""

import sys

from absl import flags

from ls_keras import cli
from ls_keras.core import workdir as workdir_lib
from ls_keras.core.checks import MAX_BINS, MAX_RESAMPLES
from ls_keras.core.errors import UserError


def define_flags(flag_values: flags.FlagValues) -> None:
  """Defines this command's flags on `flag_values` (by cli.run and cli.invoke, not at import)."""
  fv = {"flag_values": flag_values}
  flags.DEFINE_multi_string("workdir", [], "A finished training run (repeat for several).", **fv)
  cli.define_folder_flag(
    "output_dir", "workdirs/calibration", "Where the joint diagram and table go.", flag_values
  )
  flags.DEFINE_integer(
    "num_bins",
    15,
    f"Equal-width confidence bins for ECE, 1-{MAX_BINS} (the paper: 15).",
    **fv,
  )
  flags.DEFINE_integer(
    "num_resamples",
    200,
    f"Bootstrap resamples of the test examples for the 95% intervals of ECE, adaptive ECE, "
    f"classwise ECE and RMS calibration error, 0-{MAX_RESAMPLES} (0: no intervals).",
    **fv,
  )

  define_model_file_flags(flag_values, "calibrate")
  flags.DEFINE_integer(
    "validation_size",
    10000,
    "With --model_file: examples held out from the end of the train split, where T is fitted.",
    **fv,
  )
  flags.DEFINE_integer(
    "eval_examples",
    0,
    "With --model_file: use only the first N validation and test examples (0: all).",
    **fv,
  )
  flags.declare_key_flag("flagfile", flag_values=flag_values)  # --help lists it.


def define_model_file_flags(flag_values: flags.FlagValues, command: str) -> None:
  """--model_file and what goes with it (shared by calibrate and project)."""
  fv = {"flag_values": flag_values}
  flags.DEFINE_string(
    "model_file",
    "",
    "Instead of --workdir: a classifier trained anywhere, a .keras file (or, with "
    "--trust_saved_model, a SavedModel folder). It receives float32 images with pixel values "
    "in [0, 255] and the data set's shape; needs --dataset.",
    **fv,
  )
  flags.DEFINE_string(
    "dataset",
    "",
    "With --model_file: the data set to evaluate it on (e.g. fashion_mnist), read from --data_dir.",
    **fv,
  )
  if command == "calibrate":  # project defines its own --data_dir (for workdirs too).
    flags.DEFINE_string(
      "data_dir",
      "",
      "With --model_file: TFDS data directory holding --dataset, prepared (empty: TFDS' "
      "default). Read only: never prepared here.",
      **fv,
    )
  else:
    flags.DEFINE_string(
      "penultimate_layer",
      "",
      "With --model_file: the layer whose output are the penultimate features (default: the "
      "input of the logits layer).",
      **fv,
    )
  flags.DEFINE_string(
    "logits_layer",
    "",
    "With --model_file: the layer whose output are the logits (default: the last Dense "
    "layer; a softmax activation or a final Softmax layer is undone).",
    **fv,
  )
  flags.DEFINE_bool(
    "trust_saved_model",
    False,
    "Allow --model_file to be a SavedModel folder: loading one runs the TensorFlow graph "
    "stored in it, code its author wrote. Only for models from authors you trust.",
    **fv,
  )


def check_source(flag_values: flags.FlagValues) -> None:
  """Exactly one of --workdir and --model_file; --model_file needs --dataset.

  Raises:
    UserError: both, neither, or a model file without a data set.
  """
  workdirs, model_file = flag_values.workdir, flag_values.model_file
  if workdirs and model_file:
    raise UserError(
      f"--workdir={workdirs[0]} and --model_file={model_file} were both given: give either "
      "finished ls_keras runs (--workdir) or one model file with --dataset, not both."
    )
  if not workdirs and not model_file:
    raise UserError(
      "give at least one --workdir of a finished training run, or --model_file=PATH.keras with "
      "--dataset=NAME."
    )
  if model_file and not flag_values.dataset:
    raise UserError(
      f"--model_file={model_file} needs --dataset=NAME: the data set to evaluate it on (the "
      "one it was trained on, e.g. fashion_mnist), read from --data_dir."
    )
  if not model_file:
    given = [
      f"--{name}"
      for name in (
        "dataset",
        "logits_layer",
        "penultimate_layer",
        "trust_saved_model",
        "validation_size",
        "eval_examples",
      )
      if name in flag_values and flag_values[name].present
    ]
    if given:
      raise UserError(
        f"{', '.join(given)} apply only with --model_file; a workdir's run records its own "
        "data set and model."
      )
    for path in workdirs:  # A missing or unfinished run is answered before TensorFlow starts.
      workdir_lib.require(path)


def main(flag_values: flags.FlagValues) -> None:
  """Runs the command on parsed flags; bad input raises UserError (exit code 2 in cli)."""
  check_source(flag_values)
  cli.start_tensorflow()
  from ls_keras.calibration import report as calibration_report

  if flag_values.model_file:
    summary = calibration_report.calibrate_model_file(
      flag_values.model_file,
      flag_values.dataset,
      flag_values.output_dir,
      data_dir=flag_values.data_dir,
      num_bins=flag_values.num_bins,
      logits_layer=flag_values.logits_layer,
      trust_saved_model=flag_values.trust_saved_model,
      validation_size=flag_values.validation_size,
      eval_examples=flag_values.eval_examples,
      num_resamples=flag_values.num_resamples,
    )
  else:
    summary = calibration_report.calibrate_runs(
      flag_values.workdir,
      flag_values.output_dir,
      flag_values.num_bins,
      flag_values.num_resamples,
    )
  print(summary["table"])
  for warning in summary["warnings"]:
    print(f"Warning: {warning}")
  print(f"Wrote {flag_values.output_dir}/reliability.png, table3.md and calibration.json.")


def run():
  """The console script entry point."""
  cli.run(sys.modules[__name__])


if __name__ == "__main__":
  run()
