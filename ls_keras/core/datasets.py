"""The data sets ls_keras reads through TFDS: one entry each, and nothing else to touch to add one.

TensorFlow-free, so the --dataset flag's choices come from here without starting TensorFlow.
"""

import dataclasses
from typing import Dict, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """What the pipeline and the models need to know about a data set."""

  tfds_name: str
  image_shape: Tuple[int, int, int]
  mean: Tuple[float, ...]  # Per-channel pixel statistics on the 0-255 scale.
  std: Tuple[float, ...]
  augmentation: str  # "shift" (+-2 px), "crop_flip" (pad 4, crop, flip) or "flip".
  prepare: str  # How a user prepares it offline: shown when it is missing.
  test_split: str = "test"
  cache: bool = True  # Keep decoded splits in memory (small data sets); else read files each epoch.
  # Examples in the training shuffle buffer; None: the whole split (exact shuffle, cached
  # data sets). Data sets too big for that shuffle their files too (see `Splits.train_epoch`).
  shuffle_buffer: Optional[int] = None


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
