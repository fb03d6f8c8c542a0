"""Where the examples of a --dataset come from, and the `DatasetSpec` each one gets.

- Curated data sets (`SPECS`) and any other TFDS image classification data set by name are
  read through `tfds.builder`; one missing from the data directory is downloaded and
  prepared on first use, as `tfds.load` does (`download=True`), or refused with how to
  prepare it elsewhere.
- `folder:PATH` is read through TFDS' own `ImageFolder`, and `npz:PATH` with `np.load`,
  into uint8 arrays held in memory; splits are then carved from them by seeded,
  stratified hold-outs (`stratified_split`).

A data set that is not curated gets its spec from its data: shape and class names, the
per-channel pixel mean and standard deviation of its training split, and the augmentation
`core.datasets.auto_augmentation` picks (unless --augmentation says otherwise).
"""

import dataclasses
import functools
import json
import os
import shutil
import socket
import tempfile
import urllib.parse
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from ls_keras.core.datasets import SPECS, DatasetSpec, auto_augmentation, source_of
from ls_keras.core.errors import DataNotPreparedError, UserError

# Splits carved from the data by ls_keras (validation; test where the data has none) are the
# same for every run, whatever its --seed: runs of different seeds are compared on one split.
SPLIT_SEED = 0
# The share of the examples held out as the test split when a folder or arrays have none.
TEST_FRACTION = 0.2
# Pixel statistics of a TFDS data set are computed on at most this many training images.
STATS_EXAMPLES = 50_000
# A TFDS data set whose decoded train split is larger is read from its files each epoch
# (files shuffled, then a bounded buffer: see `Splits.train_epoch`) instead of cached in memory.
CACHE_BYTES = 4 * 2**30
UNCACHED_SHUFFLE_BUFFER = 10_000
_CONNECT_TIMEOUT_S = 10


@dataclasses.dataclass(frozen=True)
class Arrays:
  """A data set in memory: uint8 images [N, H, W, C] (C 1 or 3) and int64 labels [N]."""

  x_train: np.ndarray
  y_train: np.ndarray
  x_test: Optional[np.ndarray]  # None: the test split is held out of the training arrays.
  y_test: Optional[np.ndarray]
  class_names: Tuple[str, ...]


def prepare_instructions(dataset: str) -> str:
  """How a user prepares a TFDS data set on a connected machine (shown when it is missing)."""
  if dataset in SPECS:
    return SPECS[dataset].prepare
  return f"on a connected machine: tfds build {dataset} --data_dir=DIR"


# --- TFDS data sets ---------------------------------------------------------------------------


def tfds_builder(dataset: str, data_dir: str, *, download: bool, prepare: bool):
  """The TFDS builder of `dataset` in `data_dir`, prepared (downloaded first where allowed).

  Raises:
    UserError: TFDS does not know the name.
    DataNotPreparedError: not prepared, and downloading is off (`download`), not allowed
      (`prepare=False`: analyses) or failed; nothing half-written is left in `data_dir`.
  """
  try:
    builder = tfds.builder(dataset, data_dir=data_dir or None)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise UserError(
      f"--dataset={dataset}: TFDS does not know the data set '{dataset}' "
      f"({str(e).splitlines()[0]})."
    ) from e
  except (ValueError, KeyError, AssertionError) as e:  # A bad config or version.
    raise UserError(f"--dataset={dataset} is not a TFDS data set TFDS can build: {e}") from e
  if builder.is_prepared():
    return builder
  if not (download and prepare):
    raise not_prepared(dataset, builder, downloading=download and not prepare)
  _download(dataset, builder)
  return builder


def not_prepared(dataset: str, builder, reason: str = "", downloading: bool = False):
  """The DataNotPreparedError for a data set missing from the builder's data directory."""
  where = getattr(builder, "data_dir_root", None) or "the TFDS data directory"
  why = (
    f" Downloading it failed ({reason})."
    if reason
    else " Analyses only read prepared data, never download it."
    if downloading
    else " Downloading is off (--nodownload)."
  )
  return DataNotPreparedError(
    f"The data set '{dataset}' is not prepared in {where}.{why} Prepare it with: "
    f"{prepare_instructions(dataset)}, then pass --data_dir=DIR (the folder that holds "
    f"{dataset.split('/')[0].split(':')[0]}/)."
  )


def _unreachable(builder) -> Optional[str]:
  """Why the builder's download hosts cannot be reached, or None (reachable, or unknown).

  One TCP connection per host, 10 s at most each: without a network this answers in
  seconds, where TFDS' own retries with back-off take minutes.
  """
  hosts = set()
  for url in getattr(type(builder), "url_infos", None) or {}:
    parsed = urllib.parse.urlparse(url)
    if parsed.hostname:
      hosts.add((parsed.hostname, parsed.port or (80 if parsed.scheme == "http" else 443)))
  for host, port in sorted(hosts):
    try:
      socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S).close()
    except OSError as e:
      return f"cannot reach {host}:{port}: {e}"
  return None


def _entries(root: str, depth: int = 3) -> set:
  """Every path under `root` down to `depth` levels (what a failed download may add to)."""
  found, level = set(), [root]
  for _ in range(depth):
    below = []
    for folder in level:
      try:
        names = os.listdir(folder)
      except OSError:
        continue
      for name in names:
        path = os.path.join(folder, name)
        found.add(path)
        if os.path.isdir(path) and not os.path.islink(path):
          below.append(path)
    level = below
  return found


def _download(dataset: str, builder) -> None:
  """Downloads and prepares `builder`; on any failure removes what it wrote, then refuses."""
  reason = _unreachable(builder)
  if reason is not None:
    raise not_prepared(dataset, builder, reason)
  root = builder.data_dir_root
  existed = os.path.exists(root)
  before = _entries(root) if existed else set()
  try:
    builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
  except BaseException as e:
    if not existed:
      shutil.rmtree(root, ignore_errors=True)
    else:
      for path in sorted(_entries(root) - before, key=len):
        if os.path.isdir(path) and not os.path.islink(path):
          shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
          os.remove(path)
    if not isinstance(e, Exception):
      raise
    text = str(e).strip().splitlines()
    raise not_prepared(
      dataset, builder, f"{type(e).__name__}: {text[0][:300] if text else ''}"
    ) from e


def tfds_spec(dataset: str, builder, image_size: int, augmentation: str) -> DatasetSpec:
  """The spec of a TFDS data set: the curated one, else derived from the builder's info.

  Raises:
    UserError: not an image classification data set; images of varying size without
      `image_size`; no train split.
  """
  info = builder.info
  keys = info.supervised_keys
  features = info.features
  if dataset in SPECS:
    spec = SPECS[dataset]
    if image_size:
      spec = dataclasses.replace(spec, image_shape=(image_size, image_size, spec.image_shape[2]))
    if augmentation != "auto":
      spec = dataclasses.replace(spec, augmentation=augmentation)
    return spec
  if (
    not keys
    or len(keys) != 2
    or not isinstance(features[keys[0]], tfds.features.Image)
    or not isinstance(features[keys[1]], tfds.features.ClassLabel)
  ):
    raise UserError(
      f"--dataset={dataset} is not an image classification data set: ls_keras needs "
      f"supervised (image, class label) pairs, and its info gives {keys or 'none'}."
    )
  height, width, channels = features[keys[0]].shape
  if channels not in (1, 3):
    raise UserError(
      f"--dataset={dataset} has images of {channels} channels; ls_keras reads grey (1) or "
      "colour (3) images."
    )
  if not image_size and (height is None or width is None):
    raise UserError(
      f"--dataset={dataset} has images of varying size (shape {features[keys[0]].shape}): pass "
      "--image_size=N to resize them to NxN."
    )
  shape = (image_size, image_size, channels) if image_size else (height, width, channels)
  names = set(info.splits) or {"train", "test"}  # No metadata (tfds.testing.mock_data): both.
  if "train" not in names:
    raise UserError(
      f"--dataset={dataset} has no 'train' split (it has {', '.join(sorted(names))})."
    )
  test_split = next((s for s in ("test", "validation") if s in names), "")
  try:
    examples = sum(info.splits[s].num_examples for s in info.splits)
  except (KeyError, TypeError):
    examples = 0
  cache = examples * int(np.prod(shape)) <= CACHE_BYTES
  return DatasetSpec(
    dataset,
    shape,
    (),
    (),
    auto_augmentation(shape) if augmentation == "auto" else augmentation,
    prepare_instructions(dataset),
    test_split=test_split,
    cache=cache,
    shuffle_buffer=None if cache else UNCACHED_SHUFFLE_BUFFER,
  )


def resize_images(images: tf.Tensor, image_shape) -> tf.Tensor:
  """uint8 images [..., H, W, C] resized (bilinear) to `image_shape`'s height and width."""
  return tf.cast(tf.image.resize(images, image_shape[:2]), tf.uint8)


def tfds_statistics(
  builder, spec: DatasetSpec, read, write: bool
) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
  """Per-channel pixel mean and std (0-255 scale) of the first 50k training images.

  Computed once and cached beside the prepared data (`ls_keras_stats_<size>.json` in the
  builder's folder) when `write`; analyses (`write=False`) read the cache or compute them.
  `read(split)` gives the split's (image, label) dataset, resized to the spec's shape.
  """
  cache = os.path.join(str(builder.data_dir), f"ls_keras_stats_{spec.image_shape[0]}.json")
  try:
    with open(cache) as f:
      cached = json.load(f)
    return tuple(cached["mean"]), tuple(cached["std"])
  except (OSError, ValueError, KeyError, TypeError):
    pass
  channels = spec.image_shape[2]
  total, squares, count = np.zeros(channels), np.zeros(channels), 0
  for images, _ in read("train").take(STATS_EXAMPLES).batch(1024).as_numpy_iterator():
    pixels = images.reshape(-1, channels).astype(np.float64)
    total += pixels.sum(0)
    squares += (pixels**2).sum(0)
    count += len(pixels)
  mean = total / max(count, 1)
  std = np.sqrt(np.maximum(squares / max(count, 1) - mean**2, 0.0))
  stats = tuple(round(float(m), 3) for m in mean), tuple(round(max(float(s), 1.0), 3) for s in std)
  if write and os.path.isdir(str(builder.data_dir)):
    temporary = f"{cache}.tmp{os.getpid()}"
    try:
      with open(temporary, "w") as f:
        json.dump({"mean": stats[0], "std": stats[1]}, f)
      os.replace(temporary, cache)
    except OSError:
      pass  # A read-only data directory: computed again next time.
  return stats


# --- Folders and arrays -----------------------------------------------------------------------


def _signature(path: str) -> Tuple:
  """What changes when a file or folder is rewritten (the memo's key)."""
  try:
    st = os.stat(path)
  except OSError:
    return ()
  return (st.st_size, st.st_mtime_ns)


def read_arrays(dataset: str, image_size: int) -> Arrays:
  """The examples of a folder: or npz: data set, checked (memoised per process).

  Raises:
    UserError: a missing, empty or unreadable source; fewer than 2 classes; labels out of
      range; arrays of mismatched lengths or that are not images; images of mixed channel
      counts, or of varying size without `image_size`.
  """
  kind, path = source_of(dataset)
  return _read_arrays(kind, os.path.abspath(os.path.expanduser(path)), image_size, _signature(path))


@functools.lru_cache(maxsize=4)
def _read_arrays(kind: str, path: str, image_size: int, signature: Tuple) -> Arrays:
  del signature  # Only the memo's key.
  arrays = _read_npz(path, image_size) if kind == "npz" else _read_folder(path, image_size)
  _check_classes(f"{kind}:{path}", arrays)
  return arrays


def _bad(dataset: str, what: str) -> UserError:
  return UserError(f"--dataset={dataset}: {what}")


def _read_npz(path: str, image_size: int) -> Arrays:
  dataset = f"npz:{path}"
  if not os.path.isfile(path):
    raise _bad(
      dataset, "no such file; give an .npz file of arrays x_train, y_train, x_test, y_test."
    )
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except (OSError, ValueError, EOFError) as e:
    raise _bad(
      dataset,
      f"the file cannot be read as .npz arrays ({type(e).__name__}: {e}); write it with "
      "np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...).",
    ) from e
  missing = [k for k in ("x_train", "y_train") if k not in arrays]
  if missing or (("x_test" in arrays) != ("y_test" in arrays)):
    raise _bad(
      dataset,
      f"it holds {', '.join(sorted(arrays)) or 'no arrays'}; give x_train and y_train, and "
      "x_test with y_test (or neither: a stratified 20% of the training arrays is then held "
      "out for testing), and optionally class_names.",
    )
  names = None
  if "class_names" in arrays:
    names = arrays["class_names"]
    if names.ndim != 1 or names.dtype.kind not in "US":
      raise _bad(
        dataset,
        f"class_names has shape {names.shape} and type {names.dtype}; give a 1-D array of "
        "strings, one per class.",
      )
    names = tuple(str(n.decode() if isinstance(n, bytes) else n) for n in names)
  xs = {k: _images(dataset, k, arrays[k], image_size) for k in ("x_train", "x_test") if k in arrays}
  ys = {k: _labels(dataset, k, arrays[k]) for k in ("y_train", "y_test") if k in arrays}
  for x_key, y_key in (("x_train", "y_train"), ("x_test", "y_test")):
    if x_key in xs and len(xs[x_key]) != len(ys[y_key]):
      raise _bad(
        dataset,
        f"{x_key} has {len(xs[x_key])} images but {y_key} {len(ys[y_key])} labels; give one "
        "label per image.",
      )
  if "x_test" in xs and xs["x_test"].shape[1:] != xs["x_train"].shape[1:]:
    raise _bad(
      dataset,
      f"x_train holds images of shape {xs['x_train'].shape[1:]} but x_test "
      f"{xs['x_test'].shape[1:]}; give images of one shape, or pass --image_size=N.",
    )
  top = max(int(y.max(initial=-1)) for y in ys.values())
  if names is None:
    names = tuple(str(c) for c in range(top + 1))
  return Arrays(xs["x_train"], ys["y_train"], xs.get("x_test"), ys.get("y_test"), names)


def _images(dataset: str, key: str, x: np.ndarray, image_size: int) -> np.ndarray:
  """`x` as uint8 [N, H, W, C]; [N, H, W] gains C=1."""
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4 or x.shape[-1] not in (1, 3) or x.dtype.kind not in "uif" or not x.size:
    raise _bad(
      dataset,
      f"{key} has shape {x.shape} and type {x.dtype}, which are not images; give numbers "
      "0-255 of shape [N, H, W] (grey), [N, H, W, 1] or [N, H, W, 3] (colour).",
    )
  if x.dtype.kind == "f":
    if not np.all(np.isfinite(x)):
      raise _bad(dataset, f"{key} holds NaN or infinite values; give pixel values 0-255.")
    if x.max() <= 1.0 and x.max() > 0:
      raise _bad(
        dataset,
        f"{key} holds values in [0, 1]; ls_keras reads pixel values 0-255: multiply by 255 and "
        "cast to uint8.",
      )
  if x.min() < 0 or x.max() > 255:
    raise _bad(
      dataset, f"{key} holds values from {x.min()} to {x.max()}; pixel values must lie in 0-255."
    )
  x = np.rint(x).astype(np.uint8) if x.dtype != np.uint8 else x
  if image_size and x.shape[1:3] != (image_size, image_size):
    x = np.concatenate(
      [
        resize_images(tf.constant(x[i : i + 1024]), (image_size, image_size)).numpy()
        for i in range(0, len(x), 1024)
      ]
    )
  return x


def _labels(dataset: str, key: str, y: np.ndarray) -> np.ndarray:
  """`y` as int64 [N]; [N, 1] (CIFAR's keras.datasets arrays) is flattened."""
  if y.ndim == 2 and y.shape[1] == 1:
    y = y[:, 0]
  integral = y.dtype.kind in "iu" or (
    y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y))
  )
  if y.ndim != 1 or not integral:
    raise _bad(
      dataset,
      f"{key} has shape {y.shape} and type {y.dtype}; give integer class indices of shape [N] "
      "(not one-hot vectors).",
    )
  return y.astype(np.int64)


def _read_folder(path: str, image_size: int) -> Arrays:
  dataset = f"folder:{path}"
  if not os.path.isdir(path):
    raise _bad(dataset, "no such folder; give a folder with one subfolder of images per class.")
  try:
    subfolders = sorted(e for e in os.listdir(path) if os.path.isdir(os.path.join(path, e)))
  except OSError as e:
    raise _bad(dataset, f"the folder cannot be read ({e.strerror}).") from e
  split_layout = "train" in subfolders
  if split_layout and set(subfolders) - {"train", "test"}:
    raise _bad(
      dataset,
      f"it holds train/ and also {', '.join(sorted(set(subfolders) - {'train', 'test'}))}/; "
      "give either class subfolders, or train/ and test/ (each with class subfolders).",
    )
  with tempfile.TemporaryDirectory(prefix="ls_keras_folder_") as scratch:
    root = path
    if not split_layout:  # ImageFolder reads ROOT/split/class/image: make PATH the train split.
      root = scratch
      os.symlink(path, os.path.join(scratch, "train"))
    try:
      builder = tfds.ImageFolder(root, shape=(None, None, None))
    except (OSError, tf.errors.OpError) as e:
      raise _bad(dataset, f"the folder cannot be read ({e}).") from e
    names = tuple(builder.info.features["label"].names)
    counts = {s: builder.info.splits[s].num_examples for s in builder.info.splits}
    if not counts.get("train"):
      raise _bad(
        dataset,
        "it holds no images in class subfolders (png, jpg, jpeg, bmp, gif); give one subfolder "
        "of images per class" + (" under train/." if split_layout else "."),
      )
    splits = {
      s: _decode_split(dataset, builder, s, image_size) for s in ("train", "test") if counts.get(s)
    }
  channels = {s: x.shape[-1] for s, (x, _, _) in splits.items()}
  if len(set(channels.values())) > 1:
    raise _bad(
      dataset,
      f"train/ holds images of {channels['train']} channels but test/ of {channels['test']}; "
      "give images of one kind (all grey or all colour).",
    )
  x_test, y_test = (splits["test"][0], splits["test"][1]) if "test" in splits else (None, None)
  return Arrays(splits["train"][0], splits["train"][1], x_test, y_test, names)


def _decode_split(dataset: str, builder, split: str, image_size: int):
  """Every image of one ImageFolder split, decoded by TFDS: (x, y, file names), checked."""
  feature = builder.info.features["image"]
  ds = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})

  def decode(example):
    image = feature.decode_example(example["image"])
    shape = tf.shape(image)
    if image_size:
      image = resize_images(image, (image_size, image_size))
    return image, example["label"], example["image/filename"], shape

  images, labels, files, shapes = [], [], [], []
  try:
    for image, label, name, shape in ds.map(decode).as_numpy_iterator():
      images.append(image)
      labels.append(label)
      files.append(name.decode())
      shapes.append(tuple(int(s) for s in shape))
  except tf.errors.OpError as e:
    bad = _first_unreadable(builder, split, feature)
    raise _bad(
      dataset,
      f"the image {bad or 'in ' + split + '/'} cannot be decoded ({str(e).splitlines()[0][:200]}); "
      "remove or replace it.",
    ) from e
  by_channels: Dict[int, List[str]] = {}
  for name, shape in zip(files, shapes):
    by_channels.setdefault(shape[2], []).append(name)
  if len(by_channels) > 1 or not set(by_channels) <= {1, 3}:
    kinds = "; ".join(
      f"{c} channels: {len(v)} images, e.g. {v[0]}" for c, v in sorted(by_channels.items())
    )
    raise _bad(
      dataset,
      f"its images have mixed or unsupported channel counts ({kinds}); give all grey (1) or "
      "all colour (3) images.",
    )
  sizes = {s[:2] for s in shapes}
  if not image_size and len(sizes) > 1:
    first = files[0]
    other = next(f for f, s in zip(files, shapes) if s[:2] != shapes[0][:2])
    raise _bad(
      dataset,
      f"its images differ in size ({first}: {shapes[0][:2]}, {other}: "
      f"{next(s for s in shapes if s[:2] != shapes[0][:2])[:2]}); pass --image_size=N to "
      "resize them to NxN.",
    )
  return np.stack(images), np.asarray(labels, np.int64), files


def _first_unreadable(builder, split: str, feature) -> Optional[str]:
  """The first file of `split` that TFDS cannot decode (to name it in the error)."""
  ds = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
  for example in ds:
    try:
      feature.decode_example(example["image"])
    except tf.errors.OpError:
      return example["image/filename"].numpy().decode()
  return None


def _check_classes(dataset: str, arrays: Arrays) -> None:
  """At least 2 classes, labels within them, and every class among the training examples."""
  k = len(arrays.class_names)
  if k < 2:
    raise _bad(dataset, f"it has {k} class{'es' if k != 1 else ''}; a classifier needs at least 2.")
  for key, y in (("y_train", arrays.y_train), ("y_test", arrays.y_test)):
    if y is not None and len(y) and (y.min() < 0 or y.max() >= k):
      raise _bad(
        dataset,
        f"{key} holds labels from {y.min()} to {y.max()}, but there are {k} classes "
        f"({', '.join(arrays.class_names[:5])}{', ...' if k > 5 else ''}): labels must lie in "
        f"0-{k - 1}.",
      )
  counts = np.bincount(arrays.y_train, minlength=k)
  if counts.min() == 0:
    empty = [arrays.class_names[c] for c in np.flatnonzero(counts == 0)]
    raise _bad(
      dataset, f"class {', '.join(map(repr, empty[:5]))} has no training examples; give some."
    )


def stratified_split(labels: np.ndarray, held_out: int, seed: int = SPLIT_SEED):
  """Indices (kept, held out) of `labels`: `held_out` of them, each class in proportion.

  Each class gives floor(share) examples, and the largest remainders one more, never its
  last example. Both lists are in a seeded random order, so "the first N" of either is a
  random, roughly stratified subset.
  """
  n = len(labels)
  order = np.random.RandomState(seed).permutation(n)
  classes, counts = np.unique(labels, return_counts=True)
  share = held_out * counts / n
  quota = np.minimum(np.floor(share).astype(int), counts - 1)
  for i in np.argsort(-(share - np.floor(share)), kind="stable"):
    if quota.sum() >= held_out:
      break
    if quota[i] < counts[i] - 1:
      quota[i] += 1
  taken = dict(zip(classes.tolist(), [0] * len(classes)))
  quotas = dict(zip(classes.tolist(), quota.tolist()))
  kept, held = [], []
  for i in order:
    c = int(labels[i])
    if taken[c] < quotas[c]:
      taken[c] += 1
      held.append(i)
    else:
      kept.append(i)
  return np.asarray(kept, np.int64), np.asarray(held, np.int64)


def array_spec(dataset: str, arrays: Arrays, augmentation: str) -> DatasetSpec:
  """The spec of a folder: or npz: data set: its shape, its training images' statistics."""
  x = arrays.x_train
  pixels = x.reshape(-1, x.shape[-1])
  mean = tuple(round(float(m), 3) for m in pixels.mean(0, dtype=np.float64))
  std = tuple(round(max(float(s), 1.0), 3) for s in pixels.std(0, dtype=np.float64))
  shape = tuple(int(s) for s in x.shape[1:])
  return DatasetSpec(
    dataset,
    shape,
    mean,
    std,
    auto_augmentation(shape) if augmentation == "auto" else augmentation,
    "",
    source=source_of(dataset)[0],
  )


def array_splits(
  dataset: str,
  arrays: Arrays,
  validation_size: int,
  train_examples: int,
  eval_examples: int,
) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
  """{"train", "validation", "test"}: (images, labels), held out seeded and stratified.

  Test: the arrays' own, else a stratified 20% of the training arrays; validation: a
  stratified `validation_size` of what remains for training.

  Raises:
    UserError: a class too small to hold out a test example, or a validation_size that
      leaves no training examples.
  """
  x, y = arrays.x_train, arrays.y_train
  if arrays.x_test is None:
    counts = np.bincount(y, minlength=len(arrays.class_names))
    if counts.min() < 2:
      small = arrays.class_names[int(np.argmin(counts))]
      raise _bad(
        dataset,
        f"class '{small}' has {counts.min()} example; holding out a test split (there is no "
        "test/ folder or x_test) needs at least 2 per class. Add examples, or give a test split.",
      )
    kept, held = stratified_split(y, max(int(round(TEST_FRACTION * len(y))), 1))
    x_test, y_test = x[held], y[held]
    x, y = x[kept], y[kept]
  else:
    x_test, y_test = arrays.x_test, arrays.y_test
  if validation_size >= len(y):
    raise UserError(
      f"--validation_size={validation_size} leaves no training examples: the train split of "
      f"'{dataset}' has {len(y)} examples. Pass a smaller --validation_size (e.g. "
      f"{max(len(y) // 10, 1)}, a tenth)."
    )
  kept, held = stratified_split(y, validation_size)
  if train_examples:
    kept = kept[:train_examples]
  if eval_examples:
    held = held[:eval_examples]
    x_test, y_test = x_test[:eval_examples], y_test[:eval_examples]
  return {"train": (x[kept], y[kept]), "validation": (x[held], y[held]), "test": (x_test, y_test)}
