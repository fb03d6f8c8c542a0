import gzip
import os
import struct

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from ls_keras import data
from ls_keras.data import fashion_mnist
from ls_keras.core.errors import DataNotPreparedError, UserError


def _write_idx(folder, stem, images, labels):
  with gzip.open(os.path.join(folder, stem[0] + ".gz"), "wb") as f:
    f.write(struct.pack(">iiii", 2051, len(images), 28, 28) + images.tobytes())
  with gzip.open(os.path.join(folder, stem[1] + ".gz"), "wb") as f:
    f.write(struct.pack(">ii", 2049, len(labels)) + labels.tobytes())


@pytest.fixture
def idx_folder(tmp_path):
  rng = np.random.RandomState(0)
  for split, n in (("train", 30), ("test", 12)):
    images = rng.randint(0, 256, (n, 28, 28), dtype=np.uint8)
    images[:, 0, 0] = np.arange(n)  # Tag each image with its index.
    labels = (np.arange(n) % 10).astype(np.uint8)
    _write_idx(str(tmp_path), fashion_mnist.FILES[split][:2], images, labels)
  return str(tmp_path)


def test_fashion_mnist_builder_reads_idx_fixture(idx_folder, tmp_path):
  builder = fashion_mnist.FashionMnist(
    data_dir=str(tmp_path / "tfds"), source=idx_folder, check_sizes=False
  )
  builder.download_and_prepare()
  assert builder.info.splits["train"].num_examples == 30
  assert builder.info.splits["test"].num_examples == 12
  images, labels = zip(*tfds.as_numpy(builder.as_dataset(split="train", as_supervised=True)))
  assert sorted(int(i[0, 0, 0]) for i in images) == list(range(30))
  assert {int(i[0, 0, 0]) % 10 for i in images} == {int(label) for label in labels}
  assert builder.info.features["label"].names[0] == "T-shirt/top"


def test_load_splits_carves_validation_from_the_end_of_train(idx_folder, tmp_path, monkeypatch):
  monkeypatch.setenv(fashion_mnist.SOURCE_ENV, idx_folder)
  monkeypatch.setattr(fashion_mnist.FashionMnist, "__init__", _no_size_check_init)
  splits = data.load_splits("fashion_mnist", data_dir=str(tmp_path / "tfds"), validation_size=10)
  assert splits.sizes == {"train": 20, "validation": 10, "test": 12}
  train_ids = {int(x[0, 0, 0]) for x, _ in tfds.as_numpy(splits.train)}
  val_ids = {int(x[0, 0, 0]) for x, _ in tfds.as_numpy(splits.validation)}
  assert not train_ids & val_ids and len(train_ids | val_ids) == 30


_original_init = fashion_mnist.FashionMnist.__init__


def _no_size_check_init(self, **kwargs):
  _original_init(self, check_sizes=False, **kwargs)


def test_truncated_idx_file_is_a_clear_error(idx_folder, tmp_path):
  path = os.path.join(idx_folder, "train-images-idx3-ubyte.gz")
  raw = gzip.open(path).read()
  with gzip.open(path, "wb") as f:
    f.write(raw[:1000])
  with pytest.raises(UserError, match="truncated or corrupt"):
    fashion_mnist.read_idx(idx_folder, "train-images-idx3-ubyte", "train-labels-idx1-ubyte")


def test_missing_idx_folder_says_how_to_get_the_data(tmp_path):
  with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
    fashion_mnist.read_idx(str(tmp_path), "train-images-idx3-ubyte", "train-labels-idx1-ubyte")


def test_unprepared_dataset_names_dataset_folder_and_remedy(tmp_path):
  with pytest.raises(DataNotPreparedError) as e:
    data.load_splits("cifar10", data_dir=str(tmp_path), download=False)
  message = str(e.value)
  assert "cifar10" in message and str(tmp_path) in message and "tfds build cifar10" in message


def _mock_cifar10(n=64):
  return tfds.testing.mock_data(num_examples=n, policy=tfds.testing.MockPolicy.USE_CODE)


def test_cifar10_pipeline_on_mock_data_shapes_one_hot_and_seeded_order(monkeypatch):
  from ls_keras.data import sources

  monkeypatch.setattr(sources, "_unreachable", lambda builder: None)  # TFDS' mock downloads.
  with _mock_cifar10():
    splits = data.load_splits("cifar10", validation_size=16)
    assert splits.num_classes == 10 and splits.sizes == {"train": 64, "validation": 64, "test": 64}

    def first_batch(seed, epoch):
      ds = data.train_batches(splits, batch_size=8, seed=seed, epoch=epoch, augment=True)
      return next(iter(ds))

    x, y = first_batch(0, 0)
    assert x.shape == (8, 32, 32, 3) and x.dtype == tf.float32 and y.shape == (8, 10)
    np.testing.assert_array_equal(tf.reduce_sum(y, -1), np.ones(8))
    np.testing.assert_array_equal(first_batch(0, 0)[0], x)  # Same seed and epoch: same data.
    assert not np.array_equal(first_batch(0, 1)[0], x)  # Next epoch: new order/augmentation.
    assert not np.array_equal(first_batch(1, 0)[0], x)
    n = sum(
      int(b[0].shape[0])
      for b in data.train_batches(splits, batch_size=24, seed=0, epoch=0, augment=False)
    )
    assert n == 48  # drop_remainder: whole batches only.


def test_eval_batches_pad_to_whole_batches_with_mask():
  ds = tf.data.Dataset.from_tensor_slices((np.zeros((10, 4, 4, 1), np.uint8), np.arange(10) % 3))
  batches = list(data.eval_batches(ds, 3, batch_size=4))
  masks = np.concatenate([b[2].numpy() for b in batches])
  assert len(masks) == 12 and masks.sum() == 10 and masks[-2:].sum() == 0


@pytest.mark.parametrize("kind, pad", [("shift", 2), ("crop_flip", 4)])
def test_augmentation_translates_each_image_deterministically(kind, pad):
  images = tf.random.stateless_uniform((16, 28, 28, 1), [0, 0]) * 255
  a = data.augment_batch(images, kind, tf.constant([3, 4], tf.int64)).numpy()
  np.testing.assert_array_equal(a, data.augment_batch(images, kind, tf.constant([3, 4], tf.int64)))
  assert not np.array_equal(a, data.augment_batch(images, kind, tf.constant([3, 5], tf.int64)))
  assert a.shape == images.shape
  used = set()
  for original, out in zip(
    images.numpy(), a
  ):  # Some shift of the padded image (flipped or not) gives it.
    padded = np.pad(original, [(pad, pad), (pad, pad), (0, 0)])
    matches = [
      (i, j, f)
      for i in range(2 * pad + 1)
      for j in range(2 * pad + 1)
      for f in (False, True)
      if np.array_equal(
        out, (padded[i : i + 28, j : j + 28][:, ::-1] if f else padded[i : i + 28, j : j + 28])
      )
    ]
    assert matches
    used.add(matches[0])
  assert len(used) > 4  # Images of one batch get different draws.


def test_unknown_augmentation_is_an_error():
  with pytest.raises(UserError, match="unknown augmentation"):
    data.augment_batch(tf.zeros((1, 4, 4, 1)), "rotate", tf.constant([0, 0]))


def test_uncached_data_shuffles_files_and_a_bounded_buffer_by_seed_and_epoch(
  idx_folder, tmp_path, monkeypatch
):
  """The ImageNet path: no cache, a bounded shuffle buffer, order a function of (seed, epoch)."""
  import dataclasses

  monkeypatch.setenv(fashion_mnist.SOURCE_ENV, idx_folder)
  monkeypatch.setattr(fashion_mnist.FashionMnist, "__init__", _no_size_check_init)
  monkeypatch.setitem(
    data.SPECS,
    "fashion_mnist",
    dataclasses.replace(data.SPECS["fashion_mnist"], cache=False, shuffle_buffer=4),
  )
  splits = data.load_splits("fashion_mnist", data_dir=str(tmp_path / "tfds"), validation_size=10)
  assert splits.read_train is not None and splits.shuffle_buffer == 4

  def order(seed, epoch):
    batches = data.train_batches(splits, batch_size=5, seed=seed, epoch=epoch, augment=False)
    return [int(x[0, 0, 0]) for images, _ in batches for x in images.numpy()]

  first = order(0, 0)
  stored = sorted(int(x[0, 0, 0]) for x, _ in tfds.as_numpy(splits.train))
  assert sorted(first) == stored and len(set(first)) == 20  # Every training example once an epoch.
  assert order(0, 0) == first and order(0, 1) != first and order(1, 0) != first
  assert (
    data.SPECS["imagenet2012"].shuffle_buffer == 10_000 and not data.SPECS["imagenet2012"].cache
  )


def test_splits_are_index_slices_so_file_order_cannot_change_them():
  spec = data.SPECS["cifar10"]
  names = data.split_names(
    spec, 50000, 10000, validation_size=10000, train_examples=1000, eval_examples=500
  )
  assert names == {
    "train": "train[:1000]",
    "validation": "train[40000:40500]",
    "test": "test[:500]",
  }
  with pytest.raises(UserError, match="--validation_size=50000 leaves no training examples"):
    data.split_names(spec, 50000, 10000, validation_size=50000)


def test_analyses_never_prepare_data_and_name_the_folder_the_run_used(idx_folder, tmp_path):
  """prepare=False (analyses): a missing Fashion-MNIST is an error, and nothing is written."""
  from ls_keras.core import config

  nowhere = str(tmp_path / "nowhere")
  with pytest.raises(DataNotPreparedError, match="never write it") as e:
    data.load_splits(
      "fashion_mnist", data_dir=nowhere, fashion_mnist_source=idx_folder, prepare=False
    )
  assert nowhere in str(e.value) and not os.path.exists(nowhere)
  run = config.TrainConfig(data_dir=str(tmp_path / "recorded"), fashion_mnist_source=idx_folder)
  with pytest.raises(DataNotPreparedError, match=f"pass --data_dir={tmp_path / 'recorded'}"):
    data.load_run_splits(run, nowhere)
  assert not os.path.exists(nowhere) and not os.path.exists(tmp_path / "recorded")
