"""Ours against PyTorch in the same oneDNN kernels: time per primitive, CPU time, thread hand-offs.

  python tools/step_vs_torch.py                           # resnet56, auto precision
  python tools/step_vs_torch.py --model=alexnet --precision=float32 --steps=5

TensorFlow and PyTorch run their convolutions (TensorFlow also its batch norm) through
oneDNN, often the very same kernels (the verbose log names them, e.g. `brgconv_bwd_w` with
AMX; `--json` lists them per primitive). When a step is slower under one framework, this
tells whether the kernels or the runtime around them are to blame. It trains the
benchmark's two peers, ls_keras' loop (tools/benchmark.py) and the same model in PyTorch
(tools/torch_peers.py), each in child processes, in two ways:

- plainly, measuring per step the wall time, the CPU time of all threads (user + system)
  and the context switches of all threads (voluntary + involuntary, from getrusage): a
  thread pool that puts its workers to sleep and wakes them for every op pays in switches;
- with `ONEDNN_VERBOSE=1`, summing oneDNN's own time per call by primitive (convolution
  forward, input gradient, filter gradient, batch norm, layout reorders), in the timed
  steps only (`ONEDNN_VERBOSE_TIMESTAMP` dates each call).

The plain runs alternate between the peers (`--repeats` each, the fastest kept), as the
benchmark's do. The same kernel taking longer per call in one framework, with the CPU no
busier, points at its threading rather than at the kernel. PyTorch comes from
`pip install -e .[bench]`; without it only ours is measured, and the reason is printed.
Environment variables reach the children, so `ONEDNN_MAX_CPU_ISA=AVX2
ATEN_CPU_CAPABILITY=avx2` compares both as on a CPU without bfloat16.
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
    # The stamp comes just before "primitive,exec"; the fields up to the propagation kind
    # hold no commas, and the time is the last field.
    at = next((i for i in range(1, 4) if fields[i : i + 2] == ["primitive", "exec"]), None)
    if fields[0] != "onednn_verbose" or at is None or len(fields) < at + 7:
      continue
    try:
      stamp, milliseconds = float(fields[at - 1]), float(fields[-1])
    except ValueError:
      continue
    if not start_ms <= stamp <= end_ms:
      continue
    primitive, implementation, propagation = fields[at + 3 : at + 6]
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

  Args:
    usage_before: `resource.getrusage(resource.RUSAGE_SELF)` before the steps.
    usage_after: the same after them.
    wall_seconds: the wall time of the steps, in seconds.
    steps: how many steps ran.
    batch: images per step.

  Returns:
    {"images_per_s", "wall_ms", "cpu_ms" (user + system), "system_ms" (in the operating
    system), "context_switches" (voluntary + involuntary)}, all but the first per step.
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


def _child(peer: str, spec: dict) -> None:
  """Runs in a child: builds one peer, warms it up, times its steps, prints STEP_STATS.

  The PyTorch child imports neither TensorFlow nor ls_keras, so only PyTorch's oneDNN runs
  in it.
  """
  model, precision, steps, batch = spec["model"], spec["precision"], spec["steps"], spec["batch"]
  shape = tuple(spec["shape"])
  if peer == "ours":
    import benchmark  # noqa: E402

    runner = benchmark.Ours(model, benchmark.synthetic_splits(shape, batch * 8), batch, precision)
  else:
    import torch_peers  # noqa: E402

    runner = torch_peers.TorchPeer(
      model, shape, batch, precision, spec["alpha"], spec["classes"], spec["learning_rate"], steps
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


def _run_child(peer: str, spec: dict, verbose: bool) -> tuple:
  """(the child's STEP_STATS, its output lines); raises RuntimeError when it fails."""
  command = [sys.executable, os.path.abspath(__file__), f"--child={peer}"]
  command.append(f"--spec={json.dumps(spec)}")
  env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_VERBOSE", "DNNL_VERBOSE")}
  if verbose:
    env.update(ONEDNN_VERBOSE="1", ONEDNN_VERBOSE_TIMESTAMP="1")
  done = subprocess.run(command, env=env, capture_output=True, text=True)
  lines = done.stdout.splitlines()
  stats = [json.loads(line[len(STATS_PREFIX) :]) for line in lines if line.startswith(STATS_PREFIX)]
  if done.returncode or not stats:
    tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
    raise RuntimeError(f"the {peer} child failed (exit {done.returncode}):\n{tail}")
  return stats[0], lines


def measure(peers, spec: dict, repeats: int = 2) -> dict:
  """Each peer's step: plain child runs alternating between the peers, then a verbose one each.

  Args:
    peers: the peers to run, "ours" and/or "torch".
    spec: model, precision, steps, batch, shape, alpha, classes and learning_rate.
    repeats: plain runs per peer, alternating; the fastest one is kept, so that a slow
      moment of the machine does not count against one peer only.

  Returns:
    {peer: the fastest plain run's `per_step` numbers, with "onednn": the verbose run's
    `onednn_time_by_primitive` divided by the steps (milliseconds and calls per step)}.

  Raises:
    RuntimeError: a child failed (its last output lines are in the message), or the
      verbose log held no timed oneDNN call (oneDNN off, or a log format not understood).
  """
  results = {}
  for _ in range(repeats):
    for peer in peers:
      stats, _ = _run_child(peer, spec, verbose=False)
      if peer not in results or stats["images_per_s"] > results[peer]["images_per_s"]:
        results[peer] = stats
  for peer in peers:
    timed, lines = _run_child(peer, spec, verbose=True)
    groups = onednn_time_by_primitive(lines, timed["start_ms"], timed["end_ms"])
    if not groups:
      raise RuntimeError(
        f"the {peer} child's oneDNN verbose log had no timed call: is oneDNN off "
        "(TF_ENABLE_ONEDNN_OPTS=0), or does this oneDNN print another log format?"
      )
    results[peer]["onednn"] = {
      name: {
        "ms": g["ms"] / spec["steps"],
        "calls": g["calls"] / spec["steps"],
        "implementations": g["implementations"],
      }
      for name, g in groups.items()
    }
  return results


def render(results: dict) -> str:
  """The side-by-side table of `measure`'s results, keyed by the peers' display names."""
  names = list(results)
  lines = [f"{'':34s}" + "".join(f"{n:>24s}" for n in names)]

  def line(label, cell):
    lines.append(f"{label:34s}" + "".join(f"{cell(results[n]):>24s}" for n in names))

  line("images/s", lambda r: f"{r['images_per_s']:.0f}")
  line("wall time per step", lambda r: f"{r['wall_ms']:.0f} ms")
  line("CPU time per step (all threads)", lambda r: f"{r['cpu_ms']:.0f} ms")
  line("  of which system (OS) time", lambda r: f"{r['system_ms']:.0f} ms")
  line("context switches per step", lambda r: f"{r['context_switches']:.0f}")
  groups = sorted(
    {g for r in results.values() for g in r["onednn"]},
    key=lambda g: (-max(r["onednn"].get(g, {"ms": 0})["ms"] for r in results.values()), g),
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
  """Measures ours (and PyTorch when it can run) and prints the comparison; returns the report.

  In a child process (the hidden --child flag) it measures one peer and returns None.
  """
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="resnet56", choices=("small_cnn", "alexnet", "resnet56"))
  parser.add_argument("--precision", default="auto")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=2, help="plain runs per peer, alternating")
  parser.add_argument("--json", default="", help="also write the results to this JSON file")
  parser.add_argument("--child", choices=("ours", "torch"), help=argparse.SUPPRESS)
  parser.add_argument("--spec", default="{}", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    return _child(args.child, json.loads(args.spec))
  import benchmark  # noqa: E402
  from ls_keras.core import config as config_lib  # noqa: E402
  from ls_keras.core import hardware  # noqa: E402

  if args.precision not in config_lib.PRECISIONS:
    parser.error(f"--precision={args.precision}: one of {', '.join(config_lib.PRECISIONS)}")
  for name in ("steps", "batch", "repeats"):
    if getattr(args, name) < 1:
      parser.error(f"--{name}={getattr(args, name)}: it must be a whole number of at least 1")
  machine = hardware.detect()
  precision, _ = hardware.resolve_precision(args.precision, machine)
  spec = {
    "model": args.model,
    "precision": precision,
    "steps": args.steps,
    "batch": args.batch,
    "shape": benchmark.MODELS[args.model],
    "alpha": benchmark.ALPHA,
    "classes": benchmark.NUM_CLASSES,
    "learning_rate": benchmark.LEARNING_RATE,
  }
  print(f"Machine: {machine.describe()}; {os.cpu_count()} CPU cores")
  isa = {k: v for k, v in os.environ.items() if k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")}
  capped = f"; {isa}" if isa else ""
  print(f"{args.model}, {precision}, batch {args.batch}, {args.steps} timed steps per run{capped}")
  peers = {"ours": "ls_keras"}
  torch_peers, no_torch = benchmark.torch_peers_module()
  if precision not in ("float32", "mixed_bfloat16"):
    print(f"The PyTorch peer runs in float32 or bfloat16 only, not {precision}: ours only.")
  elif no_torch:
    print(f"{no_torch}: ours only.")
  else:
    peers["torch"] = "PyTorch"
  measured = measure(list(peers), spec, repeats=max(1, args.repeats))
  results = {label: measured[peer] for peer, label in peers.items()}
  print()
  print(render(results))
  report = {"machine": machine.to_dict(), **spec, "environment": isa, "results": results}
  if args.json:
    with open(args.json, "w") as f:
      json.dump(report, f, indent=2)
  return report


if __name__ == "__main__":
  main(sys.argv[1:])
