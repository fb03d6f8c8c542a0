"""Saving the final model (Keras format and SavedModel) atomically, and loading it safely."""

import contextlib
import os
import shutil
import tempfile
import zipfile

import keras
import tensorflow as tf

from ls_keras import models
from ls_keras.core.errors import UserError, WorkdirError


def export_model(model: keras.Model, keras_path: str, saved_model_path: str) -> None:
  """Writes `model.keras` and a SavedModel, each to a temporary name first, then renamed.

  A failed save (a full disk, a read-only folder) removes its temporary file or folder
  before the error goes on: a retry must not find the space it needs taken by the last
  attempt's leftovers. Fused batch-norm layers are saved as Keras' own
  (`models.to_plain_keras`), so both files load in plain Keras without ls_keras.
  """
  model = models.to_plain_keras(model)
  folder = os.path.dirname(keras_path)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".model.", suffix=".keras")
  os.close(fd)
  try:
    model.save(tmp)
    os.replace(tmp, keras_path)
  finally:
    _remove(tmp)
  tmp_dir = tempfile.mkdtemp(dir=folder, prefix=".saved_model.")
  try:
    model.export(tmp_dir, verbose=False)
    if os.path.exists(saved_model_path):
      shutil.rmtree(saved_model_path)
    os.replace(tmp_dir, saved_model_path)
  finally:
    _remove(tmp_dir)


def _remove(path: str) -> None:
  """Deletes a temporary file or folder if it is still there (after a failure)."""
  with contextlib.suppress(OSError):  # The save's own error is the one to report.
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)
    elif os.path.lexists(path):
      os.remove(path)


# A `.keras` file is a zip archive. Its members (config JSON, HDF5 weights) compress little:
# float weights hardly at all. One that expands more than MAX_EXPANSION times and to more
# than MAX_UNPACKED bytes in all, or that holds a member above MAX_MEMBER bytes, is refused
# unopened: a 1.5 MB zip bomb otherwise made Keras allocate gigabytes before failing.
MAX_EXPANSION = 100
MAX_UNPACKED = 64 * 2**20
MAX_MEMBER = 4 * 2**30


def check_archive(path: str) -> None:
  """Refuses a `.keras` file whose members would unpack to far more than the file's size.

  Reads only the zip's central directory. The sizes it declares bound what is unpacked:
  Python's zipfile, which Keras reads through, stops each member at its declared size.

  Raises:
    WorkdirError: the file is not a zip archive, or its members' sizes are out of bounds.
  """
  try:
    with zipfile.ZipFile(path) as archive:
      sizes = {info.filename: info.file_size for info in archive.infolist()}
  except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as e:
    raise WorkdirError(
      f"{path} cannot be loaded (not a readable zip archive: {e}); the file is truncated, "
      "corrupt or not a Keras model. Re-export it by rerunning the training."
    ) from e
  packed, unpacked = os.path.getsize(path), sum(sizes.values())
  largest = max(sizes, key=sizes.get, default=None)
  if (largest is not None and sizes[largest] > MAX_MEMBER) or (
    unpacked > MAX_EXPANSION * packed and unpacked > MAX_UNPACKED
  ):
    raise WorkdirError(
      f"{path} is a {packed}-byte archive that would unpack to {unpacked} bytes (its largest "
      f"member, {largest}, to {sizes[largest]}); a Keras model file expands at most "
      f"{MAX_EXPANSION}x, so this one is not a model (a zip bomb, or corrupt). Not loading it."
    )


def load_keras_model(path: str, contract: bool = True) -> keras.Model:
  """Loads a `.keras` file in safe mode (no arbitrary code) with a clear error when it is bad.

  Its archive is size-checked first (`check_archive`), so a crafted file cannot exhaust memory.
  With `contract` (ls_keras' own models), the model must keep ls_keras' layer contract
  (`models.check_contract`); without it (a model trained elsewhere, see `load_model_file`)
  any Keras model loads, and `models.heads.find_head` locates its features and logits.
  """
  if not os.path.exists(path):
    raise WorkdirError(f"{path} does not exist: the run did not finish exporting its model.")
  check_archive(path)
  remedy = (
    "Re-export it by rerunning the training."
    if contract
    else "Save the model again with model.save(PATH.keras)."
  )
  try:
    model = keras.saving.load_model(path, compile=False, safe_mode=True)
  except Exception as e:  # pylint: disable=broad-except  # Keras raises many types for bad files.
    raise WorkdirError(
      f"{path} cannot be loaded ({type(e).__name__}: {str(e)[:200]}); the file is "
      f"truncated, corrupt or not a Keras model. {remedy}"
    ) from e
  if contract:
    models.check_contract(model, path)
  return model


# Shared with `distill --teacher`: loading a SavedModel runs code its author wrote.
SAVED_MODEL_TRUST = (
  "loading it runs the TensorFlow graph stored in it, which is code its author wrote and "
  "which may read or write any file. Pass --trust_saved_model if you trust its author"
)


def model_file_format(path: str, trust_saved_model: bool = False, flag: str = "--model_file"):
  """What `path` holds: "keras" (a `.keras` file) or "saved_model" (with `trust_saved_model`).

  Read-only, so a command refuses before anything is loaded.

  Raises:
    UserError: the path does not exist, is neither, or is a SavedModel without trust.
  """
  if not os.path.exists(path):
    raise UserError(f"{flag}={path} does not exist: give a .keras file or a SavedModel folder.")
  if os.path.isfile(path) and path.endswith(".keras"):
    return "keras"
  if os.path.isdir(path) and os.path.exists(os.path.join(path, "saved_model.pb")):
    if not trust_saved_model:
      raise UserError(
        f"{flag}={path} is a SavedModel: {SAVED_MODEL_TRUST}, or give the model's .keras file "
        "(loaded in Keras' safe mode, no code)."
      )
    return "saved_model"
  raise UserError(
    f"{flag}={path} is neither a .keras file nor a SavedModel folder (with saved_model.pb). "
    "Save a Keras model with model.save(PATH.keras) or model.export(FOLDER)."
  )


def load_saved_model(path: str):
  """Loads a SavedModel (as `export_model` writes); call `.serve(images)` for its outputs.

  Runs the graph stored in it: callers load only a SavedModel the user said to trust.
  """
  try:
    return tf.saved_model.load(path)
  except Exception as e:  # pylint: disable=broad-except
    raise WorkdirError(
      f"{path} cannot be loaded as a SavedModel ({type(e).__name__}); it is truncated or "
      "corrupt. Re-export it by rerunning the training."
    ) from e
