"""ls_keras' training path against plain Keras, side by side in one process, on this machine.

  python tools/benchmark.py                    # the full table (under 10 minutes on 2 CPU cores)
  python tools/benchmark.py --json=bench.json  # ... and the table as JSON
  python tools/benchmark.py --quick            # a smoke run: few steps, not a measurement

It first prints the machine (CPU model, the ISA features that decide precision, GPUs) and
the precision `--precision=auto` resolves to. Then, per model (small_cnn at Fashion-MNIST's
28x28x1, alexnet and resnet56 at CIFAR's 32x32x3): images/s of ls_keras' loop with `auto`
against plain Keras `model.fit` in float32 on in-memory arrays (same model, data, batch and
label smoothing, augmentation off), and of ours in every other precision this hardware runs
natively. Precisions it does not run natively are skipped with the reason, not run for an
hour. Measurements alternate between the two sides and keep each side's best of two, so
a slow moment of the machine hits both. Also: XLA, the input pipeline against the step it
feeds, ECE plus a temperature fit, and test accuracy on real Fashion-MNIST.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")  # Each measured model traces its own functions, by design.

from ls_keras import calibration, data, models, training  # noqa: E402
from ls_keras.core import hardware  # noqa: E402
from ls_keras.training import losses  # noqa: E402
from ls_keras.core import config as config_lib  # noqa: E402

MODELS = {"small_cnn": (28, 28, 1), "alexnet": (32, 32, 3), "resnet56": (32, 32, 3)}
ALPHA, NUM_CLASSES = 0.1, 10
LEARNING_RATE = 0.01  # Small enough that no model diverges on random labels (ours would stop).


def synthetic_splits(shape, n: int) -> data.Splits:
  """Random uint8 images of `shape` with random labels, as Splits (all three the same)."""
  rng = np.random.RandomState(0)
  images = rng.randint(0, 256, (n,) + shape, np.uint8)
  labels = rng.randint(0, NUM_CLASSES, n).astype(np.int64)
  spec = data.DatasetSpec(
    "synthetic", shape, (127.0,) * shape[-1], (64.0,) * shape[-1], "shift", "in memory"
  )
  ds = tf.data.Dataset.from_tensor_slices((images, labels)).cache()
  return data.Splits(
    spec, tuple(map(str, range(NUM_CLASSES))), ds, ds, ds, {"train": n, "validation": n, "test": n}
  )


def _steps_for(seconds_per_step: float, target_seconds: float, lo: int, hi: int) -> int:
  return int(min(hi, max(lo, target_seconds / max(seconds_per_step, 1e-6))))


class Ours:
  """ls_keras' Loop over its own input pipeline, in one precision."""

  def __init__(self, model_name, splits, batch, precision, jit=False):
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
      config = config_lib.TrainConfig(
        model=model_name,
        batch_size=batch,
        alpha=ALPHA,
        precision=precision,
        learning_rate=LEARNING_RATE,
      )
      self.model = training.build_classifier(config, splits, total_steps=10**6)
      self.model.optimizer.build(self.model.trainable_variables)
    finally:
      keras.config.set_dtype_policy(policy)
    strategy = tf.distribute.get_strategy()
    self.loop = training.Loop(self.model, strategy, jit_compile=jit)
    self.iterator = iter(
      strategy.distribute_datasets_from_function(
        lambda ctx: data.train_batches(
          splits, batch_size=batch, seed=0, epoch=0, augment=False, input_context=ctx
        ).repeat()
      )
    )
    self.batch = batch
    self.loop.train(self.iterator, 2)  # Trace and warm up.

  def run(self, steps: int) -> float:
    """Images per second over `steps` steps."""
    start = time.perf_counter()
    done = 0
    while done < steps:
      chunk = min(25, steps - done)
      self.loop.train(self.iterator, chunk)
      done += chunk
    return steps * self.batch / (time.perf_counter() - start)


class PlainKeras:
  """model.fit on in-memory float32 arrays, as a user writes it by hand."""

  def __init__(self, model_name, shape, batch, max_steps):
    rng = np.random.RandomState(0)
    self.x = rng.randint(0, 256, (batch * max_steps,) + shape).astype(np.float32)
    self.y = keras.utils.to_categorical(rng.randint(0, NUM_CLASSES, batch * max_steps), NUM_CLASSES)
    keras.utils.set_random_seed(0)
    self.model = models.build_model(
      model_name, shape, NUM_CLASSES, mean=(127.0,) * shape[-1], std=(64.0,) * shape[-1]
    )
    self.model.compile(
      keras.optimizers.SGD(LEARNING_RATE, momentum=0.9, nesterov=True),
      losses.label_smoothing_loss(ALPHA),
    )
    self.batch = batch
    self.model.fit(self.x[: batch * 2], self.y[: batch * 2], batch_size=batch, epochs=1, verbose=0)

  def run(self, steps: int) -> float:
    """Images per second over `steps` steps."""
    n = self.batch * steps
    start = time.perf_counter()
    self.model.fit(self.x[:n], self.y[:n], batch_size=self.batch, epochs=1, verbose=0)
    return n / (time.perf_counter() - start)


def side_by_side(a, b, steps: int, repeats: int = 2):
  """Best images/s of each over `repeats` alternating runs."""
  best_a = best_b = 0.0
  for _ in range(repeats):
    best_a = max(best_a, a.run(steps))
    best_b = max(best_b, b.run(steps))
  return best_a, best_b


def native_precisions(machine: hardware.Hardware):
  """(precision, None) for each this hardware runs natively; (precision, why not) for the rest."""
  out = [("float32", None)]
  gpu_capabilities = [g.compute_capability for g in machine.gpus]
  if machine.gpus:
    bf16 = all(c >= (8, 0) for c in gpu_capabilities)
    fp16 = all(c[0] >= 7 or c in ((6, 0), (6, 2)) for c in gpu_capabilities)
    out.append(
      (
        "mixed_bfloat16",
        None if bf16 else "a GPU older than compute capability 8.0 has no bfloat16",
      )
    )
    out.append(
      (
        "mixed_float16",
        None if fp16 else "a GPU without fast float16 (compute capability 6.1, 5.x)",
      )
    )
  else:
    out.append(
      (
        "mixed_bfloat16",
        None
        if machine.native_cpu_bfloat16
        else "this CPU has no AVX512_BF16/AMX (or oneDNN is capped below it): bfloat16 is "
        "emulated, "
        "measured 5-12x slower than float32",
      )
    )
    out.append(("mixed_float16", "no GPU: float16 runs emulated on CPUs"))
  return out


def calibration_seconds() -> float:
  """Seconds for ECE plus a temperature fit on 10k x 100 random logits."""
  rng = np.random.RandomState(0)
  logits = rng.normal(0, 3, (10_000, 100))
  labels = rng.randint(0, 100, 10_000)
  calibration.expected_calibration_error(labels, logits=logits)  # Warm up TF.
  start = time.perf_counter()
  calibration.expected_calibration_error(labels, logits=logits)
  calibration.fit_temperature(labels, logits)
  return time.perf_counter() - start


def accuracy_check(data_dir: str, examples: int) -> tuple:
  """Fashion-MNIST test accuracy after one epoch on `examples` images: ours (auto), plain fit."""
  config = config_lib.TrainConfig(
    epochs=1,
    learning_rate=0.05,
    train_examples=examples,
    augment=False,
    lr_boundaries=(),
    data_dir=data_dir,
  )
  with tempfile.TemporaryDirectory() as workdir:
    ours = training.train_and_evaluate(config, workdir)["test"]["accuracy"]
  splits = training.load_data(config)
  x, y = (np.stack(a) for a in zip(*splits.train.as_numpy_iterator()))
  xt, yt = (np.stack(a) for a in zip(*splits.test.as_numpy_iterator()))
  keras.utils.set_random_seed(0)
  model = models.build_model(
    "small_cnn", (28, 28, 1), 10, mean=splits.spec.mean, std=splits.spec.std
  )
  model.compile(
    keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    losses.label_smoothing_loss(0.0),
    metrics=["accuracy"],
  )
  model.fit(
    x.astype(np.float32), keras.utils.to_categorical(y, 10), batch_size=128, epochs=1, verbose=0
  )
  plain = model.evaluate(xt.astype(np.float32), keras.utils.to_categorical(yt, 10), verbose=0)[1]
  return ours, float(plain)


def main(argv=None):
  """Runs the benchmark; returns the report (also written with --json)."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="few steps, small_cnn only: a smoke run")
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument(
    "--seconds", type=float, default=8.0, help="target seconds per timed measurement"
  )
  parser.add_argument("--json", default="", help="also write the table to this JSON file")
  parser.add_argument(
    "--data_dir", default="", help="TFDS data dir for the Fashion-MNIST accuracy check"
  )
  args = parser.parse_args(argv)
  machine = hardware.detect()
  auto, reason = hardware.choose_precision(machine)
  report = {
    "machine": machine.to_dict(),
    "cpu_cores": os.cpu_count(),
    "auto": auto,
    "auto_reason": reason,
    "versions": {
      "tensorflow": tf.__version__,
      "keras": keras.__version__,
      "python": platform.python_version(),
    },
    "rows": [],
    "skipped": [],
  }
  print(f"Machine: {machine.describe()}; {os.cpu_count()} CPU cores")
  print(f"precision auto -> {auto}: {reason}")
  print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}\n")
  print(
    f"{'model':10s} {'input':8s} {'ours: precision':>28s} {'ours img/s':>11s} "
    f"{'plain fit float32':>18s} "
    f"{'ratio':>7s}",
    flush=True,
  )

  def row(kind, model_name, shape, precision, ours, plain, **extra):
    entry = {
      "kind": kind,
      "model": model_name,
      "input": "x".join(map(str, shape)),
      "precision": precision,
      "ours_images_per_s": round(ours, 1),
      "plain_images_per_s": round(plain, 1),
      "ratio": round(ours / plain, 3),
      **extra,
    }
    report["rows"].append(entry)
    marker = " (auto)" if precision == auto and kind == "train" else ""
    label = f"{precision}{marker}{extra.get('note', '')}"
    print(
      f"{model_name:10s} {entry['input']:8s} {label:>28s} {ours:11.0f} {plain:18.0f} "
      f"{ours / plain:6.2f}x",
      flush=True,
    )

  names = ["small_cnn"] if args.quick else list(MODELS)
  for name in sorted(set(MODELS) - set(names)):
    report["skipped"].append({"model": name, "reason": "--quick"})
  for name in names:
    shape = MODELS[name]
    splits = synthetic_splits(shape, args.batch * 8)
    probe = Ours(name, splits, args.batch, auto)
    per_step = args.batch / probe.run(2)
    steps = 3 if args.quick else _steps_for(per_step, args.seconds, 10, 400)
    plain = PlainKeras(name, shape, args.batch, steps)
    ours_auto, plain_speed = side_by_side(probe, plain, steps, repeats=1 if args.quick else 2)
    row("train", name, shape, auto, ours_auto, plain_speed, steps=steps)
    for precision, why_not in native_precisions(machine):
      if precision == auto:
        continue
      if why_not:
        report["skipped"].append({"model": name, "precision": precision, "reason": why_not})
        continue
      other = Ours(name, splits, args.batch, precision)
      row("train", name, shape, precision, other.run(steps), plain_speed, steps=steps)
    if name == "small_cnn":
      xla = Ours(name, splits, args.batch, auto, jit=True)
      row("xla", name, shape, auto, xla.run(steps), plain_speed, steps=steps, note=" + XLA")
      pipeline_speed = pipeline(splits, args.batch, 4 * steps)
      report["input_pipeline"] = {
        "images_per_s": round(pipeline_speed, 1),
        "step_images_per_s": round(ours_auto, 1),
        "ratio": round(pipeline_speed / ours_auto, 2),
      }
      print(
        f"{'small_cnn':10s} {'28x28x1':8s} {'input pipeline alone':>28s} {pipeline_speed:11.0f} "
        f"{'(its step: ' + format(ours_auto, '.0f') + ')':>18s} {pipeline_speed / ours_auto:6.2f}x",
        flush=True,
      )
  for skip in report["skipped"]:
    print(f"skipped: {skip['model']} {skip.get('precision', '')}: {skip['reason']}")
  seconds = calibration_seconds()
  report["ece_and_temperature_fit_seconds"] = round(seconds, 4)
  print(f"ECE + temperature fit on 10k x 100 logits: {seconds:.3f} s")
  if not args.quick:
    ours_acc, plain_acc = accuracy_check(args.data_dir, 20_000)
    report["fashion_mnist_accuracy"] = {
      "ours": ours_acc,
      "plain": plain_acc,
      "examples": 20_000,
      "epochs": 1,
    }
    print(
      f"Fashion-MNIST test accuracy after 1 epoch on 20k images: ours {ours_acc:.4f}, plain "
      f"{plain_acc:.4f}"
    )
  if args.json:
    with open(args.json, "w") as f:
      json.dump(report, f, indent=2)
  return report


def pipeline(splits: data.Splits, batch: int, steps: int) -> float:
  """Images/s of the training input pipeline alone (augmentation on)."""
  ds = (
    data.train_batches(splits, batch_size=batch, seed=0, epoch=0, augment=True).repeat().take(steps)
  )
  for _ in ds.take(3):
    pass
  start = time.perf_counter()
  for _ in ds:
    pass
  return steps * batch / (time.perf_counter() - start)


if __name__ == "__main__":
  main(sys.argv[1:])
