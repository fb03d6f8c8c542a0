"""The train command end to end on real Fashion-MNIST (in-process; export checked afresh)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, invoke, run_cli, tiny_train_args, tree_hash


@pytest.fixture(scope="module")
def trained(tiny_runs):
  """The session's alpha = 0.1 run (tiny_train_args, 2 epochs); tests here only read it."""
  return tiny_runs[0.1]


def test_learns_real_fashion_mnist_and_fills_the_workdir(trained):
  workdir = trained
  metrics = json.load(open(os.path.join(workdir, "metrics.json")))
  assert metrics["validation"]["accuracy"] >= 0.70, metrics
  assert metrics["test"]["accuracy"] >= 0.70
  for split in ("train", "validation", "test"):
    assert set(metrics[split]) >= {"accuracy", "nll", "ece"}
  for path in (
    "config.json",
    "history.json",
    "model.keras",
    "saved_model/saved_model.pb",
    "logits/validation.npz",
    "logits/test.npz",
    "checkpoints/checkpoint",
  ):
    assert os.path.exists(os.path.join(workdir, path)), path
  record = json.load(open(os.path.join(workdir, "config.json")))
  assert record["config"]["alpha"] == 0.1 and record["versions"]["tensorflow"]
  assert [h["epoch"] for h in json.load(open(os.path.join(workdir, "history.json")))] == [1, 2]
  assert os.listdir(os.path.join(workdir, "tb", "train")) and os.listdir(
    os.path.join(workdir, "tb", "validation")
  )
  (session,) = record["sessions"]
  assert (
    session["start_epoch"] == 0
    and session["precision"] == "float32"
    and session["hardware"]["cpu_model"]
  )


def test_tensorboard_logs_hold_the_promised_scalars(trained):
  from tensorboard.backend.event_processing import event_accumulator

  workdir = trained
  tags = {}
  for split in ("train", "validation"):
    acc = event_accumulator.EventAccumulator(os.path.join(workdir, "tb", split))
    acc.Reload()
    tags[split] = set(acc.Tags()["tensors"])
  assert {"loss", "accuracy", "learning_rate"} <= tags["train"]
  assert {"accuracy", "nll", "ece"} <= tags["validation"]


EXPORT_CHECK = r"""
import sys, numpy as np, keras, tensorflow as tf
workdir = sys.argv[1]
images = np.load(sys.argv[2])
# Exactly as the README says, in a process that never imports ls_keras.
model = keras.saving.load_model(workdir + "/model.keras", safe_mode=True)
keras_logits = model(images, training=False).numpy()
saved_model = tf.saved_model.load(workdir + "/saved_model")  # Keep it: it owns the variables.
saved_logits = saved_model.serve(tf.constant(images)).numpy()
assert not any(m.startswith("ls_keras") for m in sys.modules)
np.savez(sys.argv[3], keras=keras_logits, saved=saved_logits)
"""


@pytest.mark.slow
def test_exported_model_gives_the_same_logits_in_a_fresh_process(
  trained, fashion_data_dir, tmp_path
):
  workdir = trained
  from ls_keras import data

  splits = data.load_splits("fashion_mnist", data_dir=fashion_data_dir, eval_examples=1000)
  images = np.stack([x for x, _ in splits.test.take(64).as_numpy_iterator()]).astype("float32")
  np.save(tmp_path / "images.npy", images)
  code = subprocess.run(
    [
      sys.executable,
      "-c",
      EXPORT_CHECK,
      workdir,
      str(tmp_path / "images.npy"),
      str(tmp_path / "out.npz"),
    ],
    capture_output=True,
    text=True,
    cwd=REPO,
    env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
  )
  assert code.returncode == 0, code.stderr[-2000:]
  out = np.load(tmp_path / "out.npz")
  from ls_keras.models import export

  here = export.load_keras_model(os.path.join(workdir, "model.keras"))(
    images, training=False
  ).numpy()
  np.testing.assert_allclose(out["keras"], here, rtol=1e-6, atol=1e-6)  # Same path: same numbers.
  # The SavedModel and the training process' logits: float32 throughout, equal up to kernel order.
  saved = np.load(os.path.join(workdir, "logits", "test.npz"))["logits"][:64]
  for other in (out["saved"], saved):
    np.testing.assert_allclose(out["keras"], other, rtol=1e-4, atol=1e-4)


def test_rerun_of_a_finished_run_does_nothing(trained, fashion_data_dir):
  workdir = trained
  before = tree_hash(workdir)
  result = invoke("train", *tiny_train_args(fashion_data_dir, workdir, "--alpha=0.1"))
  assert (
    result.code == 0
    and json.loads(result.out)["test"]
    == json.load(open(os.path.join(workdir, "metrics.json")))["test"]
  )
  assert tree_hash(workdir) == before


def test_workdir_holding_another_run_is_refused_then_overwritten(
  trained, fashion_data_dir, tmp_path
):
  workdir = trained
  result = invoke("train", *tiny_train_args(fashion_data_dir, workdir, "--alpha=0.2"))
  assert result.code == 2
  assert (
    "different train run" in result.err and "alpha" in result.err and "--overwrite" in result.err
  )
  assert (
    json.load(open(os.path.join(workdir, "config.json")))["config"]["alpha"] == 0.1
  )  # Untouched.
  copy = str(tmp_path / "copy")
  import shutil

  shutil.copytree(workdir, copy)
  result = invoke(
    "train", *tiny_train_args(fashion_data_dir, copy, "--alpha=0.2", "--epochs=1", "--overwrite")
  )
  assert result.code == 0, result.err[-2000:]
  assert json.load(open(os.path.join(copy, "config.json")))["config"]["alpha"] == 0.2


@pytest.mark.slow
def test_bad_flags_exit_2_in_a_fresh_process_without_a_traceback(tmp_path):
  """The console contract, once in a real process: one paragraph on stderr, exit code 2.
  (Every other bad-input case runs in-process: tests/test_bad_input.py.)
  """
  workdir = tmp_path / "w"
  result = run_cli("ls_keras.train", f"--workdir={workdir}", "--alpha=1.5", timeout=120)
  assert result.returncode == 2, result.stderr
  assert (
    "--alpha=1.5" in result.stderr
    and "[0, 1)" in result.stderr
    and "Traceback" not in result.stderr
  )
  assert not workdir.exists()


def test_unprepared_dataset_exits_2_saying_how_to_prepare(tmp_path):
  result = invoke(
    "train", "--dataset=cifar10", f"--data_dir={tmp_path}", f"--workdir={tmp_path / 'w'}"
  )
  assert result.code == 2, result.err[-2000:]
  assert "cifar10" in result.err and "tfds build cifar10" in result.err
  assert not (tmp_path / "w").exists()


def test_mirrored_strategy_over_two_logical_cpus_trains(fashion_data_dir, tmp_path):
  workdir = str(tmp_path / "w")
  result = invoke(
    "train", *tiny_train_args(fashion_data_dir, workdir, "--strategy=mirrored", "--cpu_devices=2")
  )
  assert result.code == 0, result.err[-3000:]
  metrics = json.load(open(os.path.join(workdir, "metrics.json")))
  assert metrics["validation"]["accuracy"] >= 0.70
  assert metrics["validation"]["num_examples"] == 1000  # Padding for the replicas was masked out.


def test_a_relative_data_dir_is_recorded_absolute(fashion_data_dir, tmp_path, monkeypatch):
  """Resumed from another directory, the run must read the same data, not prepare it anew."""
  monkeypatch.chdir(tmp_path)
  relative = os.path.relpath(fashion_data_dir)
  small = ("--model=mlp", "--hidden_units=16", "--epochs=1", "--train_examples=1024")
  args = tiny_train_args(fashion_data_dir, "run", *small, f"--data_dir={relative}")
  result = invoke("train", *args)
  assert result.code == 0, result.err[-2000:]
  recorded = json.load(open(tmp_path / "run" / "config.json"))["config"]
  assert recorded["data_dir"] == os.path.abspath(fashion_data_dir) != relative
