"""Finding the logits and penultimate features of Keras classifiers not built by ls_keras.

The recovered logits are compared with an independent computation: the log of the model's
own softmax output, which equals the logits up to a constant per row (so both are centred).
"""

import keras
import numpy as np
import pytest

from ls_keras import models, projection
from ls_keras.core.errors import UserError
from ls_keras.models import heads

X = np.random.RandomState(0).uniform(0, 255, (16, 6, 6, 1)).astype("float32")


def _centred(z):
  return z - z.mean(1, keepdims=True)


def _softmax_dense_model():
  """Sequential, raw pixels in, softmax activation on its last Dense layer."""
  keras.utils.set_random_seed(0)
  return keras.Sequential(
    [
      keras.Input((6, 6, 1)),
      keras.layers.Rescaling(1 / 255.0),
      keras.layers.Flatten(),
      keras.layers.Dense(8, activation="relu"),
      keras.layers.Dense(4, activation="softmax"),
    ]
  )


def _softmax_layer_model(layer):
  """Functional: a linear Dense layer, then a separate softmax layer."""
  keras.utils.set_random_seed(1)
  inputs = keras.Input((6, 6, 1))
  x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255.0)(inputs))
  x = keras.layers.Dense(8, activation="tanh", name="hidden")(x)
  x = keras.layers.Dense(4, name="scores")(x)
  return keras.Model(inputs, layer(x))


@pytest.mark.parametrize(
  "build",
  [
    _softmax_dense_model,
    lambda: _softmax_layer_model(keras.layers.Softmax(name="probs")),
    lambda: _softmax_layer_model(keras.layers.Activation("softmax", name="probs")),
  ],
  ids=["dense_softmax", "softmax_layer", "activation_softmax"],
)
def test_a_final_softmax_is_undone_the_logits_are_the_pre_softmax_values(build):
  model = build()
  probs = keras.ops.convert_to_numpy(model(X))
  head = heads.find_head(model)
  logits = head.logits(X)
  assert logits.shape == (16, 4)
  assert not np.allclose(logits.sum(1), 1.0)  # Not probabilities...
  # ... but the values whose softmax the model outputs: log p = z - logsumexp(z).
  np.testing.assert_allclose(_centred(logits), _centred(np.log(probs)), rtol=1e-4, atol=1e-4)
  assert heads.ends_in_softmax(model) is not None
  # The templates give the same logits from the penultimate features (paper Section 2).
  features, templates = projection.extract(model)
  activations = projection.penultimate(features, X)
  assert activations.shape == (16, 8)
  np.testing.assert_allclose(projection.augment(activations) @ templates.T, logits, atol=1e-5)


def test_a_linear_last_dense_layer_gives_its_output():
  keras.utils.set_random_seed(2)
  model = keras.Sequential(
    [keras.Input((6, 6, 1)), keras.layers.Flatten(), keras.layers.Dense(3, use_bias=False)]
  )
  head = heads.find_head(model)
  np.testing.assert_allclose(head.logits(X), keras.ops.convert_to_numpy(model(X)), rtol=1e-5)
  assert heads.ends_in_softmax(model) is None
  assert head.templates.shape == (3, 6 * 6 + 1) and not head.templates[:, -1].any()


def test_ls_keras_models_use_their_named_layers():
  model = models.build_model("mlp", (6, 6, 1), 5, mean=[0.0], std=[255.0])
  head = heads.find_head(model)
  assert "'logits'" in head.description and "'penultimate'" in head.description
  np.testing.assert_allclose(head.logits(X), keras.ops.convert_to_numpy(model(X)), atol=1e-4)


def test_named_layers_are_used():
  model = _softmax_layer_model(keras.layers.Softmax(name="probs"))
  head = heads.find_head(model, penultimate="hidden", logits="scores")
  scores = keras.Model(model.inputs[0], model.get_layer("scores").output)
  np.testing.assert_allclose(head.logits(X), keras.ops.convert_to_numpy(scores(X)), atol=1e-5)
  via_softmax = heads.find_head(model, logits="probs")  # The Softmax layer's input.
  np.testing.assert_allclose(via_softmax.logits(X), head.logits(X), atol=1e-5)


@pytest.mark.parametrize(
  "kwargs, message",
  [
    ({"logits": "nope"}, "--logits_layer=nope is not a layer of the model.*hidden, scores"),
    ({"penultimate": "nope"}, "--penultimate_layer=nope is not a layer"),
    ({"penultimate": "flatten_x"}, "do not feed the logits layer 'scores'"),
  ],
)
def test_bad_layer_names_are_clear_errors(kwargs, message):
  keras.utils.set_random_seed(3)
  inputs = keras.Input((6, 6, 1))
  flat = keras.layers.Flatten(name="flatten_x")(inputs)
  hidden = keras.layers.Dense(8, name="hidden")(flat)
  model = keras.Model(inputs, keras.layers.Dense(4, name="scores")(hidden))
  with pytest.raises(UserError, match=message):
    heads.find_head(model, **kwargs)


def test_a_sigmoid_head_is_not_taken_for_logits():
  model = keras.Sequential(
    [keras.Input((6, 6, 1)), keras.layers.Flatten(), keras.layers.Dense(3, activation="sigmoid")]
  )
  with pytest.raises(UserError, match="activation 'sigmoid': its outputs are not logits"):
    heads.find_head(model)


def test_a_model_without_dense_layers_needs_a_named_logits_layer():
  model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.GlobalAveragePooling2D()])
  with pytest.raises(UserError, match="no Dense layer"):
    heads.find_head(model)
