import dataclasses

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
