"""Ours against PyTorch in the same oneDNN kernels: time per primitive, CPU time, thread hand-offs.

  python tools/step_vs_torch.py                           # resnet56, auto precision
  python tools/step_vs_torch.py --model=alexnet --precision=float32 --steps=5

TensorFlow and PyTorch run their convolutions (TensorFlow also its batch norm) through
oneDNN, often the very same kernels (the verbose log names them, e.g. `brgconv_bwd_w` with
AMX). When a step is slower under one framework, this tells whether the kernels or the
runtime around them are to blame. It trains the benchmark's two peers, ls_keras' loop
(tools/benchmark.py) and the same model in PyTorch (tools/torch_peers.py), each in a child
process, twice:

- plainly, measuring per step the wall time, the CPU time of all threads (user + system)
  and the context switches of all threads (voluntary + involuntary, from getrusage): a
  thread pool that puts its workers to sleep and wakes them for every op pays in switches;
- with `ONEDNN_VERBOSE=1`, summing oneDNN's own time per call by primitive (convolution
  forward, input gradient, filter gradient, batch norm, layout reorders), in the timed
  steps only (`ONEDNN_VERBOSE_TIMESTAMP` dates each call).

The same kernel taking longer per call in one framework, with the CPU no busier, points
at its threading rather than at the kernel. PyTorch comes from `pip install -e .[bench]`;
without it only ours is measured, and the reason is printed. Environment variables reach
the children, so `ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2` compares both as on a
CPU without bfloat16.
"""

import argparse
import collections
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

STATS_PREFIX = "STEP_STATS "

# oneDNN primitive and propagation kind -> what it does in a training step.
PRIMITIVES = {
  ("convolution", "forward_training"): "convolution forward",
  ("convolution", "forward_inference"): "convolution forward",
  ("convolution", "backward_data"): "convolution input gradient",
  ("convolution", "backward_weights"): "convolution filter gradient",
  ("batch_normalization", "forward_training"): "batch norm forward",
  ("batch_normalization", "backward"): "batch norm gradient",
  ("reorder", "undef"): "layout reorders",
  ("inner_product", "forward_training"): "dense layers",
  ("inner_product", "backward_data"): "dense layers",
  ("inner_product", "backward_weights"): "dense layers",
  ("matmul", "undef"): "dense layers",
  ("pooling", "forward_training"): "pooling",
  ("pooling", "backward_data"): "pooling",
  ("eltwise", "forward_training"): "elementwise",
  ("eltwise", "backward_data"): "elementwise",
}


def onednn_time_by_primitive(lines, start_ms: float, end_ms: float) -> dict:
  """The execution time and call count of oneDNN's primitives per group, inside a window.

  Args:
    lines: lines of oneDNN's verbose log with timestamps (ONEDNN_VERBOSE=1,
      ONEDNN_VERBOSE_TIMESTAMP=1): `onednn_verbose,v1,<ms since the epoch>,primitive,exec,
      cpu,<primitive>,<implementation>,<propagation>,...,<ms>`; other lines are ignored.
    start_ms: the window's start, in milliseconds since the epoch; calls before it (the
      warm-up) are left out.
    end_ms: the window's end, in milliseconds since the epoch.

  Returns:
    {group: {"ms": total milliseconds, "calls": number of calls, "implementations":
    sorted implementation names}}, the groups named by `PRIMITIVES` ("other" for the rest).
  """
  totals = collections.defaultdict(lambda: {"ms": 0.0, "calls": 0, "implementations": set()})
  for line in lines:
    fields = line.strip().split(",")
    if len(fields) < 10 or fields[0] != "onednn_verbose" or fields[3:5] != ["primitive", "exec"]:
      continue
    try:
      stamp, milliseconds = float(fields[2]), float(fields[-1])
    except ValueError:
      continue
    if not start_ms <= stamp <= end_ms:
      continue
    primitive, implementation, propagation = fields[6], fields[7], fields[8]
    group = totals[PRIMITIVES.get((primitive, propagation), "other")]
    group["ms"] += milliseconds
    group["calls"] += 1
    group["implementations"].add(implementation)
  return {
    name: {**group, "implementations": sorted(group["implementations"])}
    for name, group in totals.items()
  }


def per_step(usage_before, usage_after, wall_seconds: float, steps: int, batch: int) -> dict:
  """Wall time, CPU time and context switches per step from two getrusage(RUSAGE_SELF) readings.

  On Linux RUSAGE_SELF sums all threads of the process, so the CPU time can exceed the
  wall time on several cores.
  """
  cpu = (usage_after.ru_utime - usage_before.ru_utime) + (
    usage_after.ru_stime - usage_before.ru_stime
  )
  switches = (usage_after.ru_nvcsw - usage_before.ru_nvcsw) + (
    usage_after.ru_nivcsw - usage_before.ru_nivcsw
  )
  return {
    "images_per_s": steps * batch / wall_seconds,
    "wall_ms": 1000 * wall_seconds / steps,
    "cpu_ms": 1000 * cpu / steps,
    "system_ms": 1000 * (usage_after.ru_stime - usage_before.ru_stime) / steps,
    "context_switches": switches / steps,
  }


def _child(peer: str, model: str, precision: str, steps: int, batch: int) -> None:
  """Runs in the child: builds one peer, warms it up, times `steps` steps, prints STEP_STATS."""
  import benchmark  # noqa: E402

  shape = benchmark.MODELS[model]
  if peer == "ours":
    runner = benchmark.Ours(model, benchmark.synthetic_splits(shape, batch * 8), batch, precision)
  else:
    import torch_peers  # noqa: E402

    runner = torch_peers.TorchPeer(
      model,
      shape,
      batch,
      precision,
      benchmark.ALPHA,
      benchmark.NUM_CLASSES,
      benchmark.LEARNING_RATE,
      steps,
    )
  runner.run(3)
  before, start_ms = resource.getrusage(resource.RUSAGE_SELF), time.time() * 1000
  start = time.perf_counter()
  runner.run(steps)
  wall = time.perf_counter() - start
  after, end_ms = resource.getrusage(resource.RUSAGE_SELF), time.time() * 1000
  stats = per_step(before, after, wall, steps, batch)
  stats.update(start_ms=start_ms, end_ms=end_ms)
  sys.stdout.flush()
  os.write(1, (STATS_PREFIX + json.dumps(stats) + "\n").encode())


def measure(peer: str, model: str, precision: str, steps: int, batch: int) -> dict:
  """One peer's step, measured in two child processes (plain, then with oneDNN's verbose log).

  Returns:
    The plain run's `per_step` numbers and, under "onednn", `onednn_time_by_primitive` of
    the verbose run divided by `steps` (milliseconds and calls per step).

  Raises:
    RuntimeError: a child failed; its last output lines are in the message.
  """
  command = [sys.executable, os.path.abspath(__file__), f"--child={peer}", f"--model={model}"]
  command += [f"--precision={precision}", f"--steps={steps}", f"--batch={batch}"]
  results = []
  for verbose in (False, True):
    env = dict(os.environ)
    env.pop("ONEDNN_VERBOSE", None)
    if verbose:
      env.update(ONEDNN_VERBOSE="1", ONEDNN_VERBOSE_TIMESTAMP="1")
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = done.stdout.splitlines()
    stats = [
      json.loads(line[len(STATS_PREFIX) :]) for line in lines if line.startswith(STATS_PREFIX)
    ]
    if done.returncode or not stats:
      tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
      raise RuntimeError(f"the {peer} child failed (exit {done.returncode}):\n{tail}")
    results.append((stats[0], lines))
  (plain, _), (timed, verbose_lines) = results
  groups = onednn_time_by_primitive(verbose_lines, timed["start_ms"], timed["end_ms"])
  plain["onednn"] = {
    name: {
      "ms": g["ms"] / steps,
      "calls": g["calls"] / steps,
      "implementations": g["implementations"],
    }
    for name, g in groups.items()
  }
  return plain


def render(model: str, precision: str, results: dict) -> str:
  """The side-by-side table of `measure`'s results ({peer label: result})."""
  names = list(results)
  lines = [f"{'':34s}" + "".join(f"{n:>24s}" for n in names)]

  def line(label, cell):
    lines.append(f"{label:34s}" + "".join(f"{cell(results[n]):>24s}" for n in names))

  line("images/s", lambda r: f"{r['images_per_s']:.0f}")
  line("wall time per step", lambda r: f"{r['wall_ms']:.0f} ms")
  line("CPU time per step (all threads)", lambda r: f"{r['cpu_ms']:.0f} ms")
  line("  of which in the kernel", lambda r: f"{r['system_ms']:.0f} ms")
  line("context switches per step", lambda r: f"{r['context_switches']:.0f}")
  groups = sorted(
    {g for r in results.values() for g in r["onednn"]},
    key=lambda g: -max(r["onednn"].get(g, {"ms": 0})["ms"] for r in results.values()),
  )
  lines.append("oneDNN time per step (calls per step):")

  def group_cell(name):
    def cell(r):
      g = r["onednn"].get(name)
      return f"{g['ms']:.1f} ms ({g['calls']:.0f})" if g else "-"

    return cell

  for name in groups:
    line(f"  {name}", group_cell(name))
  line("  all oneDNN calls", lambda r: f"{sum(g['ms'] for g in r['onednn'].values()):.1f} ms")
  return "\n".join(lines)


def main(argv=None):
  """Measures ours (and PyTorch when installed) and prints the comparison; returns it."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="resnet56", choices=("small_cnn", "alexnet", "resnet56"))
  parser.add_argument("--precision", default="auto")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--json", default="", help="also write the results to this JSON file")
  parser.add_argument("--child", choices=("ours", "torch"), help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    return _child(args.child, args.model, args.precision, args.steps, args.batch)
  from ls_keras.core import hardware  # noqa: E402

  machine = hardware.detect()
  precision, _ = hardware.resolve_precision(args.precision, machine)
  print(f"Machine: {machine.describe()}; {os.cpu_count()} CPU cores")
  isa = {k: v for k, v in os.environ.items() if k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")}
  capped = f"; {isa}" if isa else ""
  print(f"{args.model}, {precision}, batch {args.batch}, {args.steps} timed steps per peer{capped}")
  peers = {"ls_keras": "ours"}
  try:
    import torch  # noqa: F401

    peers["PyTorch"] = "torch"
  except ImportError:
    print("PyTorch is not installed (pip install -e .[bench]): ours only.")
  results = {
    label: measure(peer, args.model, precision, args.steps, args.batch)
    for label, peer in peers.items()
  }
  print()
  print(render(args.model, precision, results))
  report = {
    "machine": machine.to_dict(),
    "model": args.model,
    "precision": precision,
    "batch": args.batch,
    "steps": args.steps,
    "environment": isa,
    "results": results,
  }
  if args.json:
    with open(args.json, "w") as f:
      json.dump(report, f, indent=2)
  return report


if __name__ == "__main__":
  main(sys.argv[1:])
