"""The curated data sets (one entry each), and the syntax of every other --dataset value.

`--dataset` is one of
- a key of SPECS: the paper's data sets, with their splits, statistics and augmentation;
- any other TFDS image classification data set by name (`svhn_cropped`, `beans`, ...);
- `folder:PATH`: one subfolder of images per class (optionally under `train/` and `test/`);
- `npz:PATH`: arrays x_train, y_train, x_test, y_test (keras.datasets' convention).
`data.resolve` turns any of them into a `DatasetSpec`. TensorFlow-free, so flags are
checked here without starting TensorFlow.
"""

import dataclasses
import os
import re
from typing import Dict, Optional, Tuple

from ls_keras.core.errors import UserError


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """What the pipeline and the models need to know about a data set."""

  tfds_name: str
  image_shape: Tuple[int, int, int]
  mean: Tuple[float, ...]  # Per-channel pixel statistics on the 0-255 scale.
  std: Tuple[float, ...]
  augmentation: str  # "shift" (+-2 px), "crop_flip" (pad 4, crop, flip), "flip" or "none".
  prepare: str  # How a user prepares it offline: shown when it is missing.
  test_split: str = "test"
  cache: bool = True  # Keep decoded splits in memory (small data sets); else read files each epoch.
  # Examples in the training shuffle buffer; None: the whole split (exact shuffle, cached
  # data sets). Data sets too big for that shuffle their files too (see `Splits.train_epoch`).
  shuffle_buffer: Optional[int] = None
  # Where the examples come from: "tfds" (a TFDS builder), "folder" or "npz" (in memory).
  source: str = "tfds"


def _tfds_build(name: str) -> str:
  return f"on a connected machine: tfds build {name} --data_dir=DIR"


SPECS: Dict[str, DatasetSpec] = {
  "fashion_mnist": DatasetSpec(
    "fashion_mnist",
    (28, 28, 1),
    (72.94,),
    (90.02,),
    "shift",
    "apt-get install dataset-fashion-mnist (or set --fashion_mnist_source)",
  ),
  "mnist": DatasetSpec("mnist", (28, 28, 1), (33.32,), (78.57,), "shift", _tfds_build("mnist")),
  "cifar10": DatasetSpec(
    "cifar10",
    (32, 32, 3),
    (125.3, 123.0, 113.9),
    (63.0, 62.1, 66.7),
    "crop_flip",
    _tfds_build("cifar10"),
  ),
  "cifar100": DatasetSpec(
    "cifar100",
    (32, 32, 3),
    (129.3, 124.1, 112.4),
    (68.2, 65.4, 70.4),
    "crop_flip",
    _tfds_build("cifar100"),
  ),
  # ImageNet has no labelled test split: its official validation set serves as test.
  # 299x299x3 bytes = 268 kB an image: a 10k buffer holds 2.7 GB; files are shuffled too.
  "imagenet2012": DatasetSpec(
    "imagenet2012",
    (299, 299, 3),
    (123.7, 116.3, 103.5),
    (58.4, 57.1, 57.4),
    "flip",
    "download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from image-net.org into "
    "DIR/downloads/manual, then: tfds build imagenet2012 --data_dir=DIR",
    test_split="validation",
    cache=False,
    shuffle_buffer=10_000,
  ),
}


# Every value of --augmentation; "auto" is `auto_augmentation`'s choice.
AUGMENTATIONS = ("auto", "shift", "crop_flip", "flip", "none")
FOLDER, NPZ = "folder:", "npz:"
# A TFDS name, optionally with a config and version: name[/config][:1.2.3].
_TFDS_NAME = re.compile(r"^[a-z][a-z0-9_]*(/[A-Za-z0-9_.\-]+)?(:[0-9]+\.[0-9]+\.[0-9]+)?$")


def auto_augmentation(image_shape: Tuple[int, int, int]) -> str:
  """The augmentation `--augmentation=auto` gives a data set that is not curated.

  Colour images of at least 32x32 get the CIFAR recipe (pad 4, random crop, random flip);
  every other image (grey, or smaller) gets MNIST's random shifts of up to 2 px, which
  neither mirror digits and letters nor crop away much of a small image.
  """
  height, width, channels = image_shape
  return "crop_flip" if channels == 3 and min(height, width) >= 32 else "shift"


def source_of(dataset: str) -> Tuple[str, str]:
  """("folder" | "npz" | "tfds", the path or TFDS name) of a --dataset value."""
  for prefix in (FOLDER, NPZ):
    if dataset.startswith(prefix):
      return prefix[:-1], dataset[len(prefix) :]
  return "tfds", dataset


def absolute_dataset(dataset: str) -> str:
  """`dataset` with the path of a folder: or npz: value made absolute (`~` expanded).

  Recorded so, a run resumed or analysed from another working directory reads the same data.
  """
  kind, value = source_of(dataset)
  if kind == "tfds" or not value:
    return dataset
  return f"{kind}:{os.path.abspath(os.path.expanduser(value))}"


def check_dataset(dataset: str) -> None:
  """Raises UserError unless `dataset` is a well-formed --dataset value (nothing is read)."""
  kind, value = source_of(dataset)
  allowed = (
    f"a curated data set ({', '.join(SPECS)}), any TFDS image classification data set by name "
    "(e.g. svhn_cropped), folder:PATH (one subfolder of images per class) or npz:PATH (arrays "
    "x_train, y_train, x_test, y_test)"
  )
  if kind != "tfds" and not value:
    raise UserError(
      f"--dataset={dataset} is not allowed: give a path after '{kind}:'; allowed: {allowed}."
    )
  if kind == "tfds" and not _TFDS_NAME.match(dataset):
    raise UserError(f"--dataset={dataset} is not allowed: choose {allowed}.")
