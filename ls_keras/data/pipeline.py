"""Input pipelines: every data set as tf.data splits, split as in the paper, augmented per recipe.

TFDS data sets (the curated ones, any other by name) are read through their builders, and
validation is the end of the train split; folders and arrays (`data/sources.py`) are held
in memory and split by seeded, stratified hold-outs.

Images leave this module as float32 pixel values in [0, 255]; normalisation lives inside
the models so that an exported model is self-contained. Training order and augmentation
are pure functions of (seed, epoch), so a resumed run sees exactly the data it would have.
"""

import dataclasses
import functools
import os
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

import tensorflow as tf
import tensorflow_datasets as tfds

from ls_keras.core.datasets import DatasetSpec, source_of
from ls_keras.data import fashion_mnist, sources
from ls_keras.core.errors import DataNotPreparedError, UserError


@dataclasses.dataclass(frozen=True)
class Splits:
  """The three splits as (uint8 image, int64 label) datasets, with their sizes and class names.

  `train` reads the training split in its stored order (for analyses that need fixed
  examples); `train_epoch(seed)` is what training reads: for data sets that are not
  cached, the same examples with their files shuffled by `seed`.
  """

  spec: DatasetSpec
  class_names: Tuple[str, ...]
  train: tf.data.Dataset
  validation: tf.data.Dataset
  test: tf.data.Dataset
  sizes: Dict[str, int]
  read_train: Optional[Callable[[int], tf.data.Dataset]] = None

  @property
  def num_classes(self) -> int:
    """K, the number of classes."""
    return len(self.class_names)

  def train_epoch(self, seed: int) -> tf.data.Dataset:
    """The training split for one epoch, its files shuffled by `seed` where that applies."""
    return self.read_train(seed) if self.read_train is not None else self.train

  @property
  def shuffle_buffer(self) -> int:
    """Examples in the training shuffle buffer: the spec's bound, or the whole split."""
    return min(self.sizes["train"], self.spec.shuffle_buffer or self.sizes["train"])


def _builder(dataset: str, data_dir: str, fashion_mnist_source: str, download: bool, write: bool):
  if dataset == "fashion_mnist":
    builder = fashion_mnist.FashionMnist(data_dir=data_dir or None, source=fashion_mnist_source)
    if not builder.is_prepared():
      builder.download_and_prepare()  # Reads local IDX files only.
    return builder
  return sources.tfds_builder(dataset, data_dir, download=download, prepare=write)


def _not_prepared(dataset: str, builder) -> DataNotPreparedError:
  return sources.not_prepared(dataset, builder)


def _read(builder, dataset: str, split: str, shuffle_seed: Optional[int] = None) -> tf.data.Dataset:
  read_config = tfds.ReadConfig(shuffle_seed=shuffle_seed) if shuffle_seed is not None else None
  try:
    return builder.as_dataset(
      split=split,
      as_supervised=True,
      shuffle_files=shuffle_seed is not None,
      read_config=read_config,
    )
  except AssertionError as e:  # TFDS' way of saying the prepared files are missing.
    raise _not_prepared(dataset, builder) from e


def _split_size(builder, dataset: str, split: str) -> int:
  """Examples in a whole split: from the prepared data's metadata, else by counting."""
  try:
    return builder.info.splits[split].num_examples
  except KeyError:  # No metadata (e.g. under tfds.testing.mock_data): count.
    return _size(_read(builder, dataset, split))


def _size(ds: tf.data.Dataset) -> int:
  n = int(ds.cardinality())
  if n < 0:
    n = int(ds.reduce(0, lambda count, _: count + 1))
  return n


def split_names(
  spec: DatasetSpec,
  train_size: int,
  test_size: int,
  *,
  validation_size: int,
  train_examples: int = 0,
  eval_examples: int = 0,
) -> Dict[str, str]:
  """TFDS split strings: validation = the last `validation_size` examples of the train split.

  Slicing by index (not `take`) keeps the same examples however the files are read. A data
  set without a test split (`spec.test_split == ""`) holds out the last 20% of its train
  split as test, and validation comes from the end of the rest. The paper's recipe
  (Appendix A): 40k train / 10k validation carved from the CIFAR training set.

  Args:
    spec: the data set's DatasetSpec; reads test_split ("" when it has none) and tfds_name.
    train_size: examples in the whole TFDS train split.
    test_size: examples in the whole test split (ignored without one).
    validation_size: examples held out from the end of the (remaining) train split.
    train_examples: use only the first N training examples (0: all).
    eval_examples: use only the first N validation and test examples (0: all).

  Returns:
    {"train", "validation", "test"} -> TFDS split strings by index, e.g.
    {"train": "train[:40000]", "validation": "train[40000:50000]", "test": "test[:10000]"}.

  Raises:
    UserError: when `validation_size` leaves no training examples.
  """
  test_split, test_start = spec.test_split, 0
  if not test_split:
    test_size = max(int(round(sources.TEST_FRACTION * train_size)), 1)
    train_size -= test_size
    test_split, test_start = "train", train_size
  if validation_size >= train_size:
    raise UserError(
      f"--validation_size={validation_size} leaves no training examples: the train split of "
      f"'{spec.tfds_name}' has {train_size} examples. Pass a smaller --validation_size (e.g. "
      f"{max(train_size // 10, 1)}, a tenth)."
    )
  first_validation = train_size - validation_size
  n_train = min(first_validation, train_examples) if train_examples else first_validation
  n_validation = min(validation_size, eval_examples) if eval_examples else validation_size
  n_test = min(test_size, eval_examples) if eval_examples else test_size
  return {
    "train": f"train[:{n_train}]",
    "validation": f"train[{first_validation}:{first_validation + n_validation}]",
    "test": f"{test_split}[{test_start}:{test_start + n_test}]"
    if test_start
    else f"{test_split}[:{n_test}]",
  }


def load_splits(
  dataset: str,
  *,
  data_dir: str = "",
  fashion_mnist_source: str = "",
  validation_size: int = 10000,
  train_examples: int = 0,
  eval_examples: int = 0,
  prepare: bool = True,
  image_size: int = 0,
  augmentation: str = "auto",
  download: bool = True,
  statistics: Optional[Tuple[Tuple[float, ...], Tuple[float, ...]]] = None,
) -> Splits:
  """Train = the train split minus its last `validation_size` examples; validation = those.

  (Folders and arrays: seeded, stratified hold-outs instead; see `sources.array_splits`.)

  Memoised per process: the runs of a sweep (or a test session) that read the same data
  share its decoded, in-memory cache, instead of decoding 50k images again per run (5 s
  each for Fashion-MNIST on a fast core).

  Args:
    dataset: a --dataset value: a key of SPECS, a TFDS name, folder:PATH or npz:PATH.
    data_dir: the TFDS data directory ('' for TFDS' default).
    fashion_mnist_source: the IDX folder ('' for $LS_KERAS_FASHION_MNIST_DIR, else Debian's).
    validation_size: examples held out from the end of the train split.
    train_examples: use only the first N training examples (0: all).
    eval_examples: use only the first N validation and test examples (0: all).
    prepare: whether a data set ls_keras can prepare offline (Fashion-MNIST) is written into
      `data_dir` when it is missing there. Analyses pass False: they read the data of
      finished runs and never write data sets (a run's config.json must not direct a write).
    image_size: resize images to this square size (0: native; required for varying sizes).
    augmentation: "auto" (the data set's own) or shift, crop_flip, flip, none; the spec's.
    download: download and prepare a TFDS data set missing from `data_dir` (when `prepare`).
    statistics: (mean, std) recorded by the run being resumed or analysed, which then
      replace those computed now, so its model normalises as it was trained to.

  Returns:
    Splits of uint8 images [H, W, C] and int64 labels; `spec` says the resolved shape,
    statistics and augmentation.

  Raises:
    DataNotPreparedError: the data set is not prepared under `data_dir` (with how to prepare
      it), and downloading it is off or failed (nothing half-written is left).
    UserError: unknown data set, bad data (see `sources.read_arrays`), or sizes that leave no
      training examples.
  """
  source = fashion_mnist.resolve_source(fashion_mnist_source) if dataset == "fashion_mnist" else ""
  data_dir = os.path.abspath(os.path.expanduser(data_dir)) if data_dir else ""
  if not prepare and dataset == "fashion_mnist":
    builder = fashion_mnist.FashionMnist(data_dir=data_dir or None, source=source)
    if not builder.is_prepared():
      raise DataNotPreparedError(
        f"The data set 'fashion_mnist' is not prepared in {builder.data_dir_root}, and analyses "
        "only read prepared data, never write it. Pass --data_dir=DIR where the runs' training "
        f"prepared it, or run train with --data_dir={data_dir or builder.data_dir_root} "
        "first (it prepares Fashion-MNIST from its IDX files)."
      )
  splits = _load_splits(
    dataset,
    data_dir,
    source,
    validation_size,
    train_examples,
    eval_examples,
    image_size,
    augmentation,
    download,
    prepare,
  )
  if statistics is not None and tuple(map(tuple, statistics)) != (
    splits.spec.mean,
    splits.spec.std,
  ):
    spec = dataclasses.replace(splits.spec, mean=tuple(statistics[0]), std=tuple(statistics[1]))
    splits = dataclasses.replace(splits, spec=spec)
  return splits


def load_run_splits(config, data_dir: Optional[str] = None, statistics=None) -> Splits:
  """The splits a finished run (its config object) was trained and evaluated on, for analyses.

  Read from `data_dir`, the folder the analysis was given on its command line ('' for TFDS'
  default), never prepared there. The data_dir recorded in the run's config.json is only
  named in the error when the data is missing: a workdir's files are data, and must not
  decide where an analysis reads or writes. `data_dir=None` (library callers that made the
  runs themselves, such as the main job) reads from the recorded folder, still read-only.

  Args:
    config: the run's TrainConfig or DistillConfig (as read from its config.json); reads
      dataset, data_dir, validation_size, train_examples, eval_examples, image_size and
      augmentation.
    data_dir: the folder to read from ('' for TFDS' default; None: the recorded one).
    statistics: the (mean, std) per channel on the 0-255 scale that the run recorded
      (`Workdir.data_statistics`), which replace those computed now; None: computed.

  Returns:
    Splits of (uint8 image [H, W, C], int64 label) examples, as `load_splits`.

  Raises:
    DataNotPreparedError: the data is not prepared there (naming the recorded folder).
    UserError: as `load_splits` (unknown data set, bad data, sizes).
  """
  recorded = config.data_dir
  try:
    return load_splits(
      config.dataset,
      data_dir=recorded if data_dir is None else data_dir,
      validation_size=config.validation_size,
      train_examples=config.train_examples,
      eval_examples=config.eval_examples,
      prepare=False,
      image_size=config.image_size,
      augmentation=config.augmentation,
      statistics=statistics,
    )
  except DataNotPreparedError as e:
    given = os.path.abspath(os.path.expanduser(data_dir)) if data_dir else data_dir
    if data_dir is None or not recorded or given == recorded:
      raise
    raise DataNotPreparedError(
      f"{e} The run was trained on data in {recorded}: pass --data_dir={recorded} if it is "
      "still there."
    ) from e


@functools.lru_cache(maxsize=8)
def _load_splits(
  dataset: str,
  data_dir: str,
  fashion_mnist_source: str,
  validation_size: int,
  train_examples: int,
  eval_examples: int,
  image_size: int,
  augmentation: str,
  download: bool,
  write: bool,
) -> Splits:
  kind = source_of(dataset)[0]
  if kind != "tfds":
    arrays = sources.read_arrays(dataset, image_size)
    spec = sources.array_spec(dataset, arrays, augmentation)
    parts = sources.array_splits(dataset, arrays, validation_size, train_examples, eval_examples)
    ready = {s: tf.data.Dataset.from_tensor_slices(parts[s]) for s in parts}
    sizes = {s: len(parts[s][1]) for s in parts}
    return Splits(
      spec, arrays.class_names, ready["train"], ready["validation"], ready["test"], sizes
    )
  spec, builder, resized = _resolve_tfds(
    dataset, data_dir, fashion_mnist_source, image_size, augmentation, download, write
  )
  names = split_names(
    spec,
    _split_size(builder, dataset, "train"),
    _split_size(builder, dataset, spec.test_split) if spec.test_split else 0,
    validation_size=validation_size,
    train_examples=train_examples,
    eval_examples=eval_examples,
  )

  def prepare(ds):
    ds = resized(ds)
    return ds.cache() if spec.cache else ds

  train, validation, test = (
    prepare(_read(builder, dataset, names[s])) for s in ("train", "validation", "test")
  )
  read_train = (
    None
    if spec.cache
    else (lambda seed: prepare(_read(builder, dataset, names["train"], shuffle_seed=seed)))
  )
  sizes = {"train": _size(train), "validation": _size(validation), "test": _size(test)}
  class_names = tuple(builder.info.features[builder.info.supervised_keys[1]].names)
  return Splits(spec, class_names, train, validation, test, sizes, read_train)


def _resolve_tfds(
  dataset, data_dir, fashion_mnist_source, image_size, augmentation, download, write
):
  """(spec with statistics, the prepared builder, a function resizing a read split to the spec)."""
  builder = _builder(dataset, data_dir, fashion_mnist_source, download, write)
  spec = sources.tfds_spec(dataset, builder, image_size, augmentation)
  stored_shape = tuple(builder.info.features[builder.info.supervised_keys[0]].shape)
  size = spec.image_shape[:2]

  def resized(ds):
    if stored_shape[:2] == tuple(size):
      return ds
    return ds.map(
      lambda x, y: (sources.resize_images(x, size), y), num_parallel_calls=tf.data.AUTOTUNE
    )

  if not spec.mean:  # Not curated: the training split's own statistics.
    mean, std = sources.tfds_statistics(
      builder, spec, lambda split: resized(_read(builder, dataset, split)), write
    )
    spec = dataclasses.replace(spec, mean=mean, std=std)
  return spec, builder, resized


def resolve(
  dataset: str,
  data_dir: str = "",
  *,
  image_size: int = 0,
  augmentation: str = "auto",
  download: bool = True,
  prepare: bool = True,
  fashion_mnist_source: str = "",
) -> DatasetSpec:
  """The DatasetSpec of any --dataset value: the curated one, or derived from the data.

  A TFDS data set missing from `data_dir` is downloaded first (when `download` and
  `prepare`); a folder or arrays are read and checked (memoised per process).

  Args:
    dataset: a --dataset value: a key of SPECS, a TFDS name, folder:PATH or npz:PATH.
    data_dir: the TFDS data directory ('' for TFDS' default).
    image_size: resize images to this square size in pixels (0: native).
    augmentation: "auto" (the data set's own) or shift, crop_flip, flip, none.
    download: download a TFDS data set missing from `data_dir` (when `prepare`).
    prepare: whether data may be written into `data_dir` (False: read only).
    fashion_mnist_source: the IDX folder ('' for $LS_KERAS_FASHION_MNIST_DIR, else Debian's).

  Returns:
    The DatasetSpec: image_shape (H, W, C), per-channel mean and std on the 0-255 scale
    (computed from the training split when not curated), the resolved augmentation, the
    test split's name and how the data is read (cache, shuffle_buffer, source).

  Raises:
    DataNotPreparedError, UserError: as `load_splits`.
  """
  if source_of(dataset)[0] != "tfds":
    return sources.array_spec(dataset, sources.read_arrays(dataset, image_size), augmentation)
  data_dir = os.path.abspath(os.path.expanduser(data_dir)) if data_dir else ""
  source = fashion_mnist.resolve_source(fashion_mnist_source) if dataset == "fashion_mnist" else ""
  return _resolve_tfds(
    dataset, data_dir, source, image_size, augmentation, download and prepare, prepare
  )[0]


def augment_batch(images: tf.Tensor, augmentation: str, seed: tf.Tensor) -> tf.Tensor:
  """Random augmentation of a float batch [B, H, W, C], one draw per image, deterministic in `seed`.

  Vectorised (one gather per axis, no per-image ops), so the pipeline stays far ahead of
  the training step on few CPU cores. shift: zero-pad 2 and crop back (MNIST-like +-2 px);
  crop_flip: zero-pad 4, crop, random horizontal flip (CIFAR); flip: random flip only;
  none: the images unchanged. The paper's recipes (Appendix A): ResNet-56's pad to 40x40,
  random 32x32 crop and flip; the MNIST teacher's random +-2-pixel shifts (A.5).

  Args:
    images: float32 pixel values [B, H, W, C] (0-255 in the pipeline; padding is 0).
    augmentation: "shift", "crop_flip", "flip" or "none".
    seed: a stateless-random seed, an integer tensor [2] (cast to int64); the same seed
      gives the same draws.

  Returns:
    The augmented images, the same shape [B, H, W, C] and dtype as `images`.

  Raises:
    UserError: an augmentation other than the four above.
  """
  if augmentation not in ("shift", "crop_flip", "flip", "none"):
    raise UserError(
      f"unknown augmentation {augmentation!r}; allowed: shift, crop_flip, flip, none."
    )
  if augmentation == "none":
    return images
  seed = tf.cast(seed, tf.int64)
  if augmentation in ("shift", "crop_flip"):
    pad = 2 if augmentation == "shift" else 4
    batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    offsets = tf.random.stateless_uniform([batch, 2], seed, 0, 2 * pad + 1, dtype=tf.int32)
    rows = offsets[:, :1] + tf.range(height)[None, :]
    cols = offsets[:, 1:] + tf.range(width)[None, :]
    images = tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
  if augmentation in ("crop_flip", "flip"):
    flip = tf.random.stateless_uniform([tf.shape(images)[0]], seed + 1) < 0.5
    images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
  return images


def train_batches(
  splits: Splits,
  *,
  batch_size: int,
  seed: int,
  epoch: int,
  augment: bool,
  input_context: Optional[tf.distribute.InputContext] = None,
  skip_steps: int = 0,
) -> tf.data.Dataset:
  """One epoch of shuffled, augmented, one-hot training batches (per-replica batch size).

  The order and augmentation depend only on (seed, epoch), so a run resumed at an epoch
  boundary, or `skip_steps` global steps into the epoch (a step checkpoint), sees exactly
  the batches the uninterrupted run would have seen. Data sets that
  are not cached shuffle their files by the same seed and then through a bounded buffer
  (`DatasetSpec.shuffle_buffer`), so memory stays bounded whatever the split's size.

  Args:
    splits: the run's Splits; its train split, classes and augmentation are used.
    batch_size: the global batch (examples per step); each input pipeline batches its
      per-replica share when `input_context` is given.
    seed: the run's seed; with `epoch` it fixes the order and the augmentation.
    epoch: the epoch, 0-based.
    augment: apply the spec's augmentation (`augment_batch`).
    input_context: tf.distribute's, under `distribute_datasets_from_function` (each
      pipeline reads its shard); None: one pipeline.
    skip_steps: global steps of the epoch already trained (resuming a step checkpoint).

  Returns:
    A tf.data.Dataset of (float32 images [B, H, W, C] with pixel values 0-255, float32
    one-hot labels [B, K]), B the per-replica batch size; a partial last batch is dropped.

  Raises:
    UserError: as `augment_batch`, when `augment` and the spec names an unknown augmentation.
  """
  epoch_seed = seed * 1_000_003 + epoch
  ds = splits.train_epoch(epoch_seed)
  batches_per_step = 1
  if input_context is not None:
    ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    batch_size = input_context.get_per_replica_batch_size(batch_size)
    batches_per_step = input_context.num_replicas_in_sync // input_context.num_input_pipelines
  ds = ds.shuffle(splits.shuffle_buffer, seed=epoch_seed, reshuffle_each_iteration=False)
  num_classes, augmentation = splits.num_classes, splits.spec.augmentation

  def preprocess(index, batch):
    images, labels = batch
    images = tf.cast(images, tf.float32)
    if augment:
      images = augment_batch(
        images, augmentation, tf.stack([tf.constant(epoch_seed, tf.int64), index])
      )
    return images, tf.one_hot(labels, num_classes)

  ds = ds.batch(batch_size, drop_remainder=True).enumerate().skip(skip_steps * batches_per_step)
  return ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(
    tf.data.AUTOTUNE
  )


def eval_batches(
  ds: tf.data.Dataset,
  num_classes: int,
  *,
  batch_size: int,
  input_context: Optional[tf.distribute.InputContext] = None,
) -> tf.data.Dataset:
  """(image, one-hot label, mask) batches, padded with masked examples to whole global batches.

  Padding makes every worker and replica run the same number of steps, which
  multi-worker collectives require; the mask drops the padding from every metric.

  Args:
    ds: a split: (image [H, W, C], int64 label) examples, images uint8 0-255 (as `Splits`).
    num_classes: K, the width of the one-hot labels.
    batch_size: the global batch; the split is padded to a multiple of it, and each input
      pipeline batches its per-replica share when `input_context` is given.
    input_context: tf.distribute's, under `distribute_datasets_from_function`; None: one
      pipeline.

  Returns:
    A tf.data.Dataset of (float32 images [B, H, W, C] with pixel values 0-255, float32
    one-hot labels [B, K], float32 mask [B]: 1 for real examples, 0 for padding), in the
    split's order.
  """
  size = _size(ds)
  pad = (-size) % batch_size
  if pad:
    image_spec, label_spec = ds.element_spec
    blank = (tf.zeros(image_spec.shape, image_spec.dtype), tf.zeros([], label_spec.dtype))
    ds = ds.concatenate(tf.data.Dataset.from_tensors(blank).repeat(pad))
  ds = ds.enumerate()
  if input_context is not None:
    ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    batch_size = input_context.get_per_replica_batch_size(batch_size)

  def to_model_inputs(index, example):  # Whole batches at once: a per-example map costs 50 us each.
    images, labels = example
    return (
      tf.cast(images, tf.float32),
      tf.one_hot(labels, num_classes),
      tf.cast(index < size, tf.float32),
    )

  return ds.batch(batch_size).map(to_model_inputs).prefetch(tf.data.AUTOTUNE)


def class_examples(
  ds: tf.data.Dataset, classes: Sequence[int], per_class: int
) -> Tuple[np.ndarray, np.ndarray]:
  """The first `per_class` examples of each class in `ds`, grouped by class, for analyses.

  What the penultimate-layer projections (paper Section 2, Figure 1) and the mutual
  information estimates (Section 4, Figure 6) look at.

  Args:
    ds: a split: (uint8 image [H, W, C], int64 label) examples, e.g. `Splits.train`; read
      to its end.
    classes: the class indices wanted, in the order the result groups them.
    per_class: examples wanted of each class.

  Returns:
    (images, labels): NumPy float32 images [len(classes) * per_class, H, W, C] with pixel
    values 0-255, grouped by class in the order of `classes`; int64 labels [same N] that
    are positions in `classes` (0, 1, ...), not class indices.

  Raises:
    UserError: the split has fewer than `per_class` examples of one of the classes.
  """
  wanted = {c: [] for c in classes}
  # Reads the split to the end, in batches: stopping early would discard a cache being filled.
  for images, labels in ds.batch(4096).as_numpy_iterator():
    for c in classes:
      wanted[c].extend(images[labels == c][: per_class - len(wanted[c])])
  short = {c: len(v) for c, v in wanted.items() if len(v) < per_class}
  if short:
    raise UserError(
      f"the split has too few examples of classes {short} (class: count found) for {per_class} "
      "per class; ask for fewer examples per class."
    )
  images = np.concatenate([np.stack(wanted[c]) for c in classes]).astype(np.float32)
  return images, np.repeat(np.arange(len(classes)), per_class)
