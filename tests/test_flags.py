"""Every flagfile parses into a valid config with the paper's values."""

import glob
import os

import pytest
from absl import flags

from conftest import REPO
from ls_keras import cli
from ls_keras.core import config

FLAGFILES = sorted(glob.glob(os.path.join(REPO, "flags", "*.flags")))


@pytest.fixture(scope="module")
def parse():
  flag_values = flags.FlagValues()
  cli.define_config_flags(config.TrainConfig, flag_values)

  def parse_file(path, *extra):
    flag_values.unparse_flags()
    flag_values(["prog", f"--flagfile={path}", *extra])
    return cli.config_from_flags(config.TrainConfig, flag_values)
  return parse_file


def test_there_is_a_flagfile_per_paper_experiment():
  names = {os.path.basename(p)[:-6] for p in FLAGFILES}
  assert names >= {"cifar10_alexnet", "cifar100_resnet56", "imagenet_inception_v4", "mnist_fc_teacher",
                   "mnist_fc_student", "fashion_mnist"}


@pytest.mark.parametrize("path", FLAGFILES, ids=os.path.basename)
def test_flagfile_parses_to_a_valid_config(parse, path):
  parse(path)


def test_paper_values_and_command_line_override(parse):
  c = parse(os.path.join(REPO, "flags", "cifar100_resnet56.flags"))
  assert (c.model, c.train_steps, c.lr_boundaries, c.loss_scale, c.weight_decay, c.grad_clip_norm, c.nesterov) == (
      "resnet56", 64000, (32000, 48000), 3.0, 1e-4, 1.0, True)
  assert parse(os.path.join(REPO, "flags", "cifar10_alexnet.flags"), "--alpha=0.1").alpha == 0.1
  teacher = parse(os.path.join(REPO, "flags", "mnist_fc_teacher.flags"))
  assert teacher.hidden_units == (1200, 1200)
  assert parse(os.path.join(REPO, "flags", "mnist_fc_student.flags")).hidden_units == (800, 800)
