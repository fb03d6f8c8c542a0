"""The recipe registry is the one source of truth: flagfiles, presets and flag enums."""

import dataclasses
import glob
import os
import re

import pytest
from absl import flags

from conftest import REPO
from ls_keras import cli
from ls_keras.core import config
from ls_keras.core.errors import UserError
from ls_keras.paper import recipes

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


def test_every_recipe_has_its_flagfile_and_nothing_else_is_there():
  assert {os.path.basename(p)[:-6] for p in FLAGFILES} == set(recipes.RECIPES)


@pytest.mark.parametrize("name", sorted(recipes.RECIPES))
def test_flagfile_is_generated_from_its_recipe_and_parses_back_to_it(name, parse):
  path = os.path.join(REPO, "flags", f"{name}.flags")
  assert open(path).read() == recipes.flagfile(name), (
    "stale flagfile: run python tools/write_flagfiles.py"
  )
  parsed, recipe = dataclasses.asdict(parse(path)), dataclasses.asdict(recipes.RECIPES[name]())
  for key, value in recipe.items():
    assert parsed[key] == (
      pytest.approx(value, rel=1e-5) if isinstance(value, (float, tuple)) else value
    ), key


def test_paper_values_and_command_line_override(parse):
  c = parse(os.path.join(REPO, "flags", "cifar100_resnet56.flags"))
  assert (
    c.model,
    c.train_steps,
    c.lr_boundaries,
    c.loss_scale,
    c.weight_decay,
    c.grad_clip_norm,
    c.nesterov,
  ) == ("resnet56", 64000, (0.5, 0.75), 3.0, 1e-4, 1.0, True)
  assert parse(os.path.join(REPO, "flags", "cifar10_alexnet.flags"), "--alpha=0.1").alpha == 0.1
  assert parse(os.path.join(REPO, "flags", "mnist_fc_teacher.flags")).hidden_units == (1200, 1200)
  assert parse(os.path.join(REPO, "flags", "mnist_fc_student.flags")).hidden_units == (800, 800)


def test_boundaries_are_fractions_that_land_on_the_papers_steps():
  from ls_keras import training

  alexnet = recipes.cifar10_alexnet()
  schedule = training.make_optimizer(alexnet, alexnet.train_steps)._learning_rate  # pylint: disable=protected-access
  assert list(schedule.boundaries) == [130000, 260000]
  resnet = recipes.cifar100_resnet56()
  assert list(training.make_optimizer(resnet, resnet.train_steps)._learning_rate.boundaries) == [
    32000,
    48000,
  ]


def test_preset_flags_and_errors_come_from_the_registries():
  from ls_keras import kd_sweep, reproduce

  for command, registry in ((kd_sweep, recipes.SWEEPS), (reproduce, recipes.REPRODUCTIONS)):
    flag_values = flags.FlagValues()
    command.define_flags(flag_values)
    assert flag_values["preset"].parser.enum_values == list(registry)
  with pytest.raises(UserError, match="choose one of fashion_mnist, quick, cifar10, tiny"):
    recipes.lookup(recipes.SWEEPS, "huge")
  data = recipes.preset_data("/d", "/s")
  for registry in (recipes.SWEEPS, recipes.REPRODUCTIONS):
    for build in registry.values():
      preset = build(data)
      sweep = preset.sweep if hasattr(preset, "sweep") else preset
      configs = [sweep.teacher, sweep.student] + ([preset.mi] if hasattr(preset, "mi") else [])
      assert all(c.data_dir == "/d" and c.fashion_mnist_source == "/s" for c in configs)
      for c in configs:
        config.validate(c)


@pytest.mark.parametrize("name", sorted(recipes.REPRODUCTIONS))
def test_why_a_regime_was_chosen_quotes_no_old_measurement(name):
  """A report prints a preset's `why` beside what it measured: a number written there (an old
  run's T = 3.56) would be printed in every report, whatever that report measured."""
  preset = recipes.REPRODUCTIONS[name](recipes.preset_data())
  why = preset.why.format(temperature="<T>", ratio="<ratio>")
  for text in (why, preset.mi_why):
    assert not re.search(r"\d\.\d", text), text


def test_the_mnist_anecdote_recipes_are_appendix_a5s_optimiser(parse):
  """Rate 1 (0.1 for the last layer), smoothing 0.9/0.1, linear to 0 over 100 epochs, shifts."""
  teacher = parse(os.path.join(REPO, "flags", "mnist_fc_teacher.flags"))
  assert (
    teacher.learning_rate,
    teacher.last_layer_lr_scale,
    teacher.momentum,
    teacher.dampening,
    teacher.nesterov,
    teacher.lr_schedule,
    teacher.lr_boundaries,
    teacher.epochs,
    teacher.augmentation,
    teacher.weight_decay,
  ) == (1.0, 0.1, 0.9, 0.9, False, "linear", (), 100, "shift", 0.0)
  student = parse(os.path.join(REPO, "flags", "mnist_fc_student.flags"))
  assert (student.augmentation, student.dropout, student.grad_clip_norm) == ("none", 0.0, 10.0)
  assert dataclasses.replace(student, augmentation="shift", hidden_units=(1200, 1200)) == (
    dataclasses.replace(teacher, dropout=0.0, grad_clip_norm=10.0)
  )
  for name in set(recipes.RECIPES) - {"mnist_fc_teacher", "mnist_fc_student"}:
    c = recipes.RECIPES[name]()  # Every other recipe trains as before these settings.
    assert (c.lr_schedule, c.dampening, c.last_layer_lr_scale) == ("step", 0.0, 1.0), name
