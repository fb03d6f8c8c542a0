import dataclasses
import json

import pytest

from ls_keras.core import config
from ls_keras.core.errors import UserError


@pytest.mark.parametrize(
  "changes, message",
  [
    ({"alpha": 1.0}, "--alpha=1.0"),
    ({"alpha": -0.1}, "--alpha=-0.1"),
    ({"dataset": "svhn"}, "--dataset=svhn"),
    ({"model": "vgg"}, "--model=vgg"),
    ({"strategy": "tpu"}, "--strategy=tpu"),
    ({"precision": "float16"}, "--precision=float16"),
    ({"batch_size": 0}, "--batch_size=0"),
    ({"epochs": -1}, "--epochs=-1"),
    ({"train_steps": -5}, "--train_steps=-5"),
    ({"learning_rate": 0.0}, "--learning_rate=0.0"),
    ({"lr_boundaries": (0.75, 0.5)}, "--lr_boundaries=0.75,0.5"),
    ({"lr_boundaries": (0.5, 1.5)}, "--lr_boundaries=0.5,1.5"),
    ({"hidden_units": (0,)}, "--hidden_units=0"),
    ({"mi_classes": (3, 3)}, "--mi_classes=3,3"),
  ],
)
def test_bad_values_are_named_with_what_is_allowed(changes, message):
  with pytest.raises(UserError, match=message.replace("+", r"\+")) as e:
    config.validate(config.TrainConfig(**changes))
  assert "allowed" in str(e.value)


def test_round_trip_through_json_keeps_tuples():
  c = config.TrainConfig(lr_boundaries=(0.5, 0.75), alpha=0.1)
  import json

  assert config.from_dict(config.TrainConfig, json.loads(config.dumps(c))) == c


def test_unknown_settings_are_refused():
  with pytest.raises(UserError, match="another version"):
    config.from_dict(config.TrainConfig, {"alpha": 0.1, "gamma_ray": 3})


@pytest.mark.parametrize(
  "name, value, allowed",
  [
    ("hidden_units", (16384, 16384), True),  # Exactly 2**28 hidden-to-hidden weights.
    ("hidden_units", (16384, 16384, 2), False),
    ("hidden_units", (16385,), False),
    ("hidden_units", (65536, 65536), False),
    ("cpu_devices", 16, True),
    ("cpu_devices", 64, False),
    ("temperature", 0.05, True),
    ("temperature", 1000.0, True),
    ("temperature", 0.049, False),
    ("temperature", 1e-30, False),
    ("temperature", 1001.0, False),
  ],
)
def test_sizes_and_temperatures_are_bounded(name, value, allowed):
  """Bounds that keep a run able to start: memory, progress, and finite soft targets."""
  if allowed:
    config.check_field(name, value)
  else:
    with pytest.raises(UserError, match="not allowed"):
      config.check_field(name, value)


def test_hidden_weights_counts_consecutive_layer_products():
  assert config.hidden_weights((1200,)) == 0
  assert config.hidden_weights((1200, 1200)) == 1200 * 1200
  assert config.hidden_weights((3, 4, 5)) == 3 * 4 + 4 * 5


def test_path_settings_from_flags_are_recorded_absolute(tmp_path, monkeypatch):
  """Relative paths are resolved once, against the directory the command starts in."""
  from absl import flags

  from ls_keras import cli

  monkeypatch.chdir(tmp_path)
  flag_values = flags.FlagValues()
  cli.define_config_flags(config.DistillConfig, flag_values)
  flag_values(["ls_keras", "--data_dir=tfds", "--fashion_mnist_source=idx", "--teacher=../t"])
  c = cli.config_from_flags(config.DistillConfig, flag_values)
  assert (c.data_dir, c.fashion_mnist_source) == (str(tmp_path / "tfds"), str(tmp_path / "idx"))
  assert c.teacher == str(tmp_path.parent / "t")
  marked = {f.name for f in dataclasses.fields(config.DistillConfig) if f.metadata.get("path")}
  assert marked == {"data_dir", "fashion_mnist_source", "teacher"}
  flag_values = flags.FlagValues()
  cli.define_config_flags(config.TrainConfig, flag_values)
  flag_values(["ls_keras"])
  assert cli.config_from_flags(config.TrainConfig, flag_values).data_dir == ""  # TFDS' default.


@pytest.mark.parametrize(
  "change, message",
  [
    ({"alpha": "0.1"}, 'setting "alpha" is "0.1", not a number'),
    ({"alpha": True}, 'setting "alpha" is true, not a number'),
    ({"epochs": 2.5}, 'setting "epochs" is 2.5, not an integer'),
    ({"hidden_units": [16, "a"]}, 'setting "hidden_units" is [16, "a"], not a list of integers'),
    ({"lr_boundaries": 0.5}, 'setting "lr_boundaries" is 0.5, not a list of numbers'),
    ({"dataset": "svhn!"}, 'setting "dataset" is not allowed (--dataset=svhn!'),
    ({"dataset": "npz:"}, 'setting "dataset" is not allowed (--dataset=npz:'),
    ({"alpha": 1.5}, 'setting "alpha" is not allowed (--alpha=1.5'),
    ({"dataset": None}, 'setting "dataset" is null, not a string'),
  ],
)
def test_a_recorded_config_is_checked_setting_by_setting(change, message):
  data = {**json.loads(config.dumps(config.TrainConfig())), **change}
  with pytest.raises(UserError) as e:
    config.check_recorded(config.TrainConfig, data)
  assert message in str(e.value)


def test_a_recorded_config_must_be_whole():
  data = json.loads(config.dumps(config.TrainConfig()))
  config.check_recorded(config.TrainConfig, data)  # As written: fine.
  del data["validation_size"]
  with pytest.raises(UserError, match='lacks the setting "validation_size"'):
    config.check_recorded(config.TrainConfig, data)
  with pytest.raises(UserError, match="not an object"):
    config.check_recorded(config.TrainConfig, [])


def test_a_record_written_before_an_optional_setting_existed_means_its_default():
  data = json.loads(config.dumps(config.TrainConfig()))
  del data["checkpoint_every_steps"]  # Added after workdir format 2.
  config.check_recorded(config.TrainConfig, data)
  assert config.from_dict(config.TrainConfig, data) == config.TrainConfig()
  student = config.DistillConfig(teacher="/t")
  data = json.loads(config.dumps(student))
  for name in ("lr_schedule", "dampening", "last_layer_lr_scale", "teacher_term"):  # A.5's.
    del data[name]
  config.check_recorded(config.DistillConfig, data)
  assert config.from_dict(config.DistillConfig, data) == student


def test_a_misspelt_setting_name_never_skips_its_checks():
  with pytest.raises(KeyError):
    config.check_field("alhpa", 1.5)


def test_each_check_lives_on_its_setting():
  """Adding a setting is one field: its check comes with it (integers get the int32 bound)."""
  fields = {f.name: f for f in dataclasses.fields(config.DistillConfig)}
  assert fields["alpha"].metadata["check"] is not None
  with pytest.raises(UserError, match="at most 2147483647"):
    config.check_field("train_steps", 2**31)
  config.check_field("seed", 2**32 - 1)  # The seed's own bound is wider than int32.
  with pytest.raises(UserError, match="at most 4294967295"):
    config.check_field("seed", 2**32)


def test_runs_recorded_before_the_loss_settings_existed_trained_with_cross_entropy():
  data = json.loads(config.dumps(config.TrainConfig(alpha=0.1)))
  for name in ("loss", "online_ls_mix", "focal_gamma"):
    del data[name]
  config.check_recorded(config.TrainConfig, data)
  assert config.from_dict(config.TrainConfig, data) == config.TrainConfig(alpha=0.1)


@pytest.mark.parametrize(
  "changes, message",
  [
    ({"loss": "focal", "alpha": 0.05}, "--alpha=0.05 is not allowed with --loss=focal"),
    ({"loss": "online_ls", "alpha": 0.1}, "--alpha=0.1 is not allowed with --loss=online_ls"),
    ({"focal_gamma": 2.0}, "--focal_gamma=2 is not allowed with --loss=cross_entropy"),
    ({"loss": "focal", "online_ls_mix": 0.3}, "--online_ls_mix=0.3 is not allowed with"),
  ],
)
def test_contradicting_loss_settings_are_refused_naming_both(changes, message):
  with pytest.raises(UserError, match=message):
    config.validate(config.TrainConfig(**changes))


def test_each_loss_takes_its_own_settings():
  config.validate(config.TrainConfig(alpha=0.1))
  config.validate(config.TrainConfig(loss="online_ls", online_ls_mix=0.3))
  config.validate(config.TrainConfig(loss="focal", focal_gamma=2.0))
  with pytest.raises(UserError, match="distilled student"):
    config.validate(config.DistillConfig(teacher="t", loss="online_ls"))
