"""A full disk, a read-only folder, a path too long: every command answers in one paragraph.

The tests run as root, for whom every folder is writable, so a read-only folder or a full
disk is simulated: the write (or the writability check) raises the OS error a real one
would. Each asserts exit code 2, a message naming the path and the cause, no temporary
file left behind, and that the same command succeeds (resuming) once the cause is gone.
"""

import errno
import json
import os

import keras
import pytest
import tensorflow as tf

from conftest import fake_run, invoke, tiny_train_args, tree_hash
from ls_keras import cli
from ls_keras.core import workdir as workdir_lib
from ls_keras.core.errors import WorkdirError


@pytest.mark.parametrize(
  "code, cause, action",
  [
    (errno.ENOSPC, "the disk is full", "Free space"),
    (errno.EDQUOT, "quota", "Free space"),
    (errno.EROFS, "the folder is read-only", "Make it writable"),
    (errno.EACCES, "permission is denied", "Make it writable"),
    (errno.EPERM, "not permitted", "Make it writable"),
    (errno.ENAMETOOLONG, "the path is too long", "shorter path"),
    (errno.ENOTTY, os.strerror(errno.ENOTTY).lower(), "Fix that"),
    (None, "the file system refused", "Fix that"),
  ],
)
def test_os_error_words(code, cause, action):
  words, remedy = cli.os_error_words(code)
  assert cause in words and action in remedy


def test_os_error_message_names_the_path_the_cause_and_the_remedy():
  message = cli.os_error_message(errno.ENOSPC, "/runs/a/model.keras")
  assert message.startswith("cannot write /runs/a/model.keras: the disk is full")
  assert "Free space, then rerun the same command" in message
  assert "resumes from its last checkpoint" in message and "\n" not in message


def test_file_system_errors_are_told_from_other_errors():
  full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/runs/a/history.json")
  assert "/runs/a/history.json: the disk is full" in cli._file_system_error(full)
  moved = OSError(errno.EXDEV, os.strerror(errno.EXDEV), "/a", None, "/b")
  assert "/a and /b" in cli._file_system_error(moved)
  tf_full = tf.errors.ResourceExhaustedError(
    None, None, "/runs/a/checkpoints/ckpt-2.index; No space left on device"
  )
  assert "ckpt-2.index" in cli._file_system_error(tf_full)
  assert "the disk is full" in cli._file_system_error(tf_full)
  tf_read_only = tf.errors.PermissionDeniedError(None, None, "/runs/a/tb; Read-only file system")
  assert "the folder is read-only" in cli._file_system_error(tf_read_only)
  tf_not_a_folder = tf.errors.FailedPreconditionError(None, None, "/runs/a/tb; Not a directory")
  assert cli._file_system_error(tf_not_a_folder).startswith(
    "cannot access /runs/a/tb: not a directory."
  )
  # Not file-system errors: a bug's traceback must still show.
  assert cli._file_system_error(tf.errors.ResourceExhaustedError(None, None, "OOM")) is None
  assert cli._file_system_error(OSError("no errno")) is None
  assert cli._file_system_error(ValueError("bug")) is None


def test_guarded_answers_an_os_error_with_exit_2(capsys):
  def main(_):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), "/runs/a/metrics.json")

  assert cli._guarded(main, None) == cli.EXIT_BAD_INPUT
  err = capsys.readouterr().err
  assert err.startswith("error: cannot write /runs/a/metrics.json: the folder is read-only")
  assert err.count("\n") == 1


@pytest.mark.parametrize("failing", ["write", "fsync"])
def test_atomic_write_removes_its_temporary_file_when_the_disk_is_full(
  failing, tmp_path, monkeypatch
):
  def full(*args):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  if failing == "fsync":
    monkeypatch.setattr(os, "fsync", full)
  else:
    real_fdopen = os.fdopen

    class Full:
      def __init__(self, f):
        self.f = f

      def __enter__(self):
        return self

      def __exit__(self, *exc):
        self.f.close()

      def write(self, data):
        self.f.write(data[:3])  # Part of it reaches the disk.
        self.f.flush()
        full()

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
  path = tmp_path / "history.json"
  with pytest.raises(OSError) as raised:
    workdir_lib.atomic_write_json(str(path), {"epoch": 1})
  assert raised.value.errno == errno.ENOSPC
  assert os.listdir(tmp_path) == []


def test_check_writable_asks_every_folder_first(tmp_path, monkeypatch):
  runs = [tmp_path / "a", tmp_path / "b"]
  for run in runs:
    os.makedirs(run / "tb")
  workdir_lib.check_writable([str(r) for r in runs], "x", subfolders=("tb",))
  asked = []

  def access(path, mode):
    asked.append(os.fspath(path))
    return os.fspath(path) != str(runs[1] / "tb")

  monkeypatch.setattr(os, "access", access)
  with pytest.raises(WorkdirError, match=f"--workdir={runs[1]} is not writable: {runs[1]}/tb"):
    workdir_lib.check_writable([str(r) for r in runs], "x", subfolders=("tb",))
  assert asked == [str(runs[0]), str(runs[0] / "tb"), str(runs[1]), str(runs[1] / "tb")]


def test_check_path_length_uses_the_file_systems_limits(tmp_path, monkeypatch):
  workdir_lib.check_path_length(str(tmp_path / ("a" * 200)), "--workdir")
  limits = {"PC_NAME_MAX": 14, "PC_PATH_MAX": 4096}
  monkeypatch.setattr(os, "pathconf", lambda path, name: limits[name])
  with pytest.raises(WorkdirError, match="has 15 bytes, and this file system allows 14"):
    workdir_lib.check_path_length(str(tmp_path / ("a" * 15)), "--workdir")
  limits.update(PC_NAME_MAX=255, PC_PATH_MAX=len(str(tmp_path)) + 100)
  with pytest.raises(WorkdirError, match="including the 128 a run needs inside it"):
    workdir_lib.check_path_length(str(tmp_path / "run"), "--workdir")


# Analyses: every run they write into is checked before any is written.


@pytest.fixture
def two_runs(tmp_path):
  return [fake_run(tmp_path / "a", alpha=0.0).path, fake_run(tmp_path / "b", alpha=0.1).path]


def test_calibrate_refuses_a_read_only_second_run_before_writing_the_first(
  two_runs, tmp_path, monkeypatch
):
  real_access = os.access
  read_only = two_runs[1]
  monkeypatch.setattr(os, "access", lambda p, m: os.fspath(p) != read_only and real_access(p, m))
  before = tree_hash(tmp_path)
  out = str(tmp_path / "out")
  result = invoke(
    "calibrate", f"--workdir={two_runs[0]}", f"--workdir={read_only}", f"--output_dir={out}"
  )
  assert result.code == 2, result.err
  assert f"--workdir={read_only} is not writable" in result.err
  assert "calibration.json, reliability.png" in result.err
  assert tree_hash(tmp_path) == before


@pytest.mark.parametrize("command", ["project", "mutual_info"])
def test_other_analyses_check_the_runs_they_write_into(command, two_runs, tmp_path, monkeypatch):
  real_access = os.access
  read_only = two_runs[1]
  monkeypatch.setattr(os, "access", lambda p, m: os.fspath(p) != read_only and real_access(p, m))
  before = tree_hash(tmp_path)
  extra = ["--recompute"] if command == "mutual_info" else ["--classes=0,1,2"]
  result = invoke(
    command,
    f"--workdir={two_runs[0]}",
    f"--workdir={read_only}",
    f"--output_dir={tmp_path / 'out'}",
    *extra,
  )
  assert result.code == 2, result.err
  assert f"--workdir={read_only} is not writable" in result.err
  assert tree_hash(tmp_path) == before


def test_calibrate_on_a_read_only_folder_exits_2_and_leaves_no_temporary_file(
  two_runs, tmp_path, monkeypatch
):
  """The up-front check passed (the folder turned read-only after it): the write's error."""
  real_mkstemp = workdir_lib.tempfile.mkstemp

  def mkstemp(dir, **kwargs):
    if dir == two_runs[1]:
      raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.path.join(dir, ".x.tmp"))
    return real_mkstemp(dir=dir, **kwargs)

  monkeypatch.setattr(workdir_lib.tempfile, "mkstemp", mkstemp)
  out = str(tmp_path / "out")
  args = [f"--workdir={two_runs[0]}", f"--workdir={two_runs[1]}", f"--output_dir={out}"]
  result = invoke("calibrate", *args)
  assert result.code == 2, result.err
  assert f"cannot write {two_runs[1]}/.x.tmp: the folder is read-only" in result.err
  assert result.err.count("\n") == 1
  for folder, _, files in os.walk(tmp_path):
    assert not [f for f in files if f.endswith(".tmp")], folder
  monkeypatch.undo()
  assert invoke("calibrate", *args).code == 0


# Training: a full disk or a read-only workdir mid-run, then the same command resumes.


@pytest.fixture
def train_args(fashion_data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  args = tiny_train_args(
    fashion_data_dir,
    workdir,
    "--model=mlp",
    "--hidden_units=16",
    "--epochs=2",
    "--train_examples=1024",
    "--eval_examples=500",
  )
  return workdir, args


def _start_epochs(workdir):
  record = json.load(open(os.path.join(workdir, "config.json")))
  return [s["start_epoch"] for s in record["sessions"]]


def _leftovers(workdir):
  return [e for e in os.listdir(workdir) if e.startswith(".")]


@pytest.mark.parametrize("method", ["save", "export"])
def test_export_on_a_full_disk_removes_its_temporary_files_and_resumes(
  method, train_args, monkeypatch
):
  workdir, args = train_args

  def full(self, path, *a, **kw):
    if method == "save":
      open(path, "wb").write(b"PK half a zip")
    else:
      open(os.path.join(path, "saved_model.pb"), "wb").write(b"half")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

  monkeypatch.setattr(keras.Model, method, full)
  result = invoke("train", *args)
  assert result.code == 2, result.err[-2000:]
  assert "the disk is full" in result.err and f"{workdir}/." in result.err
  assert "rerun the same command" in result.err and result.err.count("\n") == 1
  assert _leftovers(workdir) == []
  assert not os.path.exists(os.path.join(workdir, "metrics.json"))
  monkeypatch.undo()
  result = invoke("train", *args)
  assert result.code == 0, result.err[-2000:]
  assert _start_epochs(workdir) == [0, 2]  # Resumed after the last epoch: nothing retrained.
  assert os.path.exists(os.path.join(workdir, "model.keras")) and _leftovers(workdir) == []


def test_a_workdir_turning_read_only_mid_run_exits_2_and_resumes(train_args, monkeypatch):
  workdir, args = train_args
  real = workdir_lib.atomic_write_json

  def write(path, obj):
    if path.endswith("history.json") and len(obj) == 2:  # The second epoch's record.
      raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
    real(path, obj)

  monkeypatch.setattr(workdir_lib, "atomic_write_json", write)
  result = invoke("train", *args)
  assert result.code == 2, result.err[-2000:]
  assert f"cannot write {workdir}/history.json: the folder is read-only" in result.err
  monkeypatch.undo()
  result = invoke("train", *args)
  assert result.code == 0, result.err[-2000:]
  assert _start_epochs(workdir) == [0, 1]  # From the checkpoint of epoch 1.
  assert [h["epoch"] for h in json.load(open(os.path.join(workdir, "history.json")))] == [1, 2]


def test_a_checkpoint_on_a_full_disk_exits_2_and_resumes(train_args, monkeypatch):
  """TensorFlow's own error type for a full disk is answered like an OSError."""
  workdir, args = train_args
  real, calls = tf.train.CheckpointManager.save, []

  def save(self, *a, **kw):
    calls.append(1)
    if len(calls) == 2:
      raise tf.errors.ResourceExhaustedError(
        None, None, f"{workdir}/checkpoints/ckpt-2_temp/part-00000; No space left on device"
      )
    return real(self, *a, **kw)

  monkeypatch.setattr(tf.train.CheckpointManager, "save", save)
  result = invoke("train", *args)
  assert result.code == 2, result.err[-2000:]
  assert (
    f"cannot write {workdir}/checkpoints/ckpt-2_temp/part-00000: the disk is full" in result.err
  )
  monkeypatch.undo()
  result = invoke("train", *args)
  assert result.code == 0, result.err[-2000:]
  assert _start_epochs(workdir) == [0, 1]
