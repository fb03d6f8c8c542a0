"""ls_keras' training step against every peer a user would weigh, side by side in one process.

  python tools/benchmark.py                    # the full table (about 10 minutes on 2 CPU cores)
  python tools/benchmark.py --json=bench.json  # ... and every column as JSON
  python tools/benchmark.py --quick            # a smoke run: few steps, small_cnn only

It first prints the machine (CPU model, the ISA features that decide precision, GPUs), the
precision `--precision=auto` resolves to, and the matmul ceilings (GFLOP/s of a large
matmul in float32 and in bfloat16 where it runs natively). Then, per model (small_cnn at
Fashion-MNIST's 28x28x1, alexnet and resnet56 at CIFAR's 32x32x3; batch 128, label
smoothing 0.1, SGD with Nesterov momentum, augmentation off), images/s of:

- ours: ls_keras' loop with `auto`;
- plain Keras `model.fit` on in-memory arrays, in float32 and at ours' precision (Keras' own
  BatchNormalization, as a user builds the model by hand);
- PyTorch in float32 and with bfloat16 autocast (channels_last), when torch is installed
  (`pip install -e .[bench]`; skipped with the reason otherwise; tools/torch_peers.py);

and ours' achieved training GFLOP/s as a fraction of the matmul ceiling at its precision
(FLOPs per image counted from the model's Conv2D and Dense layers, x3 for a training step).
Runs alternate between the peers and keep each one's best of two, so a slow moment of the
machine hits all. Also: ours in the other native precisions, XLA, the input pipeline against
the step it feeds, ECE plus a temperature fit, and test accuracy on real Fashion-MNIST.
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
  """model.fit on in-memory float32 arrays at `precision`, as a user writes it by hand.

  The model is ours with Keras' own BatchNormalization (`models.to_plain_keras`).
  """

  def __init__(self, model_name, shape, batch, max_steps, precision="float32"):
    rng = np.random.RandomState(0)
    self.x = rng.randint(0, 256, (batch * max_steps,) + shape).astype(np.float32)
    self.y = keras.utils.to_categorical(rng.randint(0, NUM_CLASSES, batch * max_steps), NUM_CLASSES)
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
      keras.utils.set_random_seed(0)
      self.model = models.to_plain_keras(
        models.build_model(
          model_name, shape, NUM_CLASSES, mean=(127.0,) * shape[-1], std=(64.0,) * shape[-1]
        )
      )
    finally:
      keras.config.set_dtype_policy(policy)
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


def race(peers: dict, steps: int, repeats: int = 2) -> dict:
  """Best images/s of each peer over `repeats` rounds, the peers alternating within a round."""
  best = {name: 0.0 for name in peers}
  for _ in range(repeats):
    for name, peer in peers.items():
      best[name] = max(best[name], peer.run(steps))
  return best


def training_flops_per_image(model_name: str, shape) -> float:
  """FLOPs of one training step per image, counted from the model's Conv2D and Dense layers.

  Forward: 2 FLOPs per multiply-add; a training step: 3x that (the backward pass costs
  about twice the forward). Normalisation, activations and pooling are left out.
  """
  model = models.build_model(
    model_name, shape, NUM_CLASSES, mean=(0.0,) * shape[-1], std=(1.0,) * shape[-1]
  )
  forward = 0
  for layer in model.layers:
    if isinstance(layer, keras.layers.Conv2D):
      kernel = int(np.prod(layer.kernel.shape))  # kh * kw * C_in * C_out
      height, width = layer.output.shape[1:3]
      forward += 2 * kernel * height * width
    elif isinstance(layer, keras.layers.Dense):
      forward += 2 * int(np.prod(layer.kernel.shape))
  return 3.0 * forward


def matmul_ceiling(dtype: str, n: int = 2048, seconds: float = 2.0) -> float:
  """GFLOP/s of an n x n x n matmul in `dtype` on the default device, best of a few calls."""
  a = tf.random.normal((n, n), dtype=tf.float32)
  a = tf.cast(a, dtype)

  @tf.function
  def repeated(x, times):
    for _ in tf.range(times):
      x = tf.matmul(x, a) * 0.001
    return x

  repeated(a, tf.constant(2)).numpy()
  times = 4
  while True:
    start = time.perf_counter()
    repeated(a, tf.constant(times)).numpy()
    elapsed = time.perf_counter() - start
    if elapsed > seconds / 4 or times >= 4096:
      break
    times *= 2
  best = elapsed
  for _ in range(2):
    start = time.perf_counter()
    repeated(a, tf.constant(times)).numpy()
    best = min(best, time.perf_counter() - start)
  return 2.0 * n**3 * times / best / 1e9


def torch_peers_module():
  """tools/torch_peers.py, or the reason PyTorch peers are skipped."""
  try:
    import torch  # noqa: F401
  except ImportError:
    return None, "PyTorch is not installed (pip install -e .[bench])"
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import torch_peers  # noqa: E402

  return torch_peers, None


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
  torch_peers, no_torch = torch_peers_module()
  if torch_peers:
    report["versions"]["torch"] = torch_peers.version()
  print(
    f"TensorFlow {tf.__version__}, Keras {keras.__version__}"
    + (f", PyTorch {torch_peers.version()}" if torch_peers else f"; {no_torch}")
  )
  natives = hardware.native_precisions(machine)
  ceilings = {}
  for precision, why_not in natives:
    dtype = {"float32": "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}
    if why_not is None:
      ceilings[precision] = matmul_ceiling(dtype[precision], seconds=0.5 if args.quick else 2.0)
  report["matmul_gflops"] = {p: round(g, 1) for p, g in ceilings.items()}
  print(
    "Matmul ceiling (2048^3): "
    + ", ".join(f"{p} {g:.0f} GFLOP/s" for p, g in ceilings.items())
    + "\n",
    flush=True,
  )
  peer_names = {
    "keras_float32": "Keras fit float32",
    "keras_auto": f"Keras fit {auto}" if auto != "float32" else "(Keras fit = float32)",
    "torch_float32": "PyTorch float32",
    "torch_bfloat16": "PyTorch bf16",
  }
  header = f"{'model':10s} {'ours img/s':>11s}" + "".join(
    f" {label:>22s}" for label in peer_names.values()
  )
  print(header + f" {'ours GFLOP/s (of ceiling)':>27s}", flush=True)

  def row(kind, model_name, shape, precision, ours, plain, **extra):
    """A line of ours in another precision or with XLA, against plain Keras float32."""
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
    return entry

  names = ["small_cnn"] if args.quick else list(MODELS)
  for name in sorted(set(MODELS) - set(names)):
    report["skipped"].append({"model": name, "reason": "--quick"})
  others = []
  for name in names:
    shape = MODELS[name]
    splits = synthetic_splits(shape, args.batch * 8)
    ours = Ours(name, splits, args.batch, auto)
    per_step = args.batch / ours.run(2)
    steps = 3 if args.quick else _steps_for(per_step, args.seconds, 10, 400)
    peers = {"ours": ours, "keras_float32": PlainKeras(name, shape, args.batch, steps)}
    if auto != "float32":
      peers["keras_auto"] = PlainKeras(name, shape, args.batch, steps, auto)
    for precision in ("float32", "mixed_bfloat16"):
      key = f"torch_{precision.replace('mixed_', '')}"
      why_not = no_torch or dict(natives).get(precision)
      if machine.gpus and not why_not:
        why_not = "the PyTorch peers run on the CPU only"
      if why_not:
        report["skipped"].append({"model": name, "peer": key, "reason": why_not})
        continue
      peers[key] = torch_peers.TorchPeer(
        name, shape, args.batch, precision, ALPHA, NUM_CLASSES, LEARNING_RATE, steps
      )
    speeds = race(peers, steps, repeats=1 if args.quick else 2)
    flops = training_flops_per_image(name, shape)
    achieved = speeds["ours"] * flops / 1e9
    entry = row(
      "train",
      name,
      shape,
      auto,
      speeds["ours"],
      speeds["keras_float32"],
      steps=steps,
      peers={k: round(v, 1) for k, v in speeds.items() if k != "ours"},
      ratios={k: round(speeds["ours"] / v, 3) for k, v in speeds.items() if k != "ours"},
      training_flops_per_image=flops,
      achieved_gflops=round(achieved, 1),
      fraction_of_ceiling=round(achieved / ceilings[auto], 3) if auto in ceilings else None,
    )
    cells = "".join(
      f" {speeds[k]:10.0f} ({speeds['ours'] / speeds[k]:4.2f}x){'':4s}"
      if k in speeds
      else f" {'-':>22s}"
      for k in peer_names
    )
    fraction = f" ({entry['fraction_of_ceiling']:.0%})" if entry["fraction_of_ceiling"] else ""
    print(f"{name:10s} {speeds['ours']:11.0f}{cells} {achieved:20.0f}{fraction}", flush=True)
    for precision, why_not in natives:
      if precision == auto:
        continue
      if why_not:
        report["skipped"].append({"model": name, "precision": precision, "reason": why_not})
        continue
      other = Ours(name, splits, args.batch, precision)
      others.append(
        row("train", name, shape, precision, other.run(steps), speeds["keras_float32"], steps=steps)
      )
    if name == "small_cnn":
      xla = Ours(name, splits, args.batch, auto, jit=True)
      others.append(
        row("xla", name, shape, auto, xla.run(steps), speeds["keras_float32"], steps=steps)
      )
      pipeline_speed = pipeline(splits, args.batch, 4 * steps)
      report["input_pipeline"] = {
        "images_per_s": round(pipeline_speed, 1),
        "step_images_per_s": round(speeds["ours"], 1),
        "ratio": round(pipeline_speed / speeds["ours"], 2),
      }
  print("\n(x: ours' speed over the peer's; ceiling: the matmul ceiling at ours' precision)")
  for entry in others:
    what = "ours + XLA" if entry["kind"] == "xla" else f"ours in {entry['precision']}"
    print(
      f"{entry['model']}: {what}: {entry['ours_images_per_s']:.0f} img/s, "
      f"{entry['ratio']:.2f}x Keras fit float32"
    )
  if "input_pipeline" in report:
    pipe = report["input_pipeline"]
    print(
      f"small_cnn: the input pipeline alone: {pipe['images_per_s']:.0f} img/s, "
      f"{pipe['ratio']:.1f}x the step it feeds"
    )
  for skip in report["skipped"]:
    what = skip.get("precision") or skip.get("peer") or ""
    print(f"skipped: {skip['model']} {what}: {skip['reason']}")
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
