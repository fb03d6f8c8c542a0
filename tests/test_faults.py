"""Faults: SIGKILL at chosen points then resume; divergence; determinism; killed sweeps.

Corrupt and foreign inputs are the table in tests/test_bad_input.py.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, invoke, tiny_train_args, tree_hash_except
from ls_keras import cli
from ls_keras.core import lease
from ls_keras.core import checkpoints

EPOCHS = ["--epochs=3"]


def _start_paused(module, args, pause, marker, timeout=300):
  """Starts `module` and returns it once paused at the fault-injection point `pause`."""
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "LS_KERAS_FAULT_PAUSE": f"{pause}:{marker}"}
  proc = subprocess.Popen(
    [sys.executable, "-m", module, *args],
    cwd=REPO,
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
  )
  deadline = time.time() + timeout
  while not os.path.exists(marker) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  assert os.path.exists(marker), (
    f"never reached {pause}: {proc.stderr.read()[-2000:] if proc.poll() is not None else ''}"
  )
  return proc


def _run_until_paused(module, args, pause, marker, timeout=300):
  """Starts `module`, waits for the fault-injection pause, then SIGKILLs it."""
  proc = _start_paused(module, args, pause, marker, timeout)
  proc.send_signal(signal.SIGKILL)
  proc.wait()


@pytest.fixture(scope="module")
def uninterrupted(fashion_data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("ref") / "w")
  result = invoke("train", *tiny_train_args(fashion_data_dir, workdir, *EPOCHS))
  assert result.code == 0, result.err[-3000:]
  return json.load(open(os.path.join(workdir, "metrics.json")))


@pytest.mark.slow
@pytest.mark.parametrize(
  "pause, checkpoint_after_kill",
  [
    ("step:45", "ckpt-32"),  # Mid-epoch 2 (32 steps an epoch; checkpoints named by step).
    # Inside the write of epoch 2's checkpoint: its files exist, the index names ckpt-32.
    ("checkpoint:64", "ckpt-32"),
  ],
)
def test_sigkill_then_rerun_resumes_and_matches_uninterrupted(
  pause, checkpoint_after_kill, uninterrupted, fashion_data_dir, tmp_path
):
  workdir = str(tmp_path / "w")
  args = tiny_train_args(fashion_data_dir, workdir, *EPOCHS)
  _run_until_paused("ls_keras.train", args, pause, str(tmp_path / "marker"))
  assert not os.path.exists(os.path.join(workdir, "metrics.json"))
  index = open(os.path.join(workdir, "checkpoints", "checkpoint")).read()
  assert f'model_checkpoint_path: "{checkpoint_after_kill}"' in index
  done = int(checkpoint_after_kill.split("-")[1]) // 32  # Epochs the checkpoint holds.
  kept = json.load(open(os.path.join(workdir, "history.json")))[:done]
  result = invoke("train", *args)
  assert result.code == 0, result.err[-3000:]
  sessions = json.load(open(os.path.join(workdir, "config.json")))["sessions"]
  assert [s["start_epoch"] for s in sessions] == [
    0,
    done,
  ]  # Resumed from the last complete checkpoint.
  history = json.load(open(os.path.join(workdir, "history.json")))
  assert [h["epoch"] for h in history] == [1, 2, 3] and history[
    :done
  ] == kept  # No completed epoch lost.
  metrics = json.load(open(os.path.join(workdir, "metrics.json")))
  assert metrics["steps"] == uninterrupted["steps"]
  assert metrics["validation"]["accuracy"] == pytest.approx(
    uninterrupted["validation"]["accuracy"], abs=0.02
  )


def test_deterministic_runs_write_identical_metrics(fashion_data_dir, tmp_path):
  outputs = []
  for name in ("a", "b"):
    workdir = str(tmp_path / name)
    result = invoke(
      "train", *tiny_train_args(fashion_data_dir, workdir, "--deterministic", "--epochs=1")
    )
    assert result.code == 0, result.err[-3000:]
    outputs.append(open(os.path.join(workdir, "metrics.json"), "rb").read())
  assert outputs[0] == outputs[1]
  from tensorflow.python.framework import config as tf_config

  assert not tf_config.is_op_determinism_enabled()  # Switched off again for the runs that follow.


def test_diverging_run_stops_at_once_with_exit_2_and_no_metrics(fashion_data_dir, tmp_path):
  workdir = tmp_path / "w"
  result = invoke(
    "train", *tiny_train_args(fashion_data_dir, workdir, "--learning_rate=1e6", "--epochs=1")
  )
  assert result.code == 2, result.err[-2000:]
  assert re.search(r"training diverged: .* at step \d+ \(epoch 1\)", result.err), result.err
  assert "--learning_rate=1e+06" in result.err
  assert not (workdir / "metrics.json").exists() and not (workdir / "checkpoints").exists()


def test_divergence_in_epoch_2_keeps_the_checkpoint_of_epoch_1(
  fashion_data_dir, tmp_path, monkeypatch
):
  from ls_keras import training

  original = training.Loop.train

  def diverge_in_epoch_2(self, iterator, num_steps):
    if int(self.model.optimizer.iterations.numpy()) >= 40:  # 32 steps an epoch.
      raise training.NonFiniteLoss(steps_done=3)
    return original(self, iterator, num_steps)

  monkeypatch.setattr(training.Loop, "train", diverge_in_epoch_2)
  workdir = tmp_path / "w"
  result = invoke("train", *tiny_train_args(fashion_data_dir, workdir, "--steps_per_execution=8"))
  assert (
    result.code == 2
    and "at step 44 (epoch 2)" in result.err
    and "checkpoint of epoch 1" in result.err
  )
  index = (workdir / "checkpoints" / "checkpoint").read_text()
  assert 'model_checkpoint_path: "ckpt-32"' in index and not (workdir / "metrics.json").exists()
  assert [h["epoch"] for h in json.load(open(workdir / "history.json"))] == [1]


def test_keras_files_load_in_safe_mode(tmp_path):
  """A .keras file carrying a lambda (arbitrary code) is refused, not executed."""
  import keras
  from ls_keras.models import export

  model = keras.Sequential(
    [
      keras.Input((2,)),
      keras.layers.Lambda(lambda x: x * 2, name="penultimate"),
      keras.layers.Dense(2, name="logits"),
    ]
  )
  model.save(tmp_path / "lambda.keras")
  with pytest.raises(Exception, match="safe_mode|Lambda|lambda"):
    export.load_keras_model(str(tmp_path / "lambda.keras"))


@pytest.mark.slow
def test_killed_sweep_reuses_finished_runs_and_completes(tiny_sweep):
  """The session's tiny sweep was SIGKILLed after 3 finished runs, then rerun to the end."""
  root, _, killed = tiny_sweep
  assert 3 <= len(killed) < 11, killed
  assert all(
    os.path.getmtime(path) == stamp for path, stamp in killed.items()
  )  # Reused, not redone.
  finished = [d for d in os.listdir(root) if os.path.exists(os.path.join(root, d, "metrics.json"))]
  assert len(finished) == 11 and os.path.exists(os.path.join(root, "kd_sweep.md"))


def _train_interrupted_at_step(monkeypatch, args, step):
  """Runs `train` with `args` in-process, interrupted (KeyboardInterrupt) once it reaches `step`."""
  from ls_keras import training

  original = training.Loop.train

  def stop(self, iterator, num_steps):
    if int(self.model.optimizer.iterations.numpy()) >= step:
      raise KeyboardInterrupt("killed")
    return original(self, iterator, num_steps)

  monkeypatch.setattr(training.Loop, "train", stop)
  with pytest.raises(KeyboardInterrupt):
    invoke("train", *args)
  monkeypatch.undo()


def test_a_resumed_run_with_dropout_matches_the_uninterrupted_one(
  fashion_data_dir, tmp_path, monkeypatch
):
  """Dropout's random state is checkpointed too: with --deterministic, a run interrupted after
  epoch 1 and resumed ends bit-identical to one that never stopped."""

  def args(name):
    return tiny_train_args(
      fashion_data_dir,
      tmp_path / name,
      "--model=mlp",
      "--hidden_units=64",
      "--dropout=0.3",
      "--deterministic",
      "--train_examples=2048",
      "--eval_examples=500",
    )

  assert invoke("train", *args("straight")).code == 0
  _train_interrupted_at_step(monkeypatch, args("resumed"), 16)  # 16 steps an epoch.
  assert invoke("train", *args("resumed")).code == 0
  straight, resumed = (
    json.load(open(tmp_path / n / "metrics.json")) for n in ("straight", "resumed")
  )
  assert resumed == straight


def test_a_resumed_online_ls_run_continues_with_the_same_soft_labels(
  fashion_data_dir, tmp_path, monkeypatch
):
  """Online LS' state is checkpointed too: killed mid-epoch 2 (after the step checkpoint of
  step 24) and resumed, the run restores S^1 and the partial sums of epoch 2, so S^2 and
  epoch 3 end bit-identical to a run that never stopped."""
  import keras

  def args(name):
    return tiny_train_args(
      fashion_data_dir,
      tmp_path / name,
      "--model=mlp",
      "--hidden_units=32",
      "--loss=online_ls",
      "--deterministic",
      "--epochs=3",
      "--checkpoint_every_steps=8",
      "--train_examples=2048",
      "--eval_examples=500",
    )

  assert invoke("train", *args("straight")).code == 0
  _train_interrupted_at_step(monkeypatch, args("resumed"), 24)  # Mid-epoch 2 of 16 steps.
  listed = checkpoints.listed(str(tmp_path / "resumed" / "checkpoints"))
  assert os.path.basename(listed[-1]) == "ckpt-24"
  assert invoke("train", *args("resumed")).code == 0
  straight, resumed = (
    json.load(open(tmp_path / n / "metrics.json")) for n in ("straight", "resumed")
  )
  assert resumed == straight
  # Exported without the loss plain Keras cannot rebuild: it loads as README promises.
  keras.saving.load_model(str(tmp_path / "straight" / "model.keras"), safe_mode=True)


def _hash_without_lease(path):
  """The workdir's digest, leaving out the lease file its owner's heartbeat rewrites."""
  return tree_hash_except(path, lease.LEASE_FILE)


@pytest.mark.slow
def test_a_live_run_owns_its_workdir_against_a_rerun_and_an_overwrite(fashion_data_dir, tmp_path):
  """While a run trains, neither the same command nor --overwrite with another alpha may touch
  its workdir: both are refused at once, naming the owner, and the folder is unchanged."""
  workdir = str(tmp_path / "w")
  args = tiny_train_args(fashion_data_dir, workdir, *EPOCHS)
  marker = str(tmp_path / "marker")
  proc = _start_paused("ls_keras.train", args, "step:45", marker)
  try:
    before = _hash_without_lease(workdir)
    for extra in ([], ["--overwrite", "--alpha=0.1"]):
      result = invoke("train", *args, *extra)
      assert result.code == 2, result.err[-2000:]
      assert f"is in use by process {proc.pid} on " in result.err, result.err
      assert _hash_without_lease(workdir) == before
    os.remove(marker)  # Let the owner finish: its results are its own.
    assert proc.wait(timeout=300) == 0, proc.stderr.read()[-2000:]
  finally:
    proc.kill()
  assert json.load(open(os.path.join(workdir, "config.json")))["config"]["alpha"] == 0.0
  assert not os.path.exists(os.path.join(workdir, lease.LEASE_FILE))


@pytest.mark.slow
def test_sigterm_saves_the_step_and_the_rerun_resumes_from_it(
  uninterrupted, fashion_data_dir, tmp_path
):
  """What a scheduler does before preemption: SIGTERM mid-epoch 2. The run saves the step it
  reached, exits with the preemption code, and the rerun resumes from that very step."""
  workdir = str(tmp_path / "w")
  args = tiny_train_args(fashion_data_dir, workdir, *EPOCHS)
  marker = str(tmp_path / "marker")
  proc = _start_paused("ls_keras.train", args, "step:45", marker)
  proc.send_signal(signal.SIGTERM)
  os.remove(marker)
  assert proc.wait(timeout=300) == cli.EXIT_PREEMPTED
  err = proc.stderr.read()
  step = int(re.search(r"checkpoint of step (\d+)", err).group(1))
  assert 45 <= step < 64 and "Rerun the same command" in err, err
  assert checkpoints.listed(os.path.join(workdir, "checkpoints"))[-1].endswith(f"ckpt-{step}")
  result = invoke("train", *args)
  assert result.code == 0, result.err[-3000:]
  sessions = json.load(open(os.path.join(workdir, "config.json")))["sessions"]
  assert [s["start_epoch"] for s in sessions] == [0, 1]  # Resumed inside epoch 2.
  metrics = json.load(open(os.path.join(workdir, "metrics.json")))
  assert metrics["steps"] == uninterrupted["steps"]
  assert [h["epoch"] for h in json.load(open(os.path.join(workdir, "history.json")))] == [1, 2, 3]


def _deterministic_args(data_dir, workdir, *extra):
  return tiny_train_args(
    data_dir, workdir, "--deterministic", "--train_examples=2048", "--eval_examples=500", *extra
  )


def test_a_run_preempted_mid_epoch_resumes_bit_identical(fashion_data_dir, tmp_path, monkeypatch):
  """The resumed run sees exactly the batches (and augmentations) the straight run saw: with
  --deterministic their metrics are equal, after a SIGTERM mid-epoch with step checkpoints."""
  from ls_keras import training

  extra = ("--checkpoint_every_steps=5", "--steps_per_execution=4")
  assert (
    invoke("train", *_deterministic_args(fashion_data_dir, tmp_path / "straight", *extra)).code == 0
  )
  original = training.Loop.train

  def sigterm_at_step_22(self, iterator, num_steps):
    if int(self.model.optimizer.iterations.numpy()) >= 22:  # 16 steps an epoch.
      os.kill(os.getpid(), signal.SIGTERM)
    return original(self, iterator, num_steps)

  monkeypatch.setattr(training.Loop, "train", sigterm_at_step_22)
  args = _deterministic_args(fashion_data_dir, tmp_path / "resumed", *extra)
  result = invoke("train", *args)
  assert result.code == cli.EXIT_PREEMPTED, result.err[-2000:]
  monkeypatch.undo()
  names = [
    os.path.basename(p) for p in checkpoints.listed(str(tmp_path / "resumed" / "checkpoints"))
  ]
  # Every 5 steps (at 20), and at the end of the train call SIGTERM came in (steps 24-25).
  assert names == ["ckpt-20", "ckpt-25"]
  assert invoke("train", *args).code == 0
  straight, resumed = (
    json.load(open(tmp_path / n / "metrics.json")) for n in ("straight", "resumed")
  )
  assert resumed == straight


def test_a_run_resumes_where_auto_resolves_to_another_precision(
  fashion_data_dir, tmp_path, monkeypatch
):
  """Started where auto chose mixed_float16 (a loss-scale-wrapped optimizer), resumed where it
  chooses float32: the optimizer state loads either way and training completes."""
  from ls_keras import training
  from ls_keras.core import hardware

  args = tiny_train_args(
    fashion_data_dir, tmp_path / "w", "--precision=auto", "--model=mlp", "--hidden_units=32"
  )
  monkeypatch.setattr(hardware, "resolve_precision", lambda *a: ("mixed_float16", "a test"))
  original = training.Loop.train

  def stop_in_epoch_2(self, iterator, num_steps):
    if int(self.model.optimizer.iterations.numpy()) >= 40:
      raise KeyboardInterrupt("killed")
    return original(self, iterator, num_steps)

  monkeypatch.setattr(training.Loop, "train", stop_in_epoch_2)
  with pytest.raises(KeyboardInterrupt):
    invoke("train", *args)
  monkeypatch.undo()
  monkeypatch.setattr(hardware, "resolve_precision", lambda *a: ("float32", "another test"))
  result = invoke("train", *args)
  assert result.code == 0, result.err[-3000:]
  sessions = json.load(open(tmp_path / "w" / "config.json"))["sessions"]
  assert [(s["precision"], s["start_epoch"]) for s in sessions] == [
    ("mixed_float16", 0),
    ("float32", 1),
  ]
