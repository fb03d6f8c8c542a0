"""MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1 run the loop of one process."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import REPO, tiny_train_args
from ls_keras import cli
from ls_keras.core import checkpoints


def _free_ports(n):
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _start_workers(args, extra_env=(), env_worker=None):
  """Starts two `ls_keras.train` worker processes of one cluster on 127.0.0.1.

  `extra_env` goes to both workers, or to worker `env_worker` alone when that is given.
  """
  cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
  procs = []
  for index in range(2):
    env = {
      **os.environ,
      "TF_CPP_MIN_LOG_LEVEL": "3",
      "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
      **(dict(extra_env) if env_worker in (None, index) else {}),
    }
    procs.append(
      subprocess.Popen(
        [sys.executable, "-m", "ls_keras.train", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
      )
    )
  return procs


@pytest.mark.slow
def test_two_workers_finish_chief_writes_and_match_one_process(
  fashion_data_dir, tiny_runs, tmp_path
):
  workdir = str(tmp_path / "mw")
  args = tiny_train_args(fashion_data_dir, workdir, "--strategy=multi_worker", "--cpu_devices=1")
  procs = _start_workers(args)
  outputs = [p.communicate(timeout=600) for p in procs]
  for p, (out, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]
  metrics = json.load(open(os.path.join(workdir, "metrics.json")))
  assert metrics["steps"] == 2 * (4096 // 128)  # The global batch is split, not multiplied.
  assert metrics["validation"]["num_examples"] == 1000
  # Only the chief wrote: no stray scratch checkpoints or second event files in the workdir.
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == [
    "checkpoint",
    "ckpt-32.data-00000-of-00001",  # Named by global step: 32 steps an epoch.
    "ckpt-32.index",
    "ckpt-64.data-00000-of-00001",
    "ckpt-64.index",
  ]
  assert len(os.listdir(os.path.join(workdir, "tb", "train"))) == 1
  reference = json.load(
    open(os.path.join(tiny_runs[0.0], "metrics.json"))
  )  # Same flags, one process.
  # Each worker reads its own shard, so batches differ from the single process: equal within noise.
  assert metrics["validation"]["accuracy"] == pytest.approx(
    reference["validation"]["accuracy"], abs=0.04
  )
  assert metrics["validation"]["accuracy"] >= 0.70


@pytest.mark.slow
def test_sigterm_to_one_worker_stops_both_at_the_same_step_and_both_resume(
  fashion_data_dir, tmp_path
):
  """Saving is collective: a scheduler's SIGTERM to the non-chief worker alone must make both
  workers save the same step and exit with the preemption code, not deadlock."""
  workdir = str(tmp_path / "mw")
  args = tiny_train_args(fashion_data_dir, workdir, "--strategy=multi_worker", "--cpu_devices=1")
  marker = str(tmp_path / "marker")
  # Only worker 1 pauses, so the signal lands while it runs Python (its handler runs at once)
  # and the chief waits for it in the next collective. (Were both to pause, whichever came
  # first would, and a worker blocked inside a collective handles the signal only after it:
  # then both stop one train call later, or finish if none is left.)
  procs = _start_workers(args, {"LS_KERAS_FAULT_PAUSE": f"step:40:{marker}"}, env_worker=1)
  deadline = time.time() + 300
  while not os.path.exists(marker) and time.time() < deadline and procs[1].poll() is None:
    time.sleep(0.05)
  assert os.path.exists(marker), f"worker 1 never paused at step 40 (exit {procs[1].poll()})"
  procs[1].send_signal(signal.SIGTERM)
  os.remove(marker)
  outputs = [p.communicate(timeout=300) for p in procs]
  assert [p.returncode for p in procs] == [cli.EXIT_PREEMPTED] * 2, outputs[0][1][-2000:]
  steps = {re.search(r"checkpoint of step (\d+)", err).group(1) for _, err in outputs}
  assert len(steps) == 1  # The same step on both.
  names = [os.path.basename(p) for p in checkpoints.listed(os.path.join(workdir, "checkpoints"))]
  assert names[-1] == f"ckpt-{steps.pop()}"
  outputs = [p.communicate(timeout=600) for p in _start_workers(args)]
  metrics = json.load(open(os.path.join(workdir, "metrics.json")))
  assert metrics["steps"] == 2 * (4096 // 128), outputs[0][1][-2000:]
