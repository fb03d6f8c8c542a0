"""core/lease.py: one owner per folder, a live owner refuses others, a dead one is taken over."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from ls_keras.core import lease

HOLD = """
import sys, time
from ls_keras.core import lease
held = lease.Lease(sys.argv[1])
held.acquire()
print("held", flush=True)
time.sleep(600)
"""


@pytest.fixture
def other_process(tmp_path):
  """Starts a process that holds tmp_path/'run''s lease; yields (folder, process)."""
  folder = str(tmp_path / "run")
  proc = subprocess.Popen([sys.executable, "-c", HOLD, folder], stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == "held"
  yield folder, proc
  proc.kill()
  proc.wait()


def _write_owner(folder, **fields):
  now = time.time()
  record = {
    "host": socket.gethostname(),
    "pid": os.getpid(),
    "command": "ls_keras.train",
    "started": now,
    "heartbeat": now,
    **fields,
  }
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, lease.LEASE_FILE), "w") as f:
    json.dump(record, f)


def test_a_live_owner_refuses_a_second_process_naming_it(other_process):
  folder, proc = other_process
  with pytest.raises(lease.LeaseHeldError, match=f"in use by process {proc.pid} on "):
    lease.Lease(folder).acquire()
  assert lease.holder(folder).pid == proc.pid


def test_a_killed_owner_is_taken_over_and_said_so(other_process):
  folder, proc = other_process
  proc.kill()
  proc.wait()
  assert lease.holder(folder) is None
  with lease.Lease(folder) as mine:
    assert mine.took_over is not None and mine.took_over.pid == proc.pid
    assert lease.read_owner(folder).is_me()
  assert not os.path.exists(os.path.join(folder, lease.LEASE_FILE))  # Released: removed.


def test_without_working_locks_a_fresh_heartbeat_of_another_host_still_refuses(tmp_path):
  """A shared file system whose locks do not cross machines: the heartbeat decides."""
  folder = str(tmp_path / "run")
  _write_owner(folder, host="node-17", pid=4242)
  with pytest.raises(lease.LeaseHeldError, match="process 4242 on node-17"):
    lease.Lease(folder).acquire()
  _write_owner(folder, host="node-17", pid=4242, heartbeat=time.time() - lease.STALE_SECONDS - 5)
  with lease.Lease(folder) as mine:
    assert mine.took_over.host == "node-17"


def test_same_host_lease_of_a_live_process_refuses_even_without_its_lock(tmp_path):
  folder = str(tmp_path / "run")
  sleeper = subprocess.Popen(["sleep", "60"])
  try:
    _write_owner(folder, pid=sleeper.pid)
    with pytest.raises(lease.LeaseHeldError, match=f"process {sleeper.pid}"):
      lease.Lease(folder).acquire()
  finally:
    sleeper.kill()
    sleeper.wait()
  with lease.Lease(folder) as mine:  # Its process is gone: stale.
    assert mine.took_over.pid == sleeper.pid


def test_verify_stops_an_owner_whose_lease_was_taken_over(tmp_path):
  folder = str(tmp_path / "run")
  with lease.Lease(folder) as mine:
    mine.verify()
    _write_owner(folder, host="node-3", pid=7)
    with pytest.raises(lease.LeaseHeldError, match="taken over by process 7 on node-3"):
      mine.verify()
  assert lease.read_owner(folder).host == "node-3"  # Release leaves the new owner's lease.


def test_a_refused_acquire_leaves_no_folder_behind(other_process, tmp_path):
  folder, _ = other_process
  with pytest.raises(lease.LeaseHeldError):
    lease.Lease(folder).acquire()
  assert os.path.isdir(folder)  # The owner's folder stays.
  nested = tmp_path / "a" / "b" / "run"
  with lease.Lease(str(nested)):
    assert nested.is_dir()
  assert not (tmp_path / "a").exists()  # Created by the lease, empty again: removed.


def test_heartbeat_renews_the_lease(tmp_path, monkeypatch):
  monkeypatch.setattr(lease, "HEARTBEAT_SECONDS", 0.05)
  folder = str(tmp_path / "run")
  with lease.Lease(folder):
    first = lease.read_owner(folder).heartbeat
    time.sleep(0.3)
    assert lease.read_owner(folder).heartbeat > first


@pytest.mark.parametrize(
  "host, age, alive, stale",
  [
    ("here", 5, True, False),
    ("here", 5, False, True),  # Its process is gone.
    ("there", 5, False, False),  # Another machine's pid says nothing here.
    ("there", lease.STALE_SECONDS + 1, True, True),
  ],
)
def test_is_stale(host, age, alive, stale):
  now = 1e9
  owner = lease.Owner(
    socket.gethostname() if host == "here" else "elsewhere", 99, "cmd", now - 100, now - age
  )
  assert lease.is_stale(owner, now, lambda pid: alive) is stale


def test_a_folder_another_worker_creates_at_the_same_moment_is_shared_not_an_error(
  tmp_path, monkeypatch
):
  """Two workers of a sweep reach a new run together: the one whose mkdir comes second
  must take the lease as usual (it once exited 2 with 'file exists'), and leave the folder."""
  folder = tmp_path / "run"
  folder.mkdir()
  monkeypatch.setattr(lease.os.path, "isdir", lambda path: False)  # Looked before it existed.
  with lease.Lease(str(folder)) as mine:
    assert lease.read_owner(str(folder)).is_me()
  monkeypatch.undo()
  assert folder.is_dir() and mine.took_over is None
