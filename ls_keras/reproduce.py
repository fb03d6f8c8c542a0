"""The main job: `python -m ls_keras.reproduce [--preset=fashion_mnist]`.

Plans and runs everything the paper's claims need at the preset's scale (Table 2 seeds,
the Table 3 alpha grid, Figures 1, 2, 5, 6 and the distillation anecdote), then writes
report/index.md and report/index.html under --root. A second call reuses finished work.
"""

import sys

from absl import flags

from ls_keras import cli
from ls_keras.paper import recipes


def define_flags(flag_values: flags.FlagValues) -> None:
  fv = {"flag_values": flag_values}
  flags.DEFINE_enum("preset", "fashion_mnist", list(recipes.REPRODUCTIONS), recipes.describe(recipes.REPRODUCTIONS),
                    **fv)
  flags.DEFINE_string("root", "workdirs/reproduce", "Folder for every run and the report.", **fv)
  flags.DEFINE_string("data_dir", "", "TFDS data directory (empty: TFDS' default).", **fv)
  flags.DEFINE_string("fashion_mnist_source", "", "Folder with the Fashion-MNIST IDX files (empty: Debian's).", **fv)


def main(flag_values: flags.FlagValues) -> None:
  from ls_keras.paper import reproduce as reproduce_lib
  reproduce_lib.reproduce(flag_values.preset, flag_values.root, flag_values.data_dir,
                             flag_values.fashion_mnist_source)


def run():
  cli.run(sys.modules[__name__])


if __name__ == "__main__":
  run()
