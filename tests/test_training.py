import keras
import numpy as np
import pytest
import tensorflow as tf

from ls_keras.core import config as config_lib
from ls_keras import training
from ls_keras.training import losses
from ls_keras.core.errors import UserError
from conftest import tiny_mlp


def _batches(per_replica):
  rng = np.random.RandomState(0)
  x = rng.uniform(0, 255, (48, 6, 6, 1)).astype("float32")
  y = np.eye(3, dtype="float32")[rng.randint(0, 3, 48)]
  return lambda ctx: tf.data.Dataset.from_tensor_slices((x, y)).batch(
    ctx.get_per_replica_batch_size(per_replica) if ctx else per_replica
  )


def _tiny_mlp():
  """A 16-unit MLP on 6x6 inputs with weight decay 1e-2 (built in the caller's strategy scope)."""
  return tiny_mlp(16, 1e-2)


def _train(strategy, steps=3):
  keras.utils.set_random_seed(1)
  config = config_lib.TrainConfig(
    learning_rate=0.1, weight_decay=1e-2, grad_clip_norm=0.5, alpha=0.1, loss_scale=3.0
  )
  with strategy.scope():
    model = _tiny_mlp()
    model.compile(
      optimizer=training.make_optimizer(config, 100),
      loss=losses.label_smoothing_loss(0.1),
      loss_weights=3.0,
    )
    model.optimizer.build(model.trainable_variables)
  loop = training.Loop(model, strategy, clip_norm=config.grad_clip_norm)
  iterator = iter(strategy.distribute_datasets_from_function(_batches(8)))
  logs = loop.train(iterator, steps)
  return logs, [w.copy() for w in model.get_weights()]


def test_two_replicas_give_the_same_loss_and_updates_as_one_device(
  one_device, mirrored, cpu_devices
):
  """With clipping active (norm 0.5 binds here): clipping must see the global gradient."""
  assert len(cpu_devices) == 2
  one_logs, one_weights = _train(one_device)
  two_logs, two_weights = _train(mirrored)
  assert one_logs["loss"] == pytest.approx(two_logs["loss"], rel=1e-5)
  assert one_logs["accuracy"] == pytest.approx(two_logs["accuracy"])
  for a, b in zip(one_weights, two_weights):
    np.testing.assert_allclose(a, b, atol=1e-5)


def _train_online_ls(strategy, tmp_path):
  """3 steps of online LS, its epoch end, 3 more; the state saved between (mid-epoch)."""
  keras.utils.set_random_seed(1)
  with strategy.scope():
    model = _tiny_mlp()
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=losses.OnlineLabelSmoothing(3, 0.5))
    model.optimizer.build(model.trainable_variables)
  loop, loss = training.Loop(model, strategy), model.loss
  iterator = iter(strategy.distribute_datasets_from_function(_batches(8)))
  first = loop.train(iterator, 3)
  counted = float(np.sum(loss.counts.numpy()))  # Read outside strategy.run: every replica's.
  loss.end_epoch()
  matrix = loss.soft_labels.numpy().copy()
  second = loop.train(iterator, 3)
  saved = tf.train.Checkpoint(loss=loss.variables).write(
    str(tmp_path / strategy.__class__.__name__)
  )
  sums = [v.numpy().copy() for v in loss.variables]
  return first, counted, matrix, second, sums, saved, [w.copy() for w in model.get_weights()]


def test_online_ls_state_is_the_same_on_two_replicas_as_on_one(one_device, mirrored, tmp_path):
  """The per-class sums of correct predictions add up over replicas (SUM aggregation), so S,
  the losses and the updates of the second epoch agree with one device; the state restores
  into another number of replicas."""
  one = _train_online_ls(one_device, tmp_path)
  two = _train_online_ls(mirrored, tmp_path)
  for logs_one, logs_two in ((one[0], two[0]), (one[3], two[3])):
    assert logs_one["loss"] == pytest.approx(logs_two["loss"], rel=1e-5)
    assert logs_one["accuracy"] == pytest.approx(logs_two["accuracy"])
  # Every correct example of the 3 steps of 8 is counted once: the loop's own accuracy.
  assert one[1] == two[1] == pytest.approx(one[0]["accuracy"] * 24)
  assert one[1] > 0
  np.testing.assert_allclose(two[2], one[2], atol=1e-6)
  np.testing.assert_allclose(two[2].sum(-1), 1.0, rtol=1e-5)
  for a, b in zip(one[4] + one[6], two[4] + two[6]):
    np.testing.assert_allclose(a, b, atol=1e-5)
  with one_device.scope():
    restored = losses.OnlineLabelSmoothing(3, 0.5)
  tf.train.Checkpoint(loss=restored.variables).read(two[5]).assert_existing_objects_matched()
  for a, b in zip(restored.variables, two[4]):
    np.testing.assert_allclose(a.numpy(), b, atol=1e-6)


def test_loss_is_label_smoothed_cross_entropy_times_scale_plus_decay(one_device):
  """The loss the loop reports for one step equals the formula on the initial weights."""
  keras.utils.set_random_seed(1)
  strategy = one_device
  with strategy.scope():
    model = _tiny_mlp()
    model.compile(
      optimizer=keras.optimizers.SGD(0.0), loss=losses.label_smoothing_loss(0.2), loss_weights=3.0
    )
    model.optimizer.build(model.trainable_variables)
  x, y = next(iter(_batches(8)(None)))
  dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
  kernels = [layer.kernel for layer in dense]
  targets = np.asarray(y) * (1 - 0.2) + 0.2 / 3  # The paper's smoothed targets, K = 3.
  log_p = tf.nn.log_softmax(model(x), axis=-1).numpy()
  expected = 3.0 * float(np.mean(-(targets * log_p).sum(-1)))
  expected += sum(1e-2 / 2 * float(tf.reduce_sum(k**2)) for k in kernels)
  logs = training.Loop(model, strategy).train(
    iter(strategy.distribute_datasets_from_function(_batches(8))), 1
  )
  assert logs["loss"] == pytest.approx(expected, rel=1e-5)


def test_schedule_chunks_pause_at_steps_per_execution_and_mi_points():
  schedule = training.Schedule(
    steps_per_epoch=10, total_steps=25, steps_per_execution=4, pause_every=(6,)
  )
  assert schedule.epochs == 3
  assert schedule.chunks(0) == [4, 2, 4]  # Pauses at step 6.
  assert schedule.chunks(1) == [2, 4, 2, 2]  # 10-12, 12-16, 16-18 (pause at 18), 18-20.
  assert schedule.chunks(2) == [4, 1]  # Steps 20-24, 24-25 (end of training).


def test_piecewise_learning_rate_follows_boundaries():
  config = config_lib.TrainConfig(learning_rate=0.1, lr_boundaries=(0.2, 0.4), lr_decay=0.1)
  schedule = training.make_optimizer(config, total_steps=10)._learning_rate  # pylint: disable=protected-access
  assert [round(float(schedule(s)), 6) for s in (0, 2, 3, 4, 9)] == [0.1, 0.1, 0.01, 0.01, 0.001]
  with pytest.raises(
    UserError, match="fall on steps"
  ):  # 0.2 and 0.4 of a 3-step run: the same step.
    training.make_optimizer(config, total_steps=3)


def test_schedule_pauses_for_every_callback_that_asks():
  class Every:
    def __init__(self, steps):
      self.every_steps = steps

  config = config_lib.TrainConfig(batch_size=10, epochs=1, steps_per_execution=100)
  schedule = training.make_schedule(
    config, train_size=100, replicas=1, callbacks=[Every(4), Every(6), object()]
  )
  assert schedule.chunks(0) == [4, 2, 2, 2]  # Pauses at steps 4, 6 and 8, then the epoch's end.


@pytest.mark.parametrize(
  "batch, replicas, message", [(7, 2, "multiple of 2"), (200, 1, "exceeds the 100")]
)
def test_schedule_refuses_batches_the_run_cannot_use(batch, replicas, message):
  config = config_lib.TrainConfig(batch_size=batch)
  with pytest.raises(UserError, match=message):
    training.make_schedule(config, train_size=100, replicas=replicas)


def test_a_run_asking_for_the_mutual_information_without_its_callback_is_refused(
  fashion_data_dir, tmp_path
):
  """training imports no analysis package: the caller passes the MI callback; a library
  call that asks for the estimate but forgets it is told how, before anything is written."""
  from ls_keras.core import config as config_lib

  config = config_lib.TrainConfig(
    model="mlp",
    hidden_units=(8,),
    epochs=1,
    train_examples=512,
    eval_examples=200,
    validation_size=1000,
    data_dir=fashion_data_dir,
    precision="float32",
    strategy="one_device",
    mi_every_steps=2,
    mi_examples_per_class=20,
  )
  with pytest.raises(ValueError, match="callback_for_run"):
    training.train_and_evaluate(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()
