"""Calibration of trained runs: `python -m ls_keras.calibrate --workdir=RUN [--workdir=RUN ...]`.

Writes calibration.json and reliability.png into each run (and the diagram into its
TensorBoard), plus a joint reliability diagram and a Table 3 in --output_dir.
"""

from absl import flags

from ls_keras import cli

flags.DEFINE_multi_string("workdir", [], "A finished training run (repeat for several).")
flags.DEFINE_string("output_dir", "workdirs/calibration", "Where the joint diagram and table go.")
flags.DEFINE_integer("num_bins", 15, "Equal-width confidence bins for ECE (the paper: 15).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from ls_keras import calibration_report
  summary = calibration_report.calibrate_runs(FLAGS.workdir, FLAGS.output_dir, FLAGS.num_bins)
  print(summary["table"])
  print(f"Wrote {FLAGS.output_dir}/reliability.png, table3.md and calibration.json.")


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
