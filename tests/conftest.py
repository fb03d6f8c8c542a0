"""Shared fixtures: quiet TF, 2 logical CPU devices (for MirroredStrategy tests), real data,
and commands run in this process.

Every test that is not about precision runs in float32: `tiny_train_args` says so, and
library-level tests build configs with `precision="float32"`.
"""

import contextlib
import dataclasses
import hashlib
import importlib
import io
import os
import signal
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from ls_keras.training import strategy  # noqa: E402

strategy.split_cpu(2)  # Before any test touches a device.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_configure(config):
  config.addinivalue_line(
    "markers",
    "slow: end-to-end tests in fresh processes or on real data (deselect with "
    "-m 'not slow' for a quick loop)",
  )


@pytest.fixture(scope="session")
def fashion_data_dir(tmp_path_factory):
  """A TFDS data dir with real Fashion-MNIST prepared from Debian's IDX files (about 10 s)."""
  from ls_keras.data import fashion_mnist

  path = str(tmp_path_factory.mktemp("tfds"))
  fashion_mnist.FashionMnist(data_dir=path).download_and_prepare()
  return path


def fashion_arrays(data_dir, split, n):
  """The first n (float32 images in [0, 255], int labels) of a split, read as analyses read it."""
  import numpy as np
  from ls_keras import data

  splits = data.load_splits("fashion_mnist", data_dir=data_dir, prepare=False)
  images, labels = next(getattr(splits, split).batch(n).as_numpy_iterator())
  return images.astype(np.float32), labels


@pytest.fixture(scope="session")
def foreign_classifier(fashion_data_dir, tmp_path_factory):
  """A small classifier trained elsewhere (plain Keras), ending in a softmax, as .keras; and the
  same network without the softmax exported as a SavedModel."""
  import keras

  root = tmp_path_factory.mktemp("foreign_classifier")
  x, y = fashion_arrays(fashion_data_dir, "train", 6000)
  keras.utils.set_random_seed(0)
  model = keras.Sequential(
    [
      keras.Input((28, 28, 1)),
      keras.layers.Rescaling(1 / 255.0),
      keras.layers.Flatten(),
      keras.layers.Dense(32, activation="relu"),
      keras.layers.Dense(10, activation="softmax"),
    ]
  )
  model.compile("adam", "sparse_categorical_crossentropy")
  model.fit(x, y, epochs=3, batch_size=128, verbose=0)
  model.save(root / "classifier.keras")
  logits = keras.Sequential(model.layers[:-1] + [keras.layers.Dense(10)])
  logits.build((None, 28, 28, 1))
  logits.layers[-1].set_weights(model.layers[-1].get_weights())
  logits.export(str(root / "saved_model"), verbose=False)
  return root, model


@dataclasses.dataclass
class Result:
  code: int
  out: str
  err: str


def invoke(command: str, *args: str) -> Result:
  """Runs `python -m ls_keras.<command> args` in this process (same parsing, same exit codes).

  Exceptions other than bad-input errors propagate, so a traceback fails the test.
  """
  from ls_keras import cli

  module = importlib.import_module(f"ls_keras.{command}")
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    code = cli.invoke(module, [str(a) for a in args])
  return Result(code, out.getvalue(), err.getvalue())


def run_cli(module, *args, timeout=600, env=None):
  """Runs `python -m module args` in a fresh process; returns the CompletedProcess."""
  full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
  return subprocess.run(
    [sys.executable, "-m", module, *args],
    capture_output=True,
    text=True,
    timeout=timeout,
    cwd=REPO,
    env=full_env,
  )


def tiny_mlp(hidden: int, weight_decay: float, seed=None):
  """A 6x6x1-input, 3-class MLP of one hidden layer (built in the caller's strategy scope).

  With `seed`, Keras' random seed is set first, so the weights are reproducible.
  """
  import keras

  from ls_keras import models

  if seed is not None:
    keras.utils.set_random_seed(seed)
  return models.build_model(
    "mlp",
    (6, 6, 1),
    3,
    mean=[128.0],
    std=[64.0],
    options=models.ModelOptions(weight_decay=weight_decay, hidden_units=(hidden,)),
  )


def tiny_train_args(data_dir, workdir, *extra):
  """Flags for a seconds-long float32 run on a slice of real Fashion-MNIST."""
  return [
    "--flagfile=" + os.path.join(REPO, "flags", "fashion_mnist.flags"),
    f"--data_dir={data_dir}",
    f"--workdir={workdir}",
    "--train_examples=4096",
    "--eval_examples=1000",
    "--epochs=2",
    "--lr_boundaries=",
    "--precision=float32",
    "--strategy=one_device",
    *extra,
  ]


def tree_hash(path) -> str:
  """A digest of every file name and content under `path` ('' when it does not exist)."""
  return tree_hash_except(path)


def tree_hash_except(path, *skipped: str) -> str:
  """`tree_hash`, leaving out files named as in `skipped`."""
  if not os.path.exists(path):
    return ""
  if os.path.isfile(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()
  digest = hashlib.sha256()
  for root, dirs, files in sorted(os.walk(path)):
    dirs.sort()
    for name in sorted(f for f in files if f not in skipped):
      full = os.path.join(root, name)
      digest.update(full.encode())
      digest.update(os.readlink(full).encode() if os.path.islink(full) else open(full, "rb").read())
  return digest.hexdigest()


@pytest.fixture
def cpu_devices():
  return [d.name for d in tf.config.list_logical_devices("CPU")]


@pytest.fixture(scope="session")
def one_device():
  return strategy.make_strategy("one_device")


@pytest.fixture(scope="session")
def mirrored():
  """The process' MirroredStrategy over the 2 logical CPUs (one per process: separate
  strategy objects over the same devices reuse collective instance keys).
  """
  return strategy.make_strategy("mirrored")


def fake_run(path, alpha, seed=0, temperature=1.0, n=2000, classes=10):
  """A finished workdir with synthetic logits: labels drawn from softmax(z), saved logits z * T."""
  import numpy as np
  from ls_keras.core import config, workdir

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
    result = invoke("train", *tiny_train_args(fashion_data_dir, workdir, f"--alpha={alpha}"))
    assert result.code == 0, result.err[-3000:]
    runs[alpha] = workdir
  return runs


def finished_runs(root) -> dict:
  """{metrics.json path: mtime} of every finished run under `root`."""
  return {
    os.path.join(d, "metrics.json"): os.path.getmtime(os.path.join(d, "metrics.json"))
    for d, _, files in os.walk(root)
    if "metrics.json" in files
  }


def kill_after_finished(module, args, root, count, timeout=600) -> dict:
  """Starts `python -m module args`, SIGKILLs it once `count` runs under `root` finished;
  returns those finished runs (see `finished_runs`).
  """
  proc = subprocess.Popen(
    [sys.executable, "-m", module, *args],
    cwd=REPO,
    env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  deadline = time.time() + timeout
  while len(finished_runs(root)) < count and proc.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  return finished_runs(root)


@pytest.fixture(scope="session")
def tiny_sweep(fashion_data_dir, tmp_path_factory):
  """The tiny distillation sweep, run once per session: first SIGKILLed once 3 runs are
  finished, then completed in this process (its tests only read it).

  Returns (root, the completing Result, the runs finished before the kill).
  """
  root = str(tmp_path_factory.mktemp("kd_sweep"))
  args = ["--preset=tiny", f"--root={root}", f"--data_dir={fashion_data_dir}"]
  killed = kill_after_finished("ls_keras.kd_sweep", args, root, 3)
  result = invoke("kd_sweep", *args)
  assert result.code == 0, result.err[-3000:]
  return root, result, killed
