"""Figure 6: `python -m ls_keras.mutual_info --workdir=RUN_A0 --workdir=RUN_LS`.

Plots the I(X; logit difference) series that training recorded (train with
--mi_every_steps=N), or with --recompute estimates it afresh from each run's checkpoints.
"""

from absl import flags

from ls_keras import cli

flags.DEFINE_multi_string("workdir", [], "A finished training run (repeat for several).")
flags.DEFINE_string("output_dir", "workdirs/mutual_information", "Where the plot and JSON go.")
flags.DEFINE_bool("recompute", False, "Estimate afresh from the runs' saved checkpoints.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from ls_keras import mutual_info_report
  results = mutual_info_report.plot_runs(FLAGS.workdir, FLAGS.output_dir, FLAGS.recompute)
  for path, series in results.items():
    print(f"{path}: " + ", ".join(f"step {p['step']}: {p['mi']:.3f}" for p in series))
  print(f"Wrote {FLAGS.output_dir}/mutual_information.png and mutual_information.json.")


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
