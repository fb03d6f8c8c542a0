"""The optimizer settings of the paper's MNIST anecdote (Appendix A.5) against hand computations.

Learning rate 1 (0.1 for the last layer), "gradient smoothing" 0.9 x previous + 0.1 x current,
the rate falling linearly to 0: `lr_schedule`, `dampening` and `last_layer_lr_scale`, each of
whose defaults builds the optimizer every other recipe trains with.
"""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from ls_keras import distillation, models, training
from ls_keras.core import config as config_lib
from ls_keras.core.errors import UserError
from ls_keras.training import losses
from conftest import tiny_mlp


def _rate(optimizer, step):
  rate = optimizer._learning_rate  # pylint: disable=protected-access
  return float(rate(step)) if callable(rate) else float(rate)


def test_linear_schedule_falls_from_the_rate_to_zero_at_the_last_step():
  config = config_lib.TrainConfig(learning_rate=0.5, lr_schedule="linear", lr_boundaries=())
  optimizer = training.make_optimizer(config, total_steps=10)
  rates = [_rate(optimizer, s) for s in (0, 1, 5, 9, 10, 25)]
  np.testing.assert_allclose(rates, [0.5, 0.45, 0.25, 0.05, 0.0, 0.0], atol=1e-7)
  # Dampening scales the whole schedule by (1 - d).
  damped = training.make_optimizer(config.replace(dampening=0.9, nesterov=False), total_steps=10)
  np.testing.assert_allclose([_rate(damped, s) for s in (0, 5, 9)], [0.05, 0.025, 0.005], rtol=1e-6)


def test_defaults_build_the_optimizer_every_other_recipe_trains_with():
  """New settings at their defaults: the same Keras SGD, rate and schedule as before them."""
  config = config_lib.TrainConfig(learning_rate=0.05, lr_boundaries=(0.6, 0.8), lr_decay=0.1)
  optimizer = training.make_optimizer(config, total_steps=100)
  assert type(optimizer) is keras.optimizers.SGD
  assert (optimizer.momentum, optimizer.nesterov) == (0.9, True)
  schedule = optimizer._learning_rate  # pylint: disable=protected-access
  assert list(schedule.values) == [0.05, 0.05 * 0.1, 0.05 * 0.1**2]  # Bit for bit.
  plain = training.make_optimizer(config_lib.TrainConfig(), 100)
  assert plain._learning_rate == 0.1  # pylint: disable=protected-access
  assert training.rate_scales(config_lib.TrainConfig(), None, None) == ()


def _np_paper_smoothing(w, gradients, rates, momentum, dampening):
  """Appendix A.5 as written: s = m s + (1 - d) g (s starts at 0), w -= lr_t s."""
  s = np.zeros_like(w)
  for g, lr in zip(gradients, rates):
    s = momentum * s + (1 - dampening) * g
    w = w - lr * s
  return w


def _np_keras_momentum(w, gradients, rates, momentum):
  """Keras' SGD: v = m v - lr_t g, w += v."""
  v = np.zeros_like(w)
  for g, lr in zip(gradients, rates):
    v = momentum * v - lr * g
    w = w + v
  return w


def _apply(optimizer, w0, gradients):
  w = keras.Variable(w0)
  for g in gradients:
    optimizer.apply_gradients([(tf.constant(g), w)])
  return w.numpy()


def test_dampened_momentum_is_the_papers_gradient_smoothing_at_a_constant_rate():
  """Momentum 0.9, dampening 0.9, rate 1: w moves by -1 x (0.9 x previous + 0.1 x current).

  That is plain Keras SGD at rate 0.1 with momentum 0.9, step for step; the first step moves
  w by -0.1 g (the average starts at 0, as the paper's; PyTorch's buffer would start at g).
  """
  rng = np.random.RandomState(0)
  w0 = rng.normal(size=(3, 2)).astype("float32")
  gradients = rng.normal(size=(6, 3, 2)).astype("float32")
  config = config_lib.TrainConfig(learning_rate=1.0, momentum=0.9, dampening=0.9, nesterov=False)
  first = _apply(training.make_optimizer(config, 100), w0, gradients[:1])
  np.testing.assert_allclose(first, w0 - 0.1 * gradients[0], rtol=1e-6)
  ours = _apply(training.make_optimizer(config, 100), w0, gradients)
  paper = _np_paper_smoothing(w0, gradients, [1.0] * 6, 0.9, 0.9)
  np.testing.assert_allclose(ours, paper, rtol=1e-5, atol=1e-6)
  keras_sgd = _apply(keras.optimizers.SGD(0.1, momentum=0.9), w0, gradients)
  np.testing.assert_allclose(ours, keras_sgd, rtol=1e-6, atol=1e-7)


def test_under_the_linear_schedule_each_gradient_keeps_its_own_steps_rate():
  """While the rate falls, the update is Keras' form (v = m v - lr_t (1 - d) g) exactly. The
  paper's form (the current rate times the average) moves less, by about m / (1 - m) /
  (steps left) of the step (make_optimizer's docstring): here under 1% in the first 5% of a
  1000-step run, with a constant gradient (where the two differ only in the rates)."""
  rng = np.random.RandomState(1)
  w0 = rng.normal(size=(4,)).astype("float32")
  gradients = rng.normal(size=(8, 4)).astype("float32")
  config = config_lib.TrainConfig(
    learning_rate=1.0, momentum=0.9, dampening=0.9, nesterov=False, lr_schedule="linear"
  )
  ours = _apply(training.make_optimizer(config, total_steps=8), w0, gradients)
  rates = [1.0 * (1 - t / 8) for t in range(8)]
  keras_form = _np_keras_momentum(w0, gradients, [0.1 * r for r in rates], 0.9)
  np.testing.assert_allclose(ours, keras_form, rtol=1e-5, atol=1e-6)

  ones = np.ones((50, 1), "float32")
  ours = _apply(training.make_optimizer(config, total_steps=1000), np.zeros(1, "float32"), ones)
  paper = _np_paper_smoothing(np.zeros(1), ones, [1 - t / 1000 for t in range(50)], 0.9, 0.9)
  gap = (paper - ours)[0] / -ours[0]  # Both move w down; the paper's form by less.
  assert 0.001 < gap < 0.9 / 0.1 / (1000 - 50)


def _tiny(seed=0):
  return tiny_mlp(8, 1e-2, seed)


def _data():
  rng = np.random.RandomState(0)
  x = rng.uniform(0, 255, (24, 6, 6, 1)).astype("float32")
  y = np.eye(3, dtype="float32")[rng.randint(0, 3, 24)]
  return x, y


@pytest.mark.parametrize("nesterov, dampening", [(False, 0.9), (True, 0.0)])
def test_a_scaled_last_layer_gradient_is_a_last_layer_rate_c_times_lr(
  nesterov, dampening, one_device
):
  """The Loop scales the logits layer's gradient by c; that is training it at rate c x lr.

  The reference trains the same network with two Keras SGD optimizers: rate lr for the hidden
  layers, c x lr for the logits layer (Keras has no per-variable rate). SGD's update is linear
  in the gradient, so the two agree step for step, with momentum, Nesterov, dampening, and
  the weight decay that is a term of the loss (a decoupled decay, as in AdamW, would not).
  """
  config = config_lib.TrainConfig(
    learning_rate=0.5,
    momentum=0.9,
    nesterov=nesterov,
    dampening=dampening,
    last_layer_lr_scale=0.1,
  )
  x, y = _data()
  batches = lambda ctx: tf.data.Dataset.from_tensor_slices((x, y)).batch(8)  # noqa: E731
  with one_device.scope():
    model = _tiny()
    model.compile(
      optimizer=training.make_optimizer(config, 100), loss=losses.label_smoothing_loss(0)
    )
    model.optimizer.build(model.trainable_variables)
  scales = training.rate_scales(config, model, model)
  last = model.get_layer(models.LOGITS).trainable_variables
  assert [c for c, v in zip(scales, model.trainable_variables) if c != 1.0] == [0.1] * len(last)
  training.Loop(model, one_device, rate_scales=scales).train(
    iter(one_device.distribute_datasets_from_function(batches)), 3
  )

  reference = _tiny()
  reference.compile(loss=losses.label_smoothing_loss(0))
  rate = 0.5 * (1 - dampening)
  hidden_sgd = keras.optimizers.SGD(rate, momentum=0.9, nesterov=nesterov)
  last_sgd = keras.optimizers.SGD(0.1 * rate, momentum=0.9, nesterov=nesterov)
  last_ids = {id(v) for v in reference.get_layer(models.LOGITS).trainable_variables}
  for i in range(3):
    xb, yb = x[8 * i : 8 * i + 8], y[8 * i : 8 * i + 8]
    with tf.GradientTape() as tape:
      loss = reference.compute_loss(x=xb, y=yb, y_pred=reference(xb, training=True))
    pairs = list(
      zip(tape.gradient(loss, reference.trainable_variables), reference.trainable_variables)
    )
    hidden_sgd.apply_gradients([(g, v) for g, v in pairs if id(v) not in last_ids])
    last_sgd.apply_gradients([(g, v) for g, v in pairs if id(v) in last_ids])
  for ours, theirs in zip(model.get_weights(), reference.get_weights()):
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
  untouched = _tiny().get_layer(models.LOGITS).get_weights()[0]
  assert not np.allclose(model.get_layer(models.LOGITS).get_weights()[0], untouched)


def test_a_distillers_rate_scales_pick_the_students_logits_layer():
  config = config_lib.TrainConfig(last_layer_lr_scale=0.1)
  teacher, student = _tiny(0), _tiny(1)
  distiller = distillation.Distiller(teacher, student, temperature=2.0)
  scales = training.rate_scales(config, distiller, student)
  assert len(scales) == len(distiller.trainable_variables) == len(student.trainable_variables)
  scaled = {v.path for c, v in zip(scales, distiller.trainable_variables) if c != 1.0}
  assert scaled == {v.path for v in student.get_layer(models.LOGITS).trainable_variables}


@pytest.mark.parametrize(
  "changes, message",
  [
    (dict(optimizer="adam", dampening=0.9), "--dampening=0.9 is not allowed with --optimizer=adam"),
    (dict(optimizer="adam", last_layer_lr_scale=0.1), "--last_layer_lr_scale=0.1 is not allowed"),
    (dict(lr_schedule="linear", lr_boundaries=(0.5,)), "not allowed with --lr_schedule=linear"),
    (dict(dampening=0.9), "--dampening=0.9 is not allowed with --nesterov"),  # Nesterov default.
    (dict(lr_schedule="linear", lr_decay=0.5), "--lr_decay=0.5 is not allowed"),
  ],
)
def test_settings_that_cannot_apply_are_refused(changes, message):
  """Each is allowed alone; together they are refused with the other settings, before a
  workdir is looked at (so a clash with an existing run never hides them), and by the
  optimizer itself for a config built in code."""
  config = dataclasses.replace(config_lib.TrainConfig(), **changes)
  with pytest.raises(UserError, match=message):
    config_lib.validate(config)
  with pytest.raises(UserError, match=message):
    training.make_optimizer(config, 100)
