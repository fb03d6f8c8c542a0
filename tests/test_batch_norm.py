"""models/batch_norm.py: the fused training kernel computes what Keras' BatchNormalization does."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from ls_keras import models
from ls_keras.models import export


def _compiled(*models_):
  """The models compiled alike: SGD with momentum, cross-entropy with label smoothing 0.1."""
  for model in models_:
    model.compile(
      optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
      loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
    )
    model.optimizer.build(model.trainable_variables)
  return models_


def _pair(policy):
  """ResNet-56 with fused layers, and the same network and weights with Keras' own."""
  keras.config.set_dtype_policy(policy)
  try:
    keras.utils.set_random_seed(0)
    fused = models.build_model("resnet56", (32, 32, 3), 10, mean=[127.0] * 3, std=[64.0] * 3)
    plain = models.to_plain_keras(fused)
  finally:
    keras.config.set_dtype_policy("float32")
  assert any(isinstance(layer, models.FusedBatchNormalization) for layer in fused.layers)
  assert not any(isinstance(layer, models.FusedBatchNormalization) for layer in plain.layers)
  assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in plain.layers) == 57
  return _compiled(fused, plain)


def _small(policy):
  """A conv net with two fused layers (one without scale), and its plain-Keras twin."""
  keras.config.set_dtype_policy(policy)
  try:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.ReLU()(models.FusedBatchNormalization()(x))
    x = keras.layers.Conv2D(5, 3, padding="same", use_bias=False)(x)
    x = keras.layers.ReLU()(models.FusedBatchNormalization(scale=False)(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    fused = keras.Model(inputs, keras.layers.Dense(4, dtype="float32")(x))
    plain = models.to_plain_keras(fused)
  finally:
    keras.config.set_dtype_policy("float32")
  return _compiled(fused, plain)


def _step(model, x, y):
  with tf.GradientTape() as tape:
    logits = model(x, training=True)
    loss = model.compute_loss(x=x, y=y, y_pred=logits, training=True)
  gradients = tape.gradient(loss, model.trainable_variables)
  model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
  return float(loss)


@pytest.mark.parametrize("policy, tolerance", [("float32", 1e-5), ("mixed_bfloat16", 2e-2)])
def test_one_training_step_matches_keras_batch_normalization(policy, tolerance):
  """Same loss, same updated weights and moving statistics, to the precision's rounding."""
  fused, plain = _small(policy)
  rng = np.random.RandomState(0)
  x = tf.constant(rng.normal(100, 50, (32, 8, 8, 3)).astype(np.float32))
  y = tf.one_hot(rng.randint(0, 4, 32), 4)
  losses = [[_step(model, x, y) for _ in range(2)] for model in (fused, plain)]
  np.testing.assert_allclose(losses[0], losses[1], rtol=tolerance)
  for a, b in zip(fused.weights, plain.weights):
    assert a.path.split("/")[-1] == b.path.split("/")[-1]
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=tolerance, atol=tolerance, err_msg=a.path)
  assert not np.allclose(fused.weights[1].numpy(), 1.0)  # Trained: gamma moved.


@pytest.mark.parametrize("policy, tolerance", [("float32", 1e-5), ("mixed_bfloat16", 1e-2)])
def test_resnet56_loss_in_training_mode_matches_keras(policy, tolerance):
  """The whole network forward in training mode (batch statistics in all 57 layers)."""
  fused, plain = _pair(policy)
  rng = np.random.RandomState(0)
  x = tf.constant(rng.randint(0, 256, (16, 32, 32, 3)).astype(np.float32))
  y = tf.one_hot(rng.randint(0, 10, 16), 10)
  losses = [
    float(model.compute_loss(x=x, y=y, y_pred=model(x, training=True), training=True))
    for model in (fused, plain)
  ]
  assert losses[0] == pytest.approx(losses[1], rel=tolerance)


def test_inference_is_keras_own_and_unchanged_by_the_conversion():
  fused, plain = _pair("float32")
  x = tf.constant(np.random.RandomState(1).randint(0, 256, (4, 32, 32, 3)).astype(np.float32))
  np.testing.assert_array_equal(fused(x, training=False), plain(x, training=False))


def test_the_exported_model_loads_in_plain_keras_with_the_same_logits(tmp_path):
  fused, _ = _pair("float32")
  x = np.random.RandomState(2).randint(0, 256, (4, 32, 32, 3)).astype(np.float32)
  expected = fused(x, training=False).numpy()
  export.export_model(fused, str(tmp_path / "model.keras"), str(tmp_path / "saved_model"))
  np.save(tmp_path / "x.npy", x)
  script = (
    "import sys, numpy as np, keras\n"
    "m = keras.saving.load_model(sys.argv[1], safe_mode=True)\n"
    "assert 'ls_keras' not in sys.modules\n"
    "print(type(m.get_layer(index=5)).__module__)\n"
    "np.save(sys.argv[3], m(np.load(sys.argv[2]), training=False))\n"
  )
  result = subprocess.run(
    [sys.executable, "-c", script, tmp_path / "model.keras", tmp_path / "x.npy", tmp_path / "y"],
    capture_output=True,
    text=True,
    cwd=str(tmp_path),
    env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""},
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-5, atol=1e-5)
