"""A TFDS builder that prepares Fashion-MNIST offline from local IDX files.

TFDS' own `fashion_mnist` downloads; this one reads the IDX files that Debian's
`dataset-fashion-mnist` package installs (or any folder holding them) and writes a
prepared data set with the same name, version and features, so the rest of ls_keras
reads it through TFDS like every other data set.
"""

import gzip
import os

import numpy as np
import tensorflow_datasets as tfds

from ls_keras.core.errors import UserError

DEBIAN_SOURCE = "/usr/share/datasets/fashion-mnist"
SOURCE_ENV = "LS_KERAS_FASHION_MNIST_DIR"
CLASS_NAMES = (
  "T-shirt/top",
  "Trouser",
  "Pullover",
  "Dress",
  "Coat",
  "Sandal",
  "Shirt",
  "Sneaker",
  "Bag",
  "Ankle boot",
)
FILES = {
  "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
  "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}
_IMAGE_MAGIC, _LABEL_MAGIC = 2051, 2049


def resolve_source(source: str = "") -> str:
  """The IDX folder: the argument, else $LS_KERAS_FASHION_MNIST_DIR, else Debian's."""
  return source or os.environ.get(SOURCE_ENV) or DEBIAN_SOURCE


def _open(folder: str, stem: str):
  for name in (stem + ".gz", stem):
    path = os.path.join(folder, name)
    if os.path.exists(path):
      return (gzip.open if name.endswith(".gz") else open)(path, "rb"), path
  raise UserError(
    f"Fashion-MNIST file {stem}(.gz) was not found in {folder}. Install Debian's package "
    f"(apt-get install dataset-fashion-mnist) or point --fashion_mnist_source / ${SOURCE_ENV} at a "
    "folder holding the four IDX files (train/t10k images and labels)."
  )


def read_idx(folder: str, images_stem: str, labels_stem: str, expected: int = 0):
  """Reads an IDX image/label pair into uint8 arrays [N, 28, 28, 1] and [N]."""
  f, images_path = _open(folder, images_stem)
  with f:
    raw = f.read()
  header = np.frombuffer(raw[:16], ">i4")
  if len(header) < 4 or header[0] != _IMAGE_MAGIC:
    raise UserError(f"{images_path} is not an IDX image file (bad header); the file is corrupt.")
  n, rows, cols = (int(v) for v in header[1:])
  if len(raw) != 16 + n * rows * cols:
    raise UserError(
      f"{images_path} holds {len(raw) - 16} pixel bytes, but its header promises "
      f"{n}x{rows}x{cols}; the file is truncated or corrupt."
    )
  images = np.frombuffer(raw, np.uint8, offset=16).reshape(n, rows, cols, 1)
  f, labels_path = _open(folder, labels_stem)
  with f:
    raw = f.read()
  header = np.frombuffer(raw[:8], ">i4")
  if len(header) < 2 or header[0] != _LABEL_MAGIC or len(raw) != 8 + int(header[1]):
    raise UserError(
      f"{labels_path} is not a complete IDX label file; the file is truncated or corrupt."
    )
  labels = np.frombuffer(raw, np.uint8, offset=8)
  if len(labels) != n or (expected and n != expected):
    raise UserError(
      f"{images_path} has {n} images and {labels_path} {len(labels)} labels; expected "
      f"{expected or n} of each."
    )
  if labels.max(initial=0) >= len(CLASS_NAMES):
    raise UserError(f"{labels_path} has label {labels.max()}; Fashion-MNIST labels are 0-9.")
  return images, labels


class FashionMnist(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Fashion-MNIST with TFDS' name, version and features, prepared from local IDX files."""

  VERSION = tfds.core.Version("3.0.1")

  def __init__(self, *, source: str = "", check_sizes: bool = True, **kwargs):
    self._source = resolve_source(source)
    self._check_sizes = check_sizes
    self._arrays = {}
    super().__init__(**kwargs)

  def download_and_prepare(self, *args, **kwargs):
    """Reads and checks every IDX file first, so bad or missing files leave nothing on disk."""
    self._arrays = {
      split: read_idx(self._source, images, labels, expected if self._check_sizes else 0)
      for split, (images, labels, expected) in FILES.items()
    }
    try:
      return super().download_and_prepare(*args, **kwargs)
    finally:
      self._arrays = {}

  def _info(self):
    return self.dataset_info_from_configs(
      description="Fashion-MNIST (Xiao et al. 2017), prepared offline from IDX files.",
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(28, 28, 1)),
          "label": tfds.features.ClassLabel(names=list(CLASS_NAMES)),
        }
      ),
      supervised_keys=("image", "label"),
      homepage="https://github.com/zalandoresearch/fashion-mnist",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing is downloaded.
    return {split: self._generate_examples(split) for split in FILES}

  def _generate_examples(self, split):
    images, labels = self._arrays[split]
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {"image": image, "label": int(label)}
