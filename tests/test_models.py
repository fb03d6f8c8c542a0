import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from ls_keras import models

SHAPES = {"inception_v4": (75, 75, 3), "small_cnn": (28, 28, 1), "mlp": (28, 28, 1)}


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_model_names_its_layers_and_takes_a_training_step(name):
  shape = SHAPES.get(name, (32, 32, 3))
  options = models.ModelOptions(weight_decay=1e-4, hidden_units=(16, 8))
  model = models.build_model(
    name, shape, 5, mean=[100.0] * shape[-1], std=[50.0] * shape[-1], options=options
  )
  logits_layer = model.get_layer(models.LOGITS)
  assert isinstance(logits_layer, keras.layers.Dense) and logits_layer.use_bias
  assert logits_layer.activation is keras.activations.linear
  assert model.get_layer(models.PENULTIMATE).output.shape[-1] == logits_layer.kernel.shape[0]
  assert model.losses, "weight decay must add regularisation losses"
  x = np.random.RandomState(0).uniform(0, 255, (2, *shape)).astype("float32")
  y = np.eye(5, dtype="float32")[[1, 3]]
  before = [w.copy() for w in model.get_weights()]
  with tf.GradientTape() as tape:  # One eager step: tracing inception_v4 would take 10 s.
    loss = keras.losses.CategoricalCrossentropy(from_logits=True)(y, model(x, training=True))
    loss += sum(model.losses)
  gradients = tape.gradient(loss, model.trainable_variables)
  keras.optimizers.SGD(0.01).apply_gradients(zip(gradients, model.trainable_variables))
  assert np.isfinite(float(loss))
  out = model(x)
  assert out.dtype == "float32" and out.shape == (2, 5)
  assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_mlp_uses_the_requested_hidden_sizes():
  model = models.build_model(
    "mlp",
    (28, 28, 1),
    10,
    mean=[0.0],
    std=[1.0],
    options=models.ModelOptions(hidden_units=(1200, 1200)),
  )
  dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
  assert [layer.units for layer in dense] == [1200, 1200, 10]


def test_alexnet_matches_the_tutorial_network():
  model = models.build_model("alexnet", (32, 32, 3), 10, mean=[0.0] * 3, std=[1.0] * 3)
  convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
  dense = [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]
  assert [(c.filters, c.kernel_size) for c in convs] == [(64, (5, 5)), (64, (5, 5))]
  assert dense == [384, 192, 10]
  assert sum(type(op).__name__ == "Power" for op in model.operations) == 2  # Two LRNs.


@pytest.mark.parametrize("channels, scale", [(16, 30.0), (64, 3000.0)])
def test_local_response_normalization_equals_tensorflows(channels, scale):
  """Also where large squares make the running sum's differences lose digits (AlexNet's 64
  channels, activations in the thousands)."""
  x = np.random.RandomState(0).normal(0, scale, (2, 5, 5, channels)).astype("float32")
  inputs = keras.Input((5, 5, channels))
  ours = keras.Model(inputs, models.local_response_normalization(inputs))(x)
  expected = tf.nn.local_response_normalization(x, 4, 1.0, 0.001 / 9.0, 0.75)
  np.testing.assert_allclose(ours, expected, rtol=5e-5, atol=1e-3)


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_models_as_saved_use_only_keras_own_layers_and_ops(name):
  """So that model.keras loads in plain Keras, without ls_keras (see the fresh-process test):
  the fused batch norm used for training is saved as Keras' own."""
  shape = SHAPES.get(name, (32, 32, 3))
  model = models.build_model(name, shape, 5, mean=[0.0] * shape[-1], std=[1.0] * shape[-1])
  model = models.to_plain_keras(model)
  foreign = {
    type(op).__module__ for op in model.operations if not type(op).__module__.startswith("keras.")
  }
  assert not foreign


def test_logits_stay_float32_under_a_mixed_policy():
  keras.config.set_dtype_policy("mixed_bfloat16")
  try:
    model = models.build_model("alexnet", (32, 32, 3), 5, mean=[0.0] * 3, std=[1.0] * 3)
  finally:
    keras.config.set_dtype_policy("float32")
  out = model(np.zeros((2, 32, 32, 3), np.float32))
  assert model.get_layer(models.PENULTIMATE).compute_dtype == "bfloat16" and out.dtype == "float32"


PLAIN_KERAS_LOAD = r"""
import os, sys, numpy as np, keras
folder = sys.argv[1]
for name in sys.argv[2:]:
  # As the README says: plain Keras, safe mode.
  model = keras.saving.load_model(os.path.join(folder, name + ".keras"), safe_mode=True)
  x = np.load(os.path.join(folder, name + ".x.npy"))
  np.save(os.path.join(folder, name + ".y.npy"), model(x, training=False).numpy())
assert not any(m.startswith("ls_keras") for m in sys.modules), "plain Keras only"
"""


@pytest.mark.slow
def test_saved_models_load_in_plain_keras_in_a_fresh_process(tmp_path):
  names = (
    "alexnet",
    "mlp",
    "resnet56",
    "small_cnn",
  )  # inception_v4: 170 MB; its layers are checked above.
  expected = {}
  for name in names:
    shape = SHAPES.get(name, (32, 32, 3))
    model = models.build_model(name, shape, 5, mean=[100.0] * shape[-1], std=[50.0] * shape[-1])
    x = np.random.RandomState(0).uniform(0, 255, (4, *shape)).astype("float32")
    models.to_plain_keras(model).save(tmp_path / f"{name}.keras")  # As export_model does.
    np.save(tmp_path / f"{name}.x.npy", x)
    expected[name] = model(x, training=False).numpy()
  result = subprocess.run(
    [sys.executable, "-c", PLAIN_KERAS_LOAD, str(tmp_path), *names],
    cwd=tmp_path,
    capture_output=True,
    text=True,
    env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
  )
  assert result.returncode == 0, result.stderr[-3000:]
  for name in names:
    np.testing.assert_allclose(
      np.load(tmp_path / f"{name}.y.npy"), expected[name], rtol=1e-5, atol=1e-5
    )


def test_the_settings_know_every_registered_model_without_importing_it():
  from ls_keras.core import config

  assert set(config.MODEL_NAMES) == set(models.MODELS)


@pytest.mark.parametrize("dropout, layers_expected", [(0.0, 0), (0.3, 1)])
def test_inception_v4_takes_its_dropout_from_the_setting(dropout, layers_expected):
  """--dropout=0 means none: it used to fall back to 0.2 silently."""
  model = models.build_model(
    "inception_v4",
    (75, 75, 3),
    10,
    mean=[0.0] * 3,
    std=[1.0] * 3,
    options=models.ModelOptions(dropout=dropout),
  )
  rates = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
  assert rates == [dropout] * layers_expected
