"""The main job: `python -m ls_keras.reproduce [--preset=fashion_mnist]`.

Plans and runs everything the paper's claims need at the preset's scale (Table 2 seeds,
the Table 3 alpha grid, Figures 1, 2, 5, 6 and the distillation anecdote), then writes
report/index.md and report/index.html under --root. A second call reuses finished work.
"""

from absl import flags

from ls_keras import cli

flags.DEFINE_enum("preset", "fashion_mnist", ["fashion_mnist", "cifar10", "cifar100", "tiny"],
                  "fashion_mnist: ~15 min on 2 CPU cores; cifar10/cifar100: the paper's recipes (GPUs, prepared "
                  "data); tiny: seconds, for tests.")
flags.DEFINE_string("root", "workdirs/reproduce", "Folder for every run and the report.")
flags.DEFINE_string("data_dir", "", "TFDS data directory (empty: TFDS' default).")
flags.DEFINE_string("fashion_mnist_source", "", "Folder with the Fashion-MNIST IDX files (empty: Debian's).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from ls_keras import reproduce_report
  reproduce_report.reproduce(FLAGS.preset, FLAGS.root, FLAGS.data_dir, FLAGS.fashion_mnist_source)


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
