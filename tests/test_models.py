import keras
import numpy as np
import pytest

from ls_keras import models

SHAPES = {"inception_v4": (75, 75, 3), "small_cnn": (28, 28, 1), "mlp": (28, 28, 1)}


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_model_names_its_layers_and_takes_a_training_step(name):
  shape = SHAPES.get(name, (32, 32, 3))
  options = models.ModelOptions(weight_decay=1e-4, hidden_units=(16, 8))
  keras.config.set_dtype_policy("mixed_bfloat16")
  try:
    model = models.build_model(name, shape, 5, mean=[100.0] * shape[-1], std=[50.0] * shape[-1], options=options)
  finally:
    keras.config.set_dtype_policy("float32")
  logits_layer = model.get_layer(models.LOGITS)
  assert isinstance(logits_layer, keras.layers.Dense) and logits_layer.use_bias
  assert logits_layer.activation is keras.activations.linear
  assert model.get_layer(models.PENULTIMATE).output.shape[-1] == logits_layer.kernel.shape[0]
  assert model.losses, "weight decay must add regularisation losses"
  x = np.random.RandomState(0).uniform(0, 255, (2, *shape)).astype("float32")
  y = np.eye(5, dtype="float32")[[1, 3]]
  model.compile(keras.optimizers.SGD(0.01), keras.losses.CategoricalCrossentropy(from_logits=True))
  before = [w.copy() for w in model.get_weights()]
  loss = model.train_on_batch(x, y)
  assert np.isfinite(loss)
  out = model(x)
  assert out.dtype == "float32" and out.shape == (2, 5)
  assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_mlp_uses_the_requested_hidden_sizes():
  model = models.build_model("mlp", (28, 28, 1), 10, mean=[0.0], std=[1.0],
                             options=models.ModelOptions(hidden_units=(1200, 1200)))
  dense = [l for l in model.layers if isinstance(l, keras.layers.Dense)]
  assert [l.units for l in dense] == [1200, 1200, 10]


def test_alexnet_matches_the_tutorial_network():
  model = models.build_model("alexnet", (32, 32, 3), 10, mean=[0.0] * 3, std=[1.0] * 3)
  convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
  dense = [l.units for l in model.layers if isinstance(l, keras.layers.Dense)]
  assert [(c.filters, c.kernel_size) for c in convs] == [(64, (5, 5)), (64, (5, 5))]
  assert dense == [384, 192, 10]
  assert sum(isinstance(l, models.LocalResponseNormalization) for l in model.layers) == 2


def test_resnet56_has_56_weighted_layers():
  model = models.build_model("resnet56", (32, 32, 3), 100, mean=[0.0] * 3, std=[1.0] * 3)
  convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D) and l.kernel_size == (3, 3)]
  assert len(convs) + 1 == 56  # 55 3x3 convolutions plus the logits layer (1x1 shortcuts excluded).
