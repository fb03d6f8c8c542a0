"""Shared fixtures: quiet TF, 2 logical CPU devices (for MirroredStrategy tests), real data."""

import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from ls_keras import strategy  # noqa: E402

strategy.split_cpu(2)  # Before any test touches a device.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def fashion_data_dir(tmp_path_factory):
  """A TFDS data dir with real Fashion-MNIST prepared from Debian's IDX files (about 10 s)."""
  from ls_keras import fashion_mnist
  path = str(tmp_path_factory.mktemp("tfds"))
  fashion_mnist.FashionMnist(data_dir=path).download_and_prepare()
  return path


def run_cli(module, *args, timeout=600, env=None):
  """Runs `python -m module args` in a fresh process; returns the CompletedProcess."""
  full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
  return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                        timeout=timeout, cwd=REPO, env=full_env)


def tiny_train_args(data_dir, workdir, *extra):
  """Flags for a seconds-long run on a slice of real Fashion-MNIST."""
  return ["--flagfile=flags/fashion_mnist.flags", f"--data_dir={data_dir}", f"--workdir={workdir}",
          "--train_examples=4096", "--eval_examples=1000", "--epochs=2", "--lr_boundaries=", *extra]


@pytest.fixture
def cpu_devices():
  return [d.name for d in tf.config.list_logical_devices("CPU")]


@pytest.fixture(scope="session")
def one_device():
  return tf.distribute.OneDeviceStrategy(tf.config.list_logical_devices("CPU")[0].name)


@pytest.fixture(scope="session")
def mirrored():
  """One MirroredStrategy over the 2 logical CPUs for the whole session: separate strategy
  objects in one process reuse collective instance keys and abort each other."""
  return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])


def fake_run(path, alpha, seed=0, temperature=1.0, n=2000, classes=10):
  """A finished workdir with synthetic logits: labels drawn from softmax(z), saved logits z * T."""
  import numpy as np
  from ls_keras import config, workdir
  rng = np.random.RandomState(seed)
  run = workdir.Workdir(str(path))
  run.start(config.TrainConfig(alpha=alpha, seed=seed), "train")
  for split in ("validation", "test"):
    z = rng.normal(0, 2, (n, classes))
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    labels = (p.cumsum(-1) > rng.uniform(size=(n, 1))).argmax(-1)
    run.save_logits(split, z * temperature, labels)
  run.write_metrics({"steps": 1})
  return run


@pytest.fixture(scope="session")
def tiny_runs(fashion_data_dir, tmp_path_factory):
  """Two finished seconds-long runs on real Fashion-MNIST: alpha 0 and alpha 0.1."""
  root = tmp_path_factory.mktemp("tiny_runs")
  runs = {}
  for alpha in (0.0, 0.1):
    workdir = str(root / f"alpha{alpha:g}")
    result = run_cli("ls_keras.train", *tiny_train_args(fashion_data_dir, workdir, f"--alpha={alpha}"))
    assert result.returncode == 0, result.stderr[-3000:]
    runs[alpha] = workdir
  return runs
