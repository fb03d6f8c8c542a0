"""Where a training step's time goes: TensorFlow's profiler, op time grouped by what it does.

  python tools/profile_step.py                       # resnet56, auto precision, 20 steps
  python tools/profile_step.py --model=alexnet --precision=float32 --steps=30

Profiles ls_keras' loop (synthetic data, batch 128, label smoothing 0.1) twice: with Keras'
own BatchNormalization and with ls_keras' fused one, and prints, per group of ops
(convolutions and their gradients, batch norm, casts, adds and ReLUs, the optimizer's
updates, ...), the op time per step and its share, beside the wall time per step. Op
times are the profiler's self times summed over threads, so on several cores their sum
can exceed the wall time; the shares compare like with like.
"""

import argparse
import collections
import glob
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.profiler.internal import _pywrap_profiler_plugin  # noqa: E402

import benchmark  # noqa: E402
from ls_keras import models, training  # noqa: E402
from ls_keras.core import hardware  # noqa: E402

# Op types (oneDNN's _Mkl/_MklNative prefixes removed) by what they do in a training step.
GROUPS = {
  "convolutions (forward and gradients)": (
    "Conv2D",
    "FusedConv2D",
    "Conv2DBackpropInput",
    "Conv2DBackpropFilter",
    "Conv2DBackpropFilterWithBias",
  ),
  "pooling": ("MaxPool", "MaxPoolGrad", "AvgPool", "AvgPoolGrad"),
  "slices, pads, running sums and powers (AlexNet's LRN)": (
    "StridedSlice",
    "StridedSliceGrad",
    "Slice",
    "Pad",
    "Cumsum",
    "Pow",
  ),
  # FusedBatchNormEx: the remapper's batch norm + ReLU in one oneDNN kernel.
  "batch norm": (
    "FusedBatchNormV3",
    "FusedBatchNormEx",
    "FusedBatchNormGradV3",
    "FusedBatchNormGradEx",
    "Mean",
    "SquaredDifference",
    "Rsqrt",
  ),
  "casts": ("Cast",),
  "adds and ReLUs (forward and gradients)": ("AddV2", "AddN", "Relu", "ReluGrad", "BiasAdd"),
  "elementwise arithmetic (BN's unfused maths, the loss)": (
    "Mul",
    "Sub",
    "Neg",
    "RealDiv",
    "Sum",
    "Square",
    "Maximum",
    "BroadcastTo",
    "Tile",
    "SoftmaxCrossEntropyWithLogits",
  ),
  "optimizer and variables": (
    "ResourceApplyKerasMomentum",
    "AssignVariableOp",
    "AssignAddVariableOp",
    "AssignSubVariableOp",
    "ReadVariableOp",
  ),
  "dense layers": ("MatMul", "FusedMatMul", "BiasAddGrad"),
}


def group_of(op_type: str) -> str:
  """The group an op type belongs to ('other' when none)."""
  name = op_type.replace("_MklNative", "").replace("_Mkl", "").lstrip("_")
  return next((g for g, types in GROUPS.items() if name in types), "other")


def profile(loop, iterator, steps: int) -> tuple:
  """(seconds per step, {group: op seconds per step}, {op type: op seconds per step})."""
  loop.train(iterator, 2)
  with tempfile.TemporaryDirectory() as logdir:
    tf.profiler.experimental.start(logdir)
    start = time.perf_counter()
    loop.train(iterator, steps)
    wall = (time.perf_counter() - start) / steps
    tf.profiler.experimental.stop()
    (path,) = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    table = json.loads(
      _pywrap_profiler_plugin.xspace_to_tools_data([path], "framework_op_stats", {})[0]
    )[0]
  columns = [c["id"] for c in table["cols"]]
  times, by_type = collections.Counter(), collections.Counter()
  for row in table["rows"]:
    values = dict(zip(columns, (cell["v"] for cell in row["c"])))
    if values["type"] != "IDLE":
      seconds = values["total_self_time"] / 1e6 / steps  # us -> s
      times[group_of(values["type"])] += seconds
      by_type[values["type"]] += seconds
  return wall, times, by_type


def main(argv=None):
  """Profiles the model with Keras' and with the fused batch norm; prints the breakdown."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="resnet56", choices=sorted(benchmark.MODELS))
  parser.add_argument("--precision", default="auto")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--ops", type=int, default=0, help="also list the N costliest op types")
  args = parser.parse_args(argv)
  machine = hardware.detect()
  precision, _ = hardware.resolve_precision(args.precision, machine)
  shape = benchmark.MODELS[args.model]
  splits = benchmark.synthetic_splits(shape, args.batch * 8)
  print(f"Machine: {machine.describe()}; {os.cpu_count()} CPU cores")
  print(f"{args.model}, {precision}, batch {args.batch}, {args.steps} profiled steps\n")
  results = {}
  for variant in ("Keras BatchNormalization", "ls_keras fused batch norm"):
    ours = benchmark.Ours(args.model, splits, args.batch, precision)
    if variant.startswith("Keras"):
      keras.config.set_dtype_policy(precision)
      try:
        plain = models.to_plain_keras(ours.model)
      finally:
        keras.config.set_dtype_policy("float32")
      plain.compile(
        optimizer=ours.model.optimizer.__class__.from_config(ours.model.optimizer.get_config()),
        loss=ours.model.loss,
      )
      plain.optimizer.build(plain.trainable_variables)
      ours.loop = training.Loop(plain, tf.distribute.get_strategy())
    results[variant] = profile(ours.loop, ours.iterator, args.steps)
  groups = sorted(
    {g for _, times, _ in results.values() for g in times},
    key=lambda g: -results["Keras BatchNormalization"][1][g],
  )
  names = list(results)
  print(f"{'':55s}" + "".join(f"{n:>30s}" for n in names))
  print(f"{'wall time per step':55s}" + "".join(f"{results[n][0] * 1000:27.0f} ms" for n in names))
  for group in groups:
    cells = ""
    for n in names:
      wall, times, _ = results[n]
      total = sum(times.values())
      cells += f"{times[group] * 1000:20.0f} ms ({times[group] / total:4.0%})"
    print(f"{group:55s}{cells}")
  for n in names if args.ops else ():
    print(f"\nThe {args.ops} costliest op types with {n}:")
    for op_type, seconds in results[n][2].most_common(args.ops):
      print(f"  {op_type:45s} {seconds * 1000:8.1f} ms  ({group_of(op_type)})")
  speedup = results[names[0]][0] / results[names[1]][0]
  print(f"\nThe fused batch norm makes the step {speedup:.2f}x faster here.")
  return results


if __name__ == "__main__":
  main(sys.argv[1:])
