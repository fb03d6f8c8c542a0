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
