"""Throughput of ls_keras' training path against plain Keras, side by side in one process.

  python tools/benchmark.py            # the full table (a few minutes on 2 CPU cores)
  python tools/benchmark.py --quick    # a smoke run

Rows: training images/s for the default CNN, alexnet and resnet56 on 32x32 synthetic data,
ours (ls_keras' Loop, its input pipeline with augmentation, --precision default) against
what a user writes by hand (model.fit on in-memory float32 arrays, float32, same model and
batch); the input pipeline alone; ECE plus a temperature fit on 10k x 100 logits; and test
accuracy of both paths after the same training on real Fashion-MNIST (equal accuracy).
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from ls_keras import calibration, data, losses, models, training  # noqa: E402
from ls_keras import config as config_lib  # noqa: E402

SPEC = data.DatasetSpec("synthetic", (32, 32, 3), (127.0,) * 3, (64.0,) * 3, "crop_flip")


def synthetic_splits(n: int, num_classes: int = 10) -> data.Splits:
  rng = np.random.RandomState(0)
  images = rng.randint(0, 256, (n, 32, 32, 3), np.uint8)
  labels = rng.randint(0, num_classes, n).astype(np.int64)
  ds = tf.data.Dataset.from_tensor_slices((images, labels)).cache()
  return data.Splits(SPEC, tuple(map(str, range(num_classes))), ds, ds, ds, {"train": n, "validation": n, "test": n})


def ours(model_name: str, splits: data.Splits, batch: int, steps: int, precision: str, jit: bool = False) -> float:
  """Images/s of ls_keras' Loop over its own input pipeline (augmentation included)."""
  keras.config.set_dtype_policy(precision)
  try:
    config = config_lib.TrainConfig(model=model_name, batch_size=batch, alpha=0.1)
    model = training.build_classifier(config, splits)
    strategy = tf.distribute.get_strategy()
    model.optimizer.build(model.trainable_variables)
    loop = training.Loop(model, strategy, jit_compile=jit)

    def epoch_iterator(epoch):
      return iter(strategy.distribute_datasets_from_function(
          lambda ctx: data.train_batches(splits, batch_size=batch, seed=0, epoch=epoch, augment=True,
                                         input_context=ctx).repeat()))
    loop.train(epoch_iterator(0), 5)  # Trace and warm up.
    iterator = epoch_iterator(1)
    start = time.perf_counter()
    done = 0
    while done < steps:
      chunk = min(25, steps - done)
      loop.train(iterator, chunk)
      done += chunk
    return steps * batch / (time.perf_counter() - start)
  finally:
    keras.config.set_dtype_policy("float32")


def plain_keras(model_name: str, batch: int, steps: int) -> float:
  """Images/s of model.fit on in-memory float32 arrays, as written by hand."""
  rng = np.random.RandomState(0)
  x = rng.randint(0, 256, (batch * steps, 32, 32, 3)).astype(np.float32)
  y = keras.utils.to_categorical(rng.randint(0, 10, batch * steps), 10)
  model = models.build_model(model_name, (32, 32, 3), 10, mean=SPEC.mean, std=SPEC.std)
  model.compile(keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True), losses.label_smoothing_loss(0.1))
  model.fit(x[:batch * 5], y[:batch * 5], batch_size=batch, epochs=1, verbose=0)
  start = time.perf_counter()
  model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
  return batch * steps / (time.perf_counter() - start)


def pipeline(splits: data.Splits, batch: int, steps: int) -> float:
  ds = data.train_batches(splits, batch_size=batch, seed=0, epoch=0, augment=True).repeat().take(steps)
  for _ in ds.take(3):
    pass
  start = time.perf_counter()
  for _ in ds:
    pass
  return steps * batch / (time.perf_counter() - start)


def calibration_seconds() -> float:
  rng = np.random.RandomState(0)
  logits = rng.normal(0, 3, (10_000, 100))
  labels = rng.randint(0, 100, 10_000)
  calibration.expected_calibration_error(labels, logits=logits)  # Warm up TF.
  start = time.perf_counter()
  calibration.expected_calibration_error(labels, logits=logits)
  calibration.fit_temperature(labels, logits)
  return time.perf_counter() - start


def accuracy_check(epochs: int, data_dir: str) -> tuple:
  """Test accuracy on Fashion-MNIST after `epochs` epochs: ls_keras (bf16, its loop) vs plain fit (float32)."""
  import tempfile
  config = config_lib.TrainConfig(epochs=epochs, learning_rate=0.05, weight_decay=5e-4, data_dir=data_dir)
  with tempfile.TemporaryDirectory() as workdir:
    ours_accuracy = training.train_and_evaluate(config, workdir)["test"]["accuracy"]
  splits = training.load_data(config.replace(precision="float32"))
  x, y = (np.stack(a) for a in zip(*splits.train.as_numpy_iterator()))
  xt, yt = (np.stack(a) for a in zip(*splits.test.as_numpy_iterator()))
  keras.utils.set_random_seed(0)
  model = models.build_model("small_cnn", (28, 28, 1), 10, mean=splits.spec.mean, std=splits.spec.std,
                             options=models.ModelOptions(weight_decay=5e-4))
  model.compile(keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True), losses.label_smoothing_loss(0.0),
                metrics=["accuracy"])
  model.fit(x.astype(np.float32), keras.utils.to_categorical(y, 10), batch_size=128, epochs=epochs, verbose=0)
  plain_accuracy = model.evaluate(xt.astype(np.float32), keras.utils.to_categorical(yt, 10), verbose=0)[1]
  return ours_accuracy, plain_accuracy


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="few steps: a smoke run, not a measurement")
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--data_dir", default="", help="TFDS data dir for the Fashion-MNIST accuracy check")
  args = parser.parse_args()
  steps = {"small_cnn": 8, "alexnet": 4, "resnet56": 2} if args.quick else {
      "small_cnn": 150, "alexnet": 60, "resnet56": 20}
  splits = synthetic_splits(args.batch * 8)
  rows = []
  print(f"{'what':42s} {'ls_keras':>12s} {'plain Keras':>12s} {'ratio':>7s}", flush=True)

  def row(what, a, b, unit):
    ratio = a / b if b else float("nan")
    rows.append((what, a, b, ratio))
    print(f"{what:42s} {a:10.0f}{unit} {b:10.0f}{unit} {ratio:6.2f}x", flush=True)

  for name, n in steps.items():
    row(f"train {name} (images/s, bf16 vs float32)", ours(name, splits, args.batch, n, "mixed_bfloat16"),
        plain_keras(name, args.batch, n), "  ")
  cnn_ours = rows[0][1]
  row("train small_cnn, ls_keras float32 vs plain", ours("small_cnn", splits, args.batch, steps["small_cnn"],
                                                          "float32"), rows[0][2], "  ")
  row("train small_cnn, ls_keras bf16 + XLA vs plain", ours("small_cnn", splits, args.batch, steps["small_cnn"],
                                                             "mixed_bfloat16", jit=True), rows[0][2], "  ")
  row("input pipeline vs small_cnn step (images/s)", pipeline(splits, args.batch, 4 * steps["small_cnn"]),
      cnn_ours, "  ")
  seconds = calibration_seconds()
  print(f"{'ECE + temperature fit, 10k x 100 logits':42s} {seconds:10.3f} s   (target < 1 s)", flush=True)
  if not args.quick:
    mine, plain = accuracy_check(3, args.data_dir)
    print(f"{'Fashion-MNIST test accuracy, 3 epochs':42s} {mine:12.4f} {plain:12.4f} {mine / plain:6.3f}x", flush=True)


if __name__ == "__main__":
  main()
