"""Faults: SIGKILL at chosen points then resume; determinism; corrupt inputs get clear errors."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, run_cli, tiny_train_args

EPOCHS = ["--epochs=3"]


def _tree_hash(path):
  digest = hashlib.sha256()
  for root, dirs, files in sorted(os.walk(path)):
    dirs.sort()
    for name in sorted(files):
      full = os.path.join(root, name)
      digest.update(full.encode())
      digest.update(open(full, "rb").read())
  return digest.hexdigest()


def _run_until_paused(module, args, pause, marker, timeout=300):
  """Starts `module`, waits for the fault-injection pause, then SIGKILLs it."""
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "LS_KERAS_FAULT_PAUSE": f"{pause}:{marker}"}
  proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + timeout
  while not os.path.exists(marker) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  assert os.path.exists(marker), f"never reached {pause}: {proc.stderr.read()[-2000:] if proc.poll() is not None else ''}"
  proc.send_signal(signal.SIGKILL)
  proc.wait()


@pytest.fixture(scope="module")
def uninterrupted(fashion_data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("ref") / "w")
  result = run_cli("ls_keras.train", *tiny_train_args(fashion_data_dir, workdir, *EPOCHS))
  assert result.returncode == 0, result.stderr[-3000:]
  return json.load(open(os.path.join(workdir, "metrics.json")))


@pytest.mark.parametrize("pause, checkpoint_after_kill", [
    ("step:45", "ckpt-1"),  # Mid-epoch 2 (32 steps an epoch).
    ("checkpoint:2", "ckpt-1"),  # Inside the write of checkpoint 2: its files exist, the index names ckpt-1.
    ("step:70", "ckpt-2"),  # Mid-epoch 3.
])
def test_sigkill_then_rerun_resumes_and_matches_uninterrupted(pause, checkpoint_after_kill, uninterrupted,
                                                              fashion_data_dir, tmp_path):
  workdir = str(tmp_path / "w")
  args = tiny_train_args(fashion_data_dir, workdir, *EPOCHS)
  _run_until_paused("ls_keras.train", args, pause, str(tmp_path / "marker"))
  assert not os.path.exists(os.path.join(workdir, "metrics.json"))
  index = open(os.path.join(workdir, "checkpoints", "checkpoint")).read()
  assert f'model_checkpoint_path: "{checkpoint_after_kill}"' in index
  done = int(checkpoint_after_kill[-1])
  kept = json.load(open(os.path.join(workdir, "history.json")))[:done]
  result = run_cli("ls_keras.train", *args)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"Resuming from {os.path.join(workdir, 'checkpoints', checkpoint_after_kill)}" in result.stdout
  history = json.load(open(os.path.join(workdir, "history.json")))
  assert [h["epoch"] for h in history] == [1, 2, 3] and history[:done] == kept  # No completed epoch lost.
  metrics = json.load(open(os.path.join(workdir, "metrics.json")))
  assert metrics["steps"] == uninterrupted["steps"]
  assert metrics["validation"]["accuracy"] == pytest.approx(uninterrupted["validation"]["accuracy"], abs=0.02)


def test_deterministic_runs_write_identical_metrics(fashion_data_dir, tmp_path):
  outputs = []
  for name in ("a", "b"):
    workdir = str(tmp_path / name)
    result = run_cli("ls_keras.train", *tiny_train_args(fashion_data_dir, workdir, "--deterministic", "--epochs=1"))
    assert result.returncode == 0, result.stderr[-3000:]
    outputs.append(open(os.path.join(workdir, "metrics.json"), "rb").read())
  assert outputs[0] == outputs[1]


@pytest.fixture(scope="module")
def finished(fashion_data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("fin") / "w")
  result = run_cli("ls_keras.train", *tiny_train_args(fashion_data_dir, workdir, "--epochs=1"))
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


def _copy(src, dst):
  shutil.copytree(src, dst)
  return str(dst)


def _truncate(path, keep=0.5):
  data = open(path, "rb").read()
  open(path, "wb").write(data[:int(len(data) * keep)])


def _expect_exit_2(module, args, workdir, message):
  before = _tree_hash(workdir)
  result = run_cli(module, *args, timeout=180)
  assert result.returncode == 2, result.stderr[-2000:]
  assert message in result.stderr and "Traceback" not in result.stderr, result.stderr[-2000:]
  assert _tree_hash(workdir) == before, "a failed command must not change the workdir"


def test_truncated_checkpoint_on_resume(finished, fashion_data_dir, tmp_path):
  workdir = _copy(finished, tmp_path / "w")
  os.remove(os.path.join(workdir, "metrics.json"))  # Unfinished: the rerun must resume from the checkpoint.
  _truncate(os.path.join(workdir, "checkpoints", "ckpt-1.data-00000-of-00001"))
  _expect_exit_2("ls_keras.train", tiny_train_args(fashion_data_dir, workdir, "--epochs=1"), workdir,
                 "cannot be restored")


def test_truncated_keras_file(finished, tmp_path):
  workdir = _copy(finished, tmp_path / "w")
  _truncate(os.path.join(workdir, "model.keras"))
  _expect_exit_2("ls_keras.project", [f"--workdir={workdir}", "--classes=0,1,2", "--examples_per_class=10",
                                      f"--output_dir={tmp_path / 'o'}"],
                 workdir, "truncated, corrupt or not a Keras model")


def test_truncated_saved_model(finished, fashion_data_dir, tmp_path):
  workdir = _copy(finished, tmp_path / "w")
  _truncate(os.path.join(workdir, "saved_model", "saved_model.pb"))
  _expect_exit_2("ls_keras.distill", [f"--teacher={os.path.join(workdir, 'saved_model')}",
                                      *tiny_train_args(fashion_data_dir, str(tmp_path / "s"))], workdir,
                 "truncated or corrupt")


def test_workdir_of_an_incompatible_version(finished, fashion_data_dir, tmp_path):
  workdir = _copy(finished, tmp_path / "w")
  path = os.path.join(workdir, "config.json")
  record = json.load(open(path))
  record["format"] = 99
  json.dump(record, open(path, "w"))
  _expect_exit_2("ls_keras.train", tiny_train_args(fashion_data_dir, workdir, "--epochs=1"), workdir,
                 "incompatible ls_keras")
  _expect_exit_2("ls_keras.calibrate", [f"--workdir={workdir}", f"--output_dir={tmp_path / 'o'}"], workdir,
                 "incompatible ls_keras")


def test_garbled_config(finished, fashion_data_dir, tmp_path):
  workdir = _copy(finished, tmp_path / "w")
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write('{"format": 1, "kind": "tra')
  _expect_exit_2("ls_keras.train", tiny_train_args(fashion_data_dir, workdir, "--epochs=1"), workdir,
                 "not valid JSON")


def test_keras_files_load_in_safe_mode(tmp_path):
  """A .keras file carrying a lambda (arbitrary code) is refused, not executed."""
  import keras
  from ls_keras import export
  model = keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda x: x * 2, name="penultimate"),
                            keras.layers.Dense(2, name="logits")])
  model.save(tmp_path / "lambda.keras")
  with pytest.raises(Exception, match="safe_mode|Lambda|lambda"):
    export.load_keras_model(str(tmp_path / "lambda.keras"))


def test_killed_sweep_reuses_finished_runs_and_completes(fashion_data_dir, tmp_path):
  root = str(tmp_path / "sweep")
  args = ["--preset=tiny", f"--root={root}", f"--data_dir={fashion_data_dir}"]
  # Pause (then kill) inside the 4th run's checkpoint write: 3 runs are finished by then.
  marker = str(tmp_path / "marker")
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
  proc = subprocess.Popen([sys.executable, "-m", "ls_keras.kd_sweep", *args], cwd=REPO, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 600
  finished_runs = lambda: [d for d in os.listdir(root) if os.path.exists(os.path.join(root, d, "metrics.json"))] \
      if os.path.isdir(root) else []  # noqa: E731
  while len(finished_runs()) < 3 and proc.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  done = {d: os.path.getmtime(os.path.join(root, d, "metrics.json")) for d in finished_runs()}
  assert 3 <= len(done) < 11, done
  del marker
  result = run_cli("ls_keras.kd_sweep", *args, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.count("finished earlier, reused") == len(done)
  assert all(os.path.getmtime(os.path.join(root, d, "metrics.json")) == t for d, t in done.items())
  assert len(finished_runs()) == 11 and os.path.exists(os.path.join(root, "kd_sweep.md"))
