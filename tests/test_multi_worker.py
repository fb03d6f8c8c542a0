"""MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1 run the loop of one process."""

import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import REPO, tiny_train_args


def _free_ports(n):
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


@pytest.mark.slow
def test_two_workers_finish_chief_writes_and_match_one_process(
  fashion_data_dir, tiny_runs, tmp_path
):
  workdir = str(tmp_path / "mw")
  args = tiny_train_args(fashion_data_dir, workdir, "--strategy=multi_worker", "--cpu_devices=1")
  cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
  procs = []
  for index in range(2):
    env = {
      **os.environ,
      "TF_CPP_MIN_LOG_LEVEL": "3",
      "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
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
