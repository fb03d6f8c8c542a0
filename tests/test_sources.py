"""Data beyond the curated sets (issue 20): arrays, image folders, TFDS by name, downloads."""

import json
import os
import socket
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from conftest import invoke, tree_hash
from ls_keras import data
from ls_keras.core import config as config_lib
from ls_keras.core import datasets as datasets_lib
from ls_keras.core.errors import DataNotPreparedError, UserError
from ls_keras.data import sources

TINY = (
  "--model=mlp",
  "--hidden_units=16",
  "--epochs=1",
  "--batch_size=16",
  "--optimizer=adam",
  "--learning_rate=0.001",
  "--lr_boundaries=",
  "--precision=float32",
  "--strategy=one_device",
)


def write_arrays(path, n_train=400, n_test=100, classes=5, shape=(32, 32, 3), **extra):
  """An .npz in keras.datasets' layout whose images tell their class apart (brightness)."""
  rng = np.random.RandomState(0)
  y = np.arange(n_train + n_test) % classes
  x = (rng.rand(n_train + n_test, *shape) * 60 + y.reshape(-1, *[1] * len(shape)) * 40).astype(
    np.uint8
  )
  arrays = {"x_train": x[:n_train], "y_train": y[:n_train], "x_test": x[n_train:]}
  arrays["y_test"] = y[n_train:]
  arrays.update(extra)
  with open(path, "wb") as f:  # A file handle: np.savez would append .npz to a bare name.
    np.savez(f, **arrays)
  return str(path)


def write_folder(root, classes=3, per_class=20, size=(16, 16), channels=3, sizes=None):
  """One subfolder of PNGs per class (written with tf.io.encode_png)."""
  rng = np.random.RandomState(1)
  for c in range(classes):
    os.makedirs(os.path.join(root, f"class{c}"), exist_ok=True)
    for i in range(per_class):
      shape = (sizes[i % len(sizes)] if sizes else size) + (channels,)
      image = (rng.rand(*shape) * 50 + c * 80).astype(np.uint8)
      tf.io.write_file(os.path.join(root, f"class{c}", f"{i}.png"), tf.io.encode_png(image))
  return str(root)


def test_stratified_split_keeps_class_shares_is_seeded_and_disjoint():
  labels = np.repeat(np.arange(4), [50, 30, 15, 5])
  kept, held = sources.stratified_split(labels, 20)
  assert len(held) == 20 and len(kept) == 80 and not set(kept) & set(held)
  assert np.bincount(labels[held], minlength=4).tolist() == [10, 6, 3, 1]
  again = sources.stratified_split(labels, 20)
  np.testing.assert_array_equal(again[0], kept)
  np.testing.assert_array_equal(again[1], held)
  assert list(kept) != sorted(kept)  # A seeded order: "the first N" is a random subset.
  kept, held = sources.stratified_split(np.array([0, 0, 0, 1]), 2)
  assert 3 in kept  # A class's last example stays for training.


def test_dataset_values_are_checked_and_paths_made_absolute(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert datasets_lib.absolute_dataset("npz:mine.npz") == f"npz:{tmp_path}/mine.npz"
  assert datasets_lib.absolute_dataset("folder:~/x").startswith("folder:/")
  assert datasets_lib.absolute_dataset("svhn_cropped") == "svhn_cropped"
  for bad in ("folder:", "npz:", "Not A Name", ""):
    with pytest.raises(UserError, match="folder:PATH"):
      datasets_lib.check_dataset(bad)
  with pytest.raises(UserError, match="--dataset=svhn is not allowed: TFDS has no data set"):
    config_lib.validate(config_lib.TrainConfig(dataset="svhn"))
  config_lib.validate(config_lib.TrainConfig(dataset="svhn_cropped"))
  assert datasets_lib.auto_augmentation((32, 32, 3)) == "crop_flip"
  assert datasets_lib.auto_augmentation((28, 28, 1)) == "shift"
  assert datasets_lib.auto_augmentation((16, 16, 3)) == "shift"


def test_npz_splits_statistics_and_augmentation(tmp_path):
  path = write_arrays(tmp_path / "a.npz", class_names=np.array(list("abcde")))
  splits = data.load_splits(f"npz:{path}", validation_size=50)
  assert splits.sizes == {"train": 350, "validation": 50, "test": 100}
  assert splits.class_names == tuple("abcde") and splits.num_classes == 5
  spec = splits.spec
  assert spec.image_shape == (32, 32, 3) and spec.augmentation == "crop_flip"
  with np.load(path) as f:
    x = f["x_train"].reshape(-1, 3).astype(np.float64)
  np.testing.assert_allclose(spec.mean, x.mean(0), atol=1e-3)
  np.testing.assert_allclose(spec.std, x.std(0), atol=1e-3)
  validation = np.concatenate([y for _, y in tfds.as_numpy(splits.validation.batch(100))])
  assert np.bincount(validation).tolist() == [10] * 5  # Stratified.
  assert data.resolve(f"npz:{path}", augmentation="none").augmentation == "none"
  grey = write_arrays(tmp_path / "g.npz", shape=(28, 28))  # [N, H, W]: one channel added.
  assert data.resolve(f"npz:{grey}").image_shape == (28, 28, 1)
  assert data.resolve(f"npz:{grey}").augmentation == "shift"
  assert data.resolve(f"npz:{grey}", image_size=14).image_shape == (14, 14, 1)


def test_npz_without_test_arrays_holds_out_a_stratified_fifth(tmp_path):
  path = tmp_path / "a.npz"
  rng = np.random.RandomState(0)
  with open(path, "wb") as f:
    np.savez(f, x_train=rng.randint(0, 255, (500, 8, 8), np.uint8), y_train=np.arange(500) % 2)
  splits = data.load_splits(f"npz:{path}", validation_size=40)
  assert splits.sizes == {"train": 360, "validation": 40, "test": 100}
  test = np.concatenate([y for _, y in tfds.as_numpy(splits.test.batch(500))])
  assert np.bincount(test).tolist() == [50, 50]


def test_folder_with_and_without_train_test_subfolders(tmp_path):
  flat = write_folder(tmp_path / "flat")
  splits = data.load_splits(f"folder:{flat}", validation_size=6)
  assert splits.class_names == ("class0", "class1", "class2")
  assert splits.sizes == {"train": 42, "validation": 6, "test": 12}
  assert splits.spec.image_shape == (16, 16, 3) and splits.spec.augmentation == "shift"
  x, y = next(iter(splits.train.batch(64)))
  assert x.dtype == tf.uint8 and y.dtype == tf.int64
  # Each class is brighter than the last: the labels came with their own images.
  means = [float(tf.reduce_mean(tf.cast(x[y == c], tf.float32))) for c in range(3)]
  assert means == sorted(means)
  split = tmp_path / "split"
  write_folder(split / "train", per_class=10, size=(40, 40))
  write_folder(split / "test", per_class=4, size=(40, 40))
  splits = data.load_splits(f"folder:{split}", validation_size=3)
  assert splits.sizes == {"train": 27, "validation": 3, "test": 12}
  assert splits.spec.augmentation == "crop_flip"  # Colour, at least 32 px.


def test_folder_of_varying_sizes_needs_image_size(tmp_path):
  folder = write_folder(tmp_path / "v", per_class=4, sizes=[(16, 16), (20, 24)])
  with pytest.raises(UserError, match="differ in size.*--image_size=N"):
    data.resolve(f"folder:{folder}")
  assert data.resolve(f"folder:{folder}", image_size=12).image_shape == (12, 12, 3)


@pytest.mark.parametrize("source", ["npz", "folder"])
def test_train_then_calibrate_on_your_data(source, tmp_path):
  if source == "npz":
    dataset = f"npz:{write_arrays(tmp_path / 'mine.npz')}"
  else:
    dataset = f"folder:{write_folder(tmp_path / 'images')}"
  workdir = str(tmp_path / "run")
  result = invoke(
    "train", f"--dataset={dataset}", f"--workdir={workdir}", "--validation_size=10", *TINY
  )
  assert result.code == 0, result.err[-2000:]
  record = json.load(open(os.path.join(workdir, "config.json")))
  assert record["config"]["dataset"] == dataset
  recorded = record["sessions"][-1]["data"]
  spec = data.resolve(dataset)
  assert recorded["mean"] == list(spec.mean) and recorded["std"] == list(spec.std)
  assert recorded["class_names"] == list(data.load_splits(dataset, validation_size=10).class_names)
  result = invoke("calibrate", f"--workdir={workdir}", f"--output_dir={tmp_path / 'cal'}")
  assert result.code == 0, result.err[-2000:]
  assert os.path.exists(tmp_path / "cal" / "calibration.json")
  # Rerunning the same command reuses the finished run; --download says how, not what, to run.
  again = invoke(
    "train",
    f"--dataset={dataset}",
    f"--workdir={workdir}",
    "--validation_size=10",
    "--nodownload",
    *TINY,
  )
  assert again.code == 0, again.err[-2000:]
  assert json.load(open(os.path.join(workdir, "config.json")))["sessions"] == record["sessions"]


def test_a_relative_npz_path_is_recorded_absolute(tmp_path, monkeypatch):
  write_arrays(tmp_path / "mine.npz")
  monkeypatch.chdir(tmp_path)
  result = invoke("train", "--dataset=npz:mine.npz", "--workdir=run", "--validation_size=10", *TINY)
  assert result.code == 0, result.err[-2000:]
  record = json.load(open(tmp_path / "run" / "config.json"))
  assert record["config"]["dataset"] == f"npz:{tmp_path}/mine.npz"


def test_resume_uses_the_recorded_statistics():
  from ls_keras import training

  record = {"sessions": [{"data": {"mean": [1.0, 2.0, 3.0], "std": [4.0, 5.0, 6.0]}}]}
  assert training.recorded_statistics(record) == ((1.0, 2.0, 3.0), (4.0, 5.0, 6.0))
  for bad in ({"mean": [1.0], "std": [0.0]}, {"mean": ["a"], "std": [1]}, {"mean": [1.0]}):
    assert training.recorded_statistics({"sessions": [{"data": bad}]}) is None
  assert training.recorded_statistics({"sessions": []}) is None


@pytest.fixture
def network(monkeypatch):
  """A network that answers: our reachability probe passes (TFDS' mocking does the rest)."""
  monkeypatch.setattr(sources, "_unreachable", lambda builder: None)


def _mock(n=48):
  return tfds.testing.mock_data(num_examples=n, policy=tfds.testing.MockPolicy.USE_CODE)


def test_any_tfds_image_classification_set_by_name_on_mock_data(tmp_path, network):
  """Not curated: the spec comes from the builder's info and the training split."""
  with _mock():
    splits = data.load_splits("svhn_cropped", data_dir=str(tmp_path), validation_size=8)
    assert splits.num_classes == 10  # (TFDS' mock gives every split, sliced or not, 48.)
    spec = splits.spec
    assert spec.image_shape == (32, 32, 3) and spec.augmentation == "crop_flip"
    assert len(spec.mean) == 3 and all(0 < m < 255 for m in spec.mean)
    x, y = next(iter(data.train_batches(splits, batch_size=8, seed=0, epoch=0, augment=True)))
    assert x.shape == (8, 32, 32, 3) and y.shape == (8, 10)
    resized = data.load_splits(
      "svhn_cropped", data_dir=str(tmp_path), image_size=16, validation_size=8
    )
    assert next(iter(resized.train))[0].shape == (16, 16, 3)
    with pytest.raises(UserError, match="not an image classification data set"):
      data.resolve("glue/cola", str(tmp_path))


def test_a_large_tfds_set_is_read_from_files_not_cached(tmp_path, network, monkeypatch):
  monkeypatch.setattr(sources, "CACHE_BYTES", -1)  # Any size is too large.
  with _mock():
    splits = data.load_splits("svhn_cropped", data_dir=str(tmp_path), validation_size=8)
    assert not splits.spec.cache and splits.read_train is not None
    assert splits.spec.shuffle_buffer == sources.UNCACHED_SHUFFLE_BUFFER


def test_curated_set_downloads_on_first_use_with_tfds_mocking(tmp_path, network):
  """download=True prepares a missing data set (TFDS' download mocked); --nodownload refuses."""
  with _mock():
    splits = data.load_splits("mnist", data_dir=str(tmp_path / "a"), validation_size=8)
    assert splits.spec == data.SPECS["mnist"] and splits.num_classes == 10
    with pytest.raises(DataNotPreparedError, match="Downloading is off.*tfds build mnist"):
      data.load_splits("mnist", data_dir=str(tmp_path / "b"), validation_size=8, download=False)
    with pytest.raises(DataNotPreparedError, match="never download"):
      data.load_splits("mnist", data_dir=str(tmp_path / "c"), validation_size=8, prepare=False)


def _leftovers(root):
  return [
    os.path.join(d, name)
    for d, dirs, files in os.walk(root)
    for name in dirs + files
    if "incomplete" in name or ".tmp" in name or name.endswith(".gz")
  ]


def test_download_that_fails_midway_leaves_nothing_and_says_how_to_prepare(tmp_path, monkeypatch):
  """The network goes away after the probe: TFDS' download manager raises ConnectionError."""
  data_dir = tmp_path / "tfds"
  os.makedirs(data_dir / "other")  # The user's other data sets stay untouched.
  (data_dir / "other" / "keep.txt").write_text("mine")
  before = tree_hash(data_dir)
  monkeypatch.setattr(sources, "_unreachable", lambda builder: None)  # Reachable at first.

  def offline(self, *args, **kwargs):
    partial = os.path.join(str(self.download_dir), "mnist", "train.gz.tmp.123")
    os.makedirs(os.path.dirname(partial), exist_ok=True)
    open(partial, "wb").write(b"half a file")
    raise ConnectionError("Failed to resolve 'storage.googleapis.com'")

  monkeypatch.setattr(tfds.download.DownloadManager, "download", offline)
  monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", offline)
  started = time.time()
  result = invoke(
    "train", "--dataset=mnist", f"--data_dir={data_dir}", f"--workdir={tmp_path / 'w'}"
  )
  assert time.time() - started < 60
  assert result.code == 2, result.err[-2000:]
  assert "ConnectionError" in result.err and "tfds build mnist --data_dir=DIR" in result.err
  assert tree_hash(data_dir) == before and not _leftovers(tmp_path)
  assert not os.path.exists(tmp_path / "w")


def test_no_network_is_refused_within_seconds_before_anything_is_written(tmp_path, monkeypatch):
  def no_network(*args, **kwargs):
    raise OSError(-2, "Name or service not known")

  monkeypatch.setattr(socket, "create_connection", no_network)
  started = time.time()
  result = invoke(
    "train", "--dataset=cifar10", f"--data_dir={tmp_path / 'tfds'}", f"--workdir={tmp_path / 'w'}"
  )
  assert result.code == 2 and time.time() - started < 60, result.err[-2000:]
  assert "cannot reach www.cs.toronto.edu:443" in result.err
  assert "tfds build cifar10" in result.err and result.err.count("\n") == 1
  assert os.listdir(tmp_path) == []


def test_every_analysis_works_on_a_run_of_your_data(tmp_path):
  """project, mutual_info --recompute and distill on a run of arrays; calibrate is above."""
  dataset = f"npz:{write_arrays(tmp_path / 'mine.npz', class_names=np.array(list('abcde')))}"
  mine = (f"--dataset={dataset}", "--validation_size=20", *TINY)
  mi = ("--mi_examples_per_class=8", "--mi_augmentations=2", "--mi_classes=0,1")
  teacher = str(tmp_path / "teacher")
  result = invoke("train", *mine, *mi, f"--workdir={teacher}")
  assert result.code == 0, result.err[-2000:]
  result = invoke(
    "project",
    f"--workdir={teacher}",
    "--classes=a,b,e",
    "--examples_per_class=4",  # The validation split holds 4 of each.
    "--projector_examples=0",
    f"--output_dir={tmp_path / 'projection'}",
  )
  assert result.code == 0, result.err[-2000:]
  assert json.load(open(tmp_path / "projection" / "projection.json"))
  result = invoke(
    "mutual_info", f"--workdir={teacher}", "--recompute", f"--output_dir={tmp_path / 'mi'}"
  )
  assert result.code == 0, result.err[-2000:]
  series = json.load(open(os.path.join(teacher, "mutual_information_recomputed.json")))
  assert series and all(np.isfinite(p["mi"]) for p in series)
  student = str(tmp_path / "student")
  result = invoke("distill", *mine, f"--teacher={teacher}", f"--workdir={student}")
  assert result.code == 0, result.err[-2000:]
  assert os.path.exists(os.path.join(student, "metrics.json"))


def _your_data_blocks():
  """The fenced code blocks of README's "Your data" subsection: [(language, text)]."""
  from conftest import REPO

  readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
  section = readme.split("### Your data", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
  parts = section.split("```")[1::2]
  return [(p.split("\n", 1)[0].strip(), p.split("\n", 1)[1]) for p in parts]


@pytest.mark.slow
def test_the_readme_your_data_examples_run_as_written(tmp_path):
  """Each block in a fresh process, in an empty folder: python blocks, then each command."""
  import shlex
  import subprocess
  import sys

  from conftest import REPO

  blocks = _your_data_blocks()
  assert [language for language, _ in blocks] == ["python", "sh", "python", "sh"]
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO}
  for language, text in blocks:
    if language == "python":
      commands = [[sys.executable, "-c", text]]
    else:
      commands = [shlex.split(line) for line in text.splitlines() if line.strip()]
      assert all(c[0] == "python" for c in commands)
      commands = [[sys.executable, *c[1:]] for c in commands]
    for command in commands:
      started = time.time()
      done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
      )
      assert done.returncode == 0, (command, done.stderr[-3000:])
      print(f"{' '.join(command[1:])[:80]}: {time.time() - started:.1f} s")
  for run in ("my_images", "mine"):
    metrics = json.load(open(tmp_path / "runs" / run / "metrics.json"))
    assert metrics["test"]["accuracy"] > 0.5  # The classes are told apart: the data got in.
    assert os.path.exists(tmp_path / "runs" / f"{run}_calibration" / "calibration.json")


def test_plans_move_to_another_data_set_whole():
  """kd_sweep and reproduce --dataset: every config of the preset, teacher to MI, moves."""
  from ls_keras.paper import recipes

  for registry in (recipes.SWEEPS, recipes.REPRODUCTIONS):
    for name, build in registry.items():
      preset = recipes.with_data(
        build(recipes.preset_data()), dataset="npz:/d/x.npz", validation_size=7, augmentation="none"
      )
      sweep = preset.sweep if hasattr(preset, "sweep") else preset
      configs = [sweep.teacher, sweep.student, sweep.anecdote_teacher, sweep.anecdote_student]
      configs += [preset.mi] if hasattr(preset, "mi") else []
      for c in filter(None, configs):  # The anecdote's networks too, where a preset has them.
        assert (c.dataset, c.validation_size, c.augmentation) == ("npz:/d/x.npz", 7, "none"), name
  tiny = recipes.REPRODUCTIONS["tiny"](recipes.preset_data())
  assert recipes.with_data(tiny) == tiny
  with pytest.raises(UserError, match="--dataset=npz: is not allowed"):
    recipes.with_data(tiny, dataset="npz:")


@pytest.mark.slow
def test_a_sweep_runs_its_plan_on_your_arrays(tmp_path):
  """kd_sweep's tiny plan (teachers, students, the anecdote) on 2,500 grey arrays of 10
  classes; `reproduce` moves its plan the same way (recipes.with_data, tested above) and its
  analyses run on such runs (the tests of each analysis above)."""
  rng = np.random.RandomState(0)
  y = np.arange(3000) % 10
  x = (rng.rand(3000, 28, 28) * 60 + y[:, None, None] * 19).astype(np.uint8)
  path = tmp_path / "mine.npz"
  with open(path, "wb") as f:
    np.savez(f, x_train=x[:2500], y_train=y[:2500], x_test=x[2500:], y_test=y[2500:])
  root = tmp_path / "out"
  result = invoke(
    "kd_sweep", "--preset=tiny", f"--root={root}", f"--dataset=npz:{path}", "--validation_size=500"
  )
  assert result.code == 0, result.err[-2000:]
  assert "with label smoothing" in result.out
  records = [
    json.load(open(os.path.join(d, "config.json")))
    for d, _, files in os.walk(root)
    if "config.json" in files
  ]
  assert len(records) == 11 and {r["config"]["dataset"] for r in records} == {f"npz:{path}"}
