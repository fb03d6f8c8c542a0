"""One owner per folder: an OS file lock plus a lease naming the owner, with a heartbeat.

A run holds the lease of its workdir for its whole life, and a sweep or the main job holds
its root's lease while it writes the report, so two processes never write one folder. The
lease is the file `.lease` in the folder:

- The owner holds an exclusive `flock` on it: on one machine (and on file systems whose
  locks work across machines) a second process is refused at once, and a killed owner's
  lock vanishes with its process.
- The file names the owner (host, pid, command, start) and a heartbeat the owner rewrites
  every HEARTBEAT_SECONDS. Where locks are unreliable (some network file systems), a lease
  whose heartbeat is younger than STALE_SECONDS still refuses others; an older one, or one
  whose process is gone from this host, is stale and is taken over, with a log line saying
  so.

The owner checks, before each write that matters (a checkpoint, the final metrics), that
the lease still names it (`Lease.verify`): a process paused past STALE_SECONDS whose lease
another took over stops instead of writing over the new owner's work.
"""

import dataclasses
import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
from typing import Optional

from absl import logging

from ls_keras.core.errors import WorkdirError

LEASE_FILE = ".lease"
HEARTBEAT_SECONDS = 30.0
# A heartbeat older than this means the owner is gone (10 heartbeats missed, and room for
# clocks that differ between machines sharing the storage).
STALE_SECONDS = 600.0


@dataclasses.dataclass(frozen=True)
class Owner:
  """Who holds a lease: host, process id, command line, and when it started and last beat."""

  host: str
  pid: int
  command: str
  started: float
  heartbeat: float

  def describe(self, now: Optional[float] = None) -> str:
    """'process 123 on host (ls_keras.train ...), started 12:00:00, last heartbeat 5 s ago'."""
    now = time.time() if now is None else now
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
    return (
      f"process {self.pid} on {self.host} ({self.command[:80]}), started {started}, last "
      f"heartbeat {max(now - self.heartbeat, 0):.0f} s ago"
    )

  def is_me(self) -> bool:
    """Whether this process is the owner."""
    return self.host == socket.gethostname() and self.pid == os.getpid()


def is_stale(owner: Owner, now: float, process_alive) -> bool:
  """Whether a lease that nobody holds the lock of may be taken over.

  Args:
    owner: what the lease file says.
    now: the current time (seconds since the epoch).
    process_alive: pid -> bool, whether a process of this host is alive.

  A lease on this host is stale when its process is gone (the lock already says it is not
  held, but a file system without working locks says nothing); one of another host when its
  heartbeat is older than STALE_SECONDS.
  """
  if now - owner.heartbeat > STALE_SECONDS:
    return True
  return owner.host == socket.gethostname() and not process_alive(owner.pid)


def _process_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # Another user's process.
  return True


def _parse(text: str) -> Optional[Owner]:
  try:
    record = json.loads(text)
    return Owner(
      str(record["host"]),
      int(record["pid"]),
      str(record["command"]),
      float(record["started"]),
      float(record["heartbeat"]),
    )
  except (ValueError, KeyError, TypeError):
    return None  # Empty (being written) or garbled: nobody identifiable.


def read_owner(folder: str) -> Optional[Owner]:
  """The owner named in `folder`'s lease file, or None when there is none (or it is garbled)."""
  try:
    with open(os.path.join(folder, LEASE_FILE)) as f:
      return _parse(f.read())
  except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
    return None


class LeaseHeldError(WorkdirError):
  """Another live process owns the folder."""

  def __init__(self, message: str, owner: Optional[Owner]):
    super().__init__(message)
    self.owner = owner

  @property
  def owner_text(self) -> str:
    """The owner in words ('another process' when the lease does not say)."""
    return self.owner.describe() if self.owner else "another process"


class Lease:
  """The lease of one folder: `with Lease(path, what):` owns it for the block.

  Creates the folder if needed (and removes it again on release if it created it and left
  it empty, so a refused run leaves nothing).

  Raises (on entry):
    LeaseHeldError: another live process owns the folder; the message names it.
  """

  def __init__(self, folder: str, what: str = "this workdir"):
    self.folder, self.what = os.path.abspath(folder), what
    self.path = os.path.join(self.folder, LEASE_FILE)
    self._fd: Optional[int] = None
    self._created: Optional[str] = None  # The outermost folder acquire() created, if any.
    self._stop = threading.Event()
    self._thread: Optional[threading.Thread] = None
    self._me: Optional[Owner] = None
    self.took_over: Optional[Owner] = None

  def __enter__(self) -> "Lease":
    if self._fd is None:  # Not taken yet (claim_report hands over a taken one).
      self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()

  def acquire(self) -> None:
    """Takes the lock and writes this process into the lease (see the module docstring)."""
    if not os.path.isdir(self.folder):
      outermost = self.folder
      while not os.path.exists(os.path.dirname(outermost)):
        outermost = os.path.dirname(outermost)
      try:
        os.makedirs(self.folder)
        self._created = outermost
      except FileExistsError:
        pass  # Another worker made it between our look and ours: not ours to remove.
    while True:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except OSError as e:
        os.close(fd)
        if e.errno not in (errno.EAGAIN, errno.EACCES):
          raise
        self._refuse(read_owner(self.folder))
      try:
        same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
      except FileNotFoundError:
        same = False
      if same:
        break
      os.close(fd)  # The previous owner removed the file between our open and our lock.
    previous = _parse(os.pread(fd, 1 << 16, 0).decode("utf-8", "replace"))
    if previous is not None and not previous.is_me():
      if not is_stale(previous, time.time(), _process_alive):
        os.close(fd)
        self._refuse(previous)
      self.took_over = previous
      logging.warning(
        "Took over the stale lease of %s: it was held by %s.", self.folder, previous.describe()
      )
    self._fd = fd
    now = time.time()
    self._me = Owner(socket.gethostname(), os.getpid(), " ".join(sys.argv), now, now)
    self._write()
    self._thread = threading.Thread(target=self._beat, name="ls_keras-lease", daemon=True)
    self._thread.start()

  def _refuse(self, owner: Optional[Owner]) -> None:
    self._remove_created_folder()
    who = owner.describe() if owner else "another process (its lease is being written)"
    raise LeaseHeldError(
      f"{self.folder} is in use by {who}. Two processes writing {self.what} would mix their "
      f"results, so this one stops. Wait for it to finish (or stop it), or use another folder. "
      f"A lease whose owner died is taken over once its process is gone or its heartbeat is "
      f"{STALE_SECONDS:.0f} s old.",
      owner,
    )

  def _write(self) -> None:
    data = json.dumps(dataclasses.asdict(self._me)).encode()
    os.pwrite(self._fd, data, 0)
    os.ftruncate(self._fd, len(data))
    os.fsync(self._fd)

  def _beat(self) -> None:
    while not self._stop.wait(HEARTBEAT_SECONDS):
      try:
        if read_owner(self.folder) != self._me:
          return  # Taken over: verify() says so to the writer.
        self._me = dataclasses.replace(self._me, heartbeat=time.time())
        self._write()
      except OSError as e:  # A full or vanished disk: the writes themselves will say so.
        logging.warning("Could not renew the lease %s: %s", self.path, e)

  def verify(self) -> None:
    """Raises LeaseHeldError if another process has taken the lease over since we took it."""
    owner = read_owner(self.folder)
    if self._me is not None and (
      owner is None
      or (owner.host, owner.pid)
      != (
        self._me.host,
        self._me.pid,
      )
    ):
      raise LeaseHeldError(
        f"{self.folder} was taken over by {owner.describe() if owner else 'another process'} "
        f"while this process held it (it was paused or cut off for over {STALE_SECONDS:.0f} s); "
        "this process stops without writing, leaving the folder to its new owner.",
        owner,
      )

  def release(self) -> None:
    """Stops the heartbeat, removes the lease file (if still ours) and unlocks."""
    if self._fd is None:
      return
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
    try:
      if read_owner(self.folder) == self._me:
        os.remove(self.path)
    except OSError:
      pass  # The folder is gone or read-only; the lock still goes with the descriptor.
    os.close(self._fd)
    self._fd = None
    self._remove_created_folder()

  def _remove_created_folder(self) -> None:
    """Removes the folders acquire() created, where they are still empty (a refused run)."""
    if self._created is None:
      return
    folder = self.folder
    try:
      while True:
        os.rmdir(folder)  # Fails on a folder that is not empty: the run's files stay.
        if folder == self._created:
          break
        folder = os.path.dirname(folder)
    except OSError:
      pass
    self._created = None


def check_free(folder: str, what: str = "this workdir") -> None:
  """Raises LeaseHeldError at once when a live process owns `folder` (read-only, no lock kept).

  Lets a command refuse before it spends seconds loading data and building a model; the
  lease itself, taken later, is what guarantees one owner.
  """
  owner = holder(folder)
  if owner is not None:
    Lease(folder, what)._refuse(owner)


def holder(folder: str) -> Optional[Owner]:
  """The live owner of `folder`'s lease, or None if it is free (taking nothing).

  Used by sweeps to skip runs another worker is training, without waiting for the data
  and model a run builds before it claims its workdir.
  """
  path = os.path.join(folder, LEASE_FILE)
  try:
    fd = os.open(path, os.O_RDONLY)
  except (FileNotFoundError, NotADirectoryError):
    return None
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
      return read_owner(folder) or Owner("?", 0, "?", 0.0, time.time())
    fcntl.flock(fd, fcntl.LOCK_UN)
  finally:
    os.close(fd)
  owner = read_owner(folder)
  if owner is not None and not owner.is_me() and not is_stale(owner, time.time(), _process_alive):
    return owner
  return None
