"""The train CLI end to end, in fresh processes, on real Fashion-MNIST."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, run_cli, tiny_train_args


@pytest.fixture(scope="module")
def trained(fashion_data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("run") / "w")
  result = run_cli("ls_keras.train", *tiny_train_args(fashion_data_dir, workdir, "--alpha=0.1"))
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir, result


def test_learns_real_fashion_mnist_and_fills_the_workdir(trained):
  workdir, result = trained
  metrics = json.load(open(os.path.join(workdir, "metrics.json")))
  assert metrics["validation"]["accuracy"] >= 0.70, metrics
  assert metrics["test"]["accuracy"] >= 0.70
  for split in ("train", "validation", "test"):
    assert set(metrics[split]) >= {"accuracy", "nll", "ece"}
  for path in ("config.json", "history.json", "model.keras", "saved_model/saved_model.pb",
               "logits/validation.npz", "logits/test.npz", "checkpoints/checkpoint"):
    assert os.path.exists(os.path.join(workdir, path)), path
  record = json.load(open(os.path.join(workdir, "config.json")))
  assert record["config"]["alpha"] == 0.1 and record["versions"]["tensorflow"]
  assert [h["epoch"] for h in json.load(open(os.path.join(workdir, "history.json")))] == [1, 2]
  assert os.listdir(os.path.join(workdir, "tb", "train")) and os.listdir(os.path.join(workdir, "tb", "validation"))
  assert "epoch 2/2" in result.stdout


def test_tensorboard_logs_hold_the_promised_scalars(trained):
  from tensorboard.backend.event_processing import event_accumulator
  workdir, _ = trained
  tags = {}
  for split in ("train", "validation"):
    acc = event_accumulator.EventAccumulator(os.path.join(workdir, "tb", split))
    acc.Reload()
    tags[split] = set(acc.Tags()["tensors"])
  assert {"loss", "accuracy", "learning_rate"} <= tags["train"]
  assert {"accuracy", "nll", "ece"} <= tags["validation"]


EXPORT_CHECK = r"""
import sys, numpy as np, tensorflow as tf
from ls_keras import export
workdir = sys.argv[1]
images = np.load(sys.argv[2])
keras_logits = export.load_keras_model(workdir + "/model.keras")(images, training=False).numpy()
saved_model = export.load_saved_model(workdir + "/saved_model")  # Keep a reference: it owns the variables.
saved_logits = saved_model.serve(tf.constant(images)).numpy()
np.savez(sys.argv[3], keras=keras_logits, saved=saved_logits)
"""


def test_exported_model_gives_the_same_logits_in_a_fresh_process(trained, fashion_data_dir, tmp_path):
  workdir, _ = trained
  from ls_keras import data
  splits = data.load_splits("fashion_mnist", data_dir=fashion_data_dir, eval_examples=1000)
  images = np.stack([x for x, _ in splits.test.take(64).as_numpy_iterator()]).astype("float32")
  np.save(tmp_path / "images.npy", images)
  code = subprocess.run([sys.executable, "-c", EXPORT_CHECK, workdir, str(tmp_path / "images.npy"),
                         str(tmp_path / "out.npz")], capture_output=True, text=True, cwd=REPO,
                        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
  assert code.returncode == 0, code.stderr[-2000:]
  out = np.load(tmp_path / "out.npz")
  from ls_keras import export
  here = export.load_keras_model(os.path.join(workdir, "model.keras"))(images, training=False).numpy()
  np.testing.assert_allclose(out["keras"], here, rtol=1e-6, atol=1e-6)  # Same path: same numbers.
  # SavedModel and the training process run other bfloat16 kernels: equal up to bf16 rounding.
  saved = np.load(os.path.join(workdir, "logits", "test.npz"))["logits"][:64]
  for other in (out["saved"], saved):
    np.testing.assert_allclose(out["keras"], other, atol=0.02 * np.abs(here).max())
    assert (out["keras"].argmax(-1) == other.argmax(-1)).mean() >= 0.98


def test_rerun_of_a_finished_run_does_nothing(trained, fashion_data_dir):
  workdir, _ = trained
  before = os.path.getmtime(os.path.join(workdir, "metrics.json"))
  result = run_cli("ls_keras.train", *tiny_train_args(fashion_data_dir, workdir, "--alpha=0.1"))
  assert result.returncode == 0 and "nothing to do" in result.stdout
  assert os.path.getmtime(os.path.join(workdir, "metrics.json")) == before


def test_workdir_holding_another_run_is_refused_then_overwritten(trained, fashion_data_dir, tmp_path):
  workdir, _ = trained
  result = run_cli("ls_keras.train", *tiny_train_args(fashion_data_dir, workdir, "--alpha=0.2"))
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert "different train run" in result.stderr and "alpha" in result.stderr and "--overwrite" in result.stderr
  assert json.load(open(os.path.join(workdir, "config.json")))["config"]["alpha"] == 0.1  # Untouched.


@pytest.mark.parametrize("flag, expected", [
    ("--alpha=1.5", "--alpha=1.5"),
    ("--alpha=-0.1", "--alpha=-0.1"),
    ("--dataset=svhn", "svhn"),
    ("--model=vgg", "--model=vgg"),
    ("--strategy=tpu", "tpu"),
    ("--precision=fp8", "fp8"),
    ("--batch_size=0", "--batch_size=0"),
    ("--epochs=0", "--epochs=0"),
    ("--train_steps=-1", "--train_steps=-1"),
    ("--lr_boundaries=5,3", "--lr_boundaries=5,3"),
])
def test_bad_flags_exit_2_with_a_clear_message(flag, expected, tmp_path):
  workdir = tmp_path / "w"
  result = run_cli("ls_keras.train", f"--workdir={workdir}", flag, timeout=120)
  assert result.returncode == 2, result.stderr
  assert expected in result.stderr and "Traceback" not in result.stderr
  assert not workdir.exists()


def test_unprepared_dataset_exits_2_saying_how_to_prepare(tmp_path):
  result = run_cli("ls_keras.train", "--dataset=cifar10", f"--data_dir={tmp_path}", f"--workdir={tmp_path / 'w'}")
  assert result.returncode == 2, result.stderr[-2000:]
  assert "cifar10" in result.stderr and "tfds build cifar10" in result.stderr and "Traceback" not in result.stderr


def test_mirrored_strategy_over_two_logical_cpus_trains(fashion_data_dir, tmp_path):
  workdir = str(tmp_path / "w")
  result = run_cli("ls_keras.train", *tiny_train_args(fashion_data_dir, workdir, "--strategy=mirrored",
                                                      "--cpu_devices=2"))
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = json.load(open(os.path.join(workdir, "metrics.json")))
  assert metrics["validation"]["accuracy"] >= 0.70
  assert metrics["validation"]["num_examples"] == 1000  # Padding for the replicas was masked out.
