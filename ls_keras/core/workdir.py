"""What a run leaves on disk, written atomically, and read back with clear errors.

Layout of a workdir:
  config.json            every resolved setting, the run kind, package versions
  metrics.json           final train/validation/test metrics (its presence means "finished")
  history.json           per-epoch validation metrics
  tb/train, tb/validation  TensorBoard logs
  checkpoints/           tf.train.Checkpoint files a killed run resumes from
  model.keras            the final model (Keras format, loads in safe mode)
  saved_model/           the final model as a SavedModel (model.export)
  logits/{validation,test}.npz   logits and integer labels for analysis
"""

import contextlib
import dataclasses
import io
import json
import os
import shutil
import tempfile
import zipfile
from typing import Any, Dict, Optional

import numpy as np
from absl import logging

from ls_keras.core import config as config_lib
from ls_keras import __version__
from ls_keras.core.errors import UserError, WorkdirError
from ls_keras.core.lease import LEASE_FILE

# Everything a run or an analysis of it writes into a workdir. Dot-files are the
# temporary names of atomic writes (`atomic_write_bytes`, `export_model`).
WORKDIR_ENTRIES = frozenset(
  {
    "config.json",
    "metrics.json",
    "history.json",
    "tb",
    "checkpoints",
    "model.keras",
    "saved_model",
    "logits",
    "calibration.json",
    "reliability.png",
    "mutual_information.json",
    "mutual_information_recomputed.json",
    LEASE_FILE,
  }
)


RUN_KINDS = ("train", "distill")


def _is_workdir_entry(name: str) -> bool:
  temporary = name.startswith(".") and (
    name.endswith(".tmp") or name.startswith((".model.", ".saved_model."))
  )
  return name in WORKDIR_ENTRIES or temporary


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Writes to a temporary file beside `path`, then renames: readers never see half a file."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:  # A full disk (ENOSPC in write, fsync or close) included.
    with contextlib.suppress(OSError):  # The write's error is the one to report.
      os.remove(tmp)
    raise


def atomic_write_json(path: str, obj: Any) -> None:
  """Writes `obj` as indented JSON atomically (NumPy scalars and arrays as numbers and lists)."""
  atomic_write_bytes(
    path, (json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n").encode()
  )


def _jsonable(value):
  if isinstance(value, (np.floating, np.integer)):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  raise TypeError(f"cannot write {type(value).__name__} to JSON")


def atomic_savez(path: str, **arrays: np.ndarray) -> None:
  """np.savez to a temporary name beside `path`, then rename."""
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  atomic_write_bytes(path, buffer.getvalue())


def read_json(path: str) -> Any:
  """Reads a JSON file; a missing or corrupt file is a WorkdirError naming it."""
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError as e:
    raise WorkdirError(f"{path} does not exist.") from e
  except ValueError as e:
    raise WorkdirError(
      f"{path} is not valid JSON ({e}); the file is corrupt, so ls_keras cannot tell whose it "
      "is and will not delete it, even with --overwrite. Remove the folder yourself if it is an "
      "ls_keras workdir you no longer need."
    ) from e


def package_versions() -> Dict[str, str]:
  """Versions of ls_keras and the libraries a run depends on (recorded in config.json)."""
  import importlib.metadata as md

  names = ("tensorflow", "keras", "tensorflow-datasets", "tensorflow-probability", "numpy")
  versions = {"ls_keras": __version__}
  for name in names:
    try:
      versions[name] = md.version(name)
    except md.PackageNotFoundError:
      versions[name] = "not installed"
  return versions


class Workdir:
  """Paths and readers/writers of one run's folder."""

  def __init__(self, path: str):
    if not path:  # abspath("") is the current directory: never a run's folder by accident.
      raise WorkdirError(
        "--workdir is empty: give a folder (an empty path would mean the current directory)."
      )
    self.path = os.path.abspath(path)

  def file(self, *parts: str) -> str:
    """The path of `parts` inside the workdir."""
    return os.path.join(self.path, *parts)

  @property
  def checkpoints(self) -> str:
    """The folder of the epoch checkpoints."""
    return self.file("checkpoints")

  @property
  def keras_model(self) -> str:
    """The final model in Keras format (model.keras)."""
    return self.file("model.keras")

  @property
  def saved_model(self) -> str:
    """The final model as a SavedModel (saved_model/)."""
    return self.file("saved_model")

  def logits_path(self, split: str) -> str:
    """The saved logits and labels of `split` (logits/<split>.npz)."""
    return self.file("logits", f"{split}.npz")

  def is_finished(self) -> bool:
    """Whether the run finished: metrics.json is written last."""
    return os.path.exists(self.file("metrics.json"))

  # Config.
  def _record(self) -> dict:
    """config.json if it is an ls_keras run record (of any version); else WorkdirError."""
    record = read_json(self.file("config.json"))
    ours = isinstance(record, dict) and {"format", "kind", "config"} <= set(record)
    if not ours or record["kind"] not in RUN_KINDS:
      raise WorkdirError(
        f"{self.file('config.json')} is not an ls_keras run config (another tool's, or corrupt); "
        "ls_keras never writes into or deletes such a folder, even with --overwrite. Use a new "
        "or empty folder."
      )
    return record

  def read_record(self) -> dict:
    """config.json (format, kind, config, versions, sessions); WorkdirError if corrupt."""
    record = self._record()
    if record.get("format") != config_lib.WORKDIR_FORMAT:
      raise WorkdirError(
        f"{self.path} was written by an incompatible ls_keras (workdir format "
        f"{record.get('format')}, "
        f"this version reads format {config_lib.WORKDIR_FORMAT}). Use that version, or rerun with "
        "--overwrite to start afresh."
      )
    try:
      config_lib.check_recorded(config_lib.config_class(record["kind"]), record["config"])
      sessions = record.get("sessions", [])
      if not isinstance(sessions, list) or not all(
        isinstance(s, dict) and isinstance(s.get("seconds", 0.0), (int, float)) for s in sessions
      ):
        raise UserError('its "sessions" is not a list of records of each start')
    except UserError as e:
      raise WorkdirError(
        f"{self.file('config.json')} cannot be used: {e}. The file is corrupt or was edited; "
        "rerun the training with --overwrite to start afresh."
      ) from e
    return record

  def read_config(self, cls):
    """The run's config as an instance of `cls`."""
    return config_lib.from_dict(cls, self.read_record()["config"])

  def run_config(self):
    """The run's config as the class of its kind (TrainConfig or DistillConfig)."""
    record = self.read_record()
    return config_lib.from_dict(config_lib.config_class(record["kind"]), record["config"])

  def is_workdir(self) -> bool:
    """Whether the folder is an ls_keras workdir: config.json, and nothing but workdir entries.

    Only such a folder (or an empty one) may be deleted by --overwrite; a folder holding
    anything else (a user's notes, a home directory) never is.
    """
    if not os.path.isdir(self.path):
      return False
    entries = os.listdir(self.path)
    if "config.json" not in entries or not all(_is_workdir_entry(e) for e in entries):
      return False
    try:
      self._record()
    except WorkdirError:
      return False
    return True

  def check(self, config, kind: str, overwrite: bool = False) -> bool:
    """Read-only: may this run use the workdir? Returns True when it holds this same run.

    Raises:
      WorkdirError: the path is a file or cannot be created; the folder holds something
        that is not an ls_keras workdir (even with `overwrite`); it holds a different,
        corrupt or incompatible run (unless `overwrite`).
    """
    self._check_path()
    entries = os.listdir(self.path) if os.path.isdir(self.path) else []
    entries = [e for e in entries if e != LEASE_FILE]  # Our own lease, taken before the check.
    if not entries:
      return False
    if not all(_is_workdir_entry(e) for e in entries) or "config.json" not in entries:
      foreign = sorted(e for e in entries if not _is_workdir_entry(e)) or ["no config.json"]
      raise WorkdirError(
        f"--workdir={self.path} is a folder that is not an ls_keras workdir (it holds "
        f"{', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); ls_keras never writes "
        "into or deletes such a folder. Use a new or empty folder."
      )
    self._record()  # Ours, of any version (or the error says why not): --overwrite may replace it.
    if overwrite:
      return False
    record = self.read_record()
    new = json.loads(config_lib.dumps(config))
    old = _settings(type(config), record["config"])
    for f in dataclasses.fields(config):  # How to run, not what the run is: not compared.
      if f.metadata.get("compared") is False:
        old.pop(f.name, None), new.pop(f.name, None)
    if record["kind"] != kind or old != new:
      diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
      raise WorkdirError(
        f"{self.path} holds a different {record['kind']} run (settings that differ: "
        f"{', '.join(diff) or 'run kind'}). Use another --workdir, or pass --overwrite to delete "
        "that run and start afresh."
      )
    return True

  def _check_path(self) -> None:
    check_output_dir(self.path, "--workdir", workdir=True)

  def start(
    self, config, kind: str, overwrite: bool = False, session: Optional[dict] = None
  ) -> bool:
    """Claims the workdir for `config` (after `check`); returns True when resuming the same run.

    Call it only once the run's inputs are known good, so a refused run leaves nothing.
    `session` (the resolved precision, the hardware, the epoch it starts from) is appended
    to config.json's `sessions`, so a run resumed on another machine says so.
    """
    resuming = self.check(config, kind, overwrite)
    if resuming:
      record = self.read_record()
    else:
      self.clear()
      os.makedirs(self.path, exist_ok=True)
      record = {
        "format": config_lib.WORKDIR_FORMAT,
        "kind": kind,
        "config": dataclasses.asdict(config),
        "versions": package_versions(),
        "sessions": [],
      }
    if session is not None:
      record["sessions"] = record.get("sessions", []) + [session]
    if session is not None or not resuming:
      atomic_write_json(self.file("config.json"), record)
    return resuming

  def end_session(self, seconds: float) -> None:
    """Records the wall time of the session that just finished the run (config.json's sessions)."""
    record = self.read_record()
    if record.get("sessions"):
      record["sessions"][-1]["seconds"] = round(seconds, 1)
      atomic_write_json(self.file("config.json"), record)

  def run_seconds(self) -> float:
    """The wall time of every session of this run, added up (0 where none was recorded)."""
    return float(sum(s.get("seconds", 0.0) for s in self.read_record().get("sessions", [])))

  def clear(self) -> None:
    """Deletes the workdir's own entries (only those; see `is_workdir`)."""
    if not os.path.isdir(self.path):
      return
    entries = [e for e in os.listdir(self.path) if e != LEASE_FILE]  # The lease stays: ours.
    for entry in entries:
      if not _is_workdir_entry(entry):
        raise WorkdirError(
          f"{self.path} holds {entry}, which is not part of an ls_keras workdir; not deleting."
        )
    for entry in entries:
      path = self.file(entry)
      if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
      else:
        os.remove(path)

  def finished_metrics(self, config, kind: str, overwrite: bool = False) -> Optional[dict]:
    """The metrics of this very run if it already finished (nothing to do), else None."""
    if self.check(config, kind, overwrite) and self.is_finished():
      logging.info("%s already holds this finished run; nothing to do.", self.path)
      metrics = self.read_metrics()
      _check_metrics(self.file("metrics.json"), metrics, kind)
      return metrics
    return None

  # Results.
  def write_metrics(self, metrics: dict) -> None:
    """Writes metrics.json atomically: from then on the run counts as finished."""
    atomic_write_json(self.file("metrics.json"), metrics)

  def read_metrics(self) -> dict:
    """metrics.json; WorkdirError if the run is missing or unfinished."""
    if not self.is_finished():
      raise WorkdirError(
        f"{self.path} has no metrics.json: the run is missing or unfinished. Run (or "
        "resume) its training first."
      )
    return read_json(self.file("metrics.json"))

  def save_logits(self, split: str, logits: np.ndarray, labels: np.ndarray) -> None:
    """Saves float32 logits [N, K] and int64 labels [N] of `split` atomically."""
    atomic_savez(
      self.logits_path(split), logits=logits.astype(np.float32), labels=labels.astype(np.int64)
    )

  def load_logits(self, split: str):
    """(logits [N, K] float32, labels [N] int64) saved by the run."""
    path = self.logits_path(split)
    if not os.path.exists(path):
      raise WorkdirError(f"{path} does not exist: {self.path} is not a finished ls_keras run.")
    try:
      with np.load(path) as f:
        logits, labels = f["logits"], f["labels"]
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as e:
      raise WorkdirError(f"{path} is corrupt ({e}); rerun the training with --overwrite.") from e
    if logits.ndim != 2 or logits.dtype.kind not in "fiu" or labels.dtype.kind not in "fiu":
      raise WorkdirError(
        f"{path} is corrupt (logits of shape {logits.shape} and type {logits.dtype}, labels of "
        f"type {labels.dtype}; a run saves float logits [N, K] and integer labels [N]); rerun "
        "the training with --overwrite."
      )
    return logits, labels


def _check_metrics(path: str, metrics: Any, kind: str) -> None:
  """metrics.json must hold what a finished run's callers read: per split accuracy, NLL, ECE."""
  number = (int, float)
  wanted = {f"{split}.{key}" for split in ("train", "validation", "test") for key in _SPLIT_METRICS}
  if kind == "distill":
    wanted.add("equivalent_smoothing")
  missing = sorted(
    name
    for name in wanted
    if not isinstance(_lookup(metrics, name.split(".")), number)
    or isinstance(_lookup(metrics, name.split(".")), bool)
  )
  if missing:
    raise WorkdirError(
      f"{path} lacks the numbers {', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''} "
      "that a finished run records; the file is corrupt. Rerun with --overwrite to train afresh."
    )


_SPLIT_METRICS = ("accuracy", "nll", "ece")


def _lookup(value: Any, keys) -> Any:
  for key in keys:
    value = value.get(key) if isinstance(value, dict) else None
  return value


def _settings(cls, recorded: Any) -> dict:
  """A recorded config as `cls` would write it now: settings added since take their defaults.

  So a workdir of an earlier version resumes, as long as every setting it recorded is
  still what this run asks for.
  """
  if not isinstance(recorded, dict):
    return {}
  names = {f.name for f in dataclasses.fields(cls)}
  defaults = {f.name: f.default for f in dataclasses.fields(cls)}
  if set(recorded) - names:
    return dict(recorded)  # Unknown settings: differs, and says which.
  return json.loads(json.dumps({**defaults, **recorded}, sort_keys=True, default=list))


def check_output_dir(path: str, flag: str = "--output_dir", workdir: bool = False) -> None:
  """Read-only: raises WorkdirError unless `path` is, or can be created as, a writable folder.

  Unless `workdir` (the path is meant to be one), it must not be an ls_keras workdir: an
  analysis writing its outputs there would replace the run's own files.
  """
  if not path:
    raise WorkdirError(
      f"{flag} is empty: give a folder (an empty path would mean the current directory)."
    )
  path = os.path.abspath(path)
  check_path_length(path, flag)
  if os.path.islink(path) and not os.path.exists(path):
    raise WorkdirError(f"{flag}={path} is a symbolic link to nothing ({os.readlink(path)}).")
  if not workdir and Workdir(path).is_workdir():
    raise WorkdirError(
      f"{flag}={path} is an ls_keras workdir; writing there would replace the run's own files. "
      "Give a separate folder."
    )
  if os.path.exists(path) and not os.path.isdir(path):
    raise WorkdirError(f"{flag}={path} is a file, not a folder. Give a folder.")
  ancestor = path
  while not os.path.exists(ancestor):
    ancestor = os.path.dirname(ancestor)
  if not os.path.isdir(ancestor):
    raise WorkdirError(f"{flag}={path} cannot be created: {ancestor} is a file, not a folder.")
  if not os.access(ancestor, os.W_OK | os.X_OK):
    raise WorkdirError(f"{flag}={path} is not writable: no permission to write into {ancestor}.")


# Room left under a folder for the longest name a run writes inside it
# (.saved_model.XXXXXXXX/variables/variables.data-00000-of-00001 and the like).
PATH_ROOM = 128


def _pathconf(folder: str, name: str, default: int) -> int:
  try:
    return os.pathconf(folder, name)
  except (OSError, ValueError):
    return default


def check_path_length(path: str, flag: str) -> None:
  """Raises WorkdirError when `path` (absolute) is too long for its file system.

  Checked before anything is created: otherwise the folders above the long name are
  made, and the run fails later with ENAMETOOLONG.
  """
  ancestor = path
  while not os.path.exists(ancestor) and os.path.dirname(ancestor) != ancestor:
    ancestor = os.path.dirname(ancestor)
  new = os.path.relpath(path, ancestor).split(os.sep) if ancestor != path else []
  if not os.path.isdir(ancestor):
    ancestor = os.path.dirname(ancestor)
  name_max = _pathconf(ancestor, "PC_NAME_MAX", 255)
  path_max = _pathconf(ancestor, "PC_PATH_MAX", 4096)
  long = next((p for p in new if len(os.fsencode(p)) > name_max), None)
  if long is not None:
    raise WorkdirError(
      f"{flag}={path} is too long: the name {long[:24]}... has {len(os.fsencode(long))} bytes, "
      f"and this file system allows {name_max}. Give a shorter path."
    )
  if len(os.fsencode(path)) + PATH_ROOM >= path_max:
    raise WorkdirError(
      f"{flag}={path} is too long: {len(os.fsencode(path))} bytes, and this file system allows "
      f"{path_max} for a path, including the {PATH_ROOM} a run needs inside it. Give a shorter "
      "path."
    )


def check_writable(paths, what: str, subfolders=(), flag: str = "--workdir") -> None:
  """Read-only: raises WorkdirError unless every folder in `paths` can be written into.

  An analysis that writes into several runs calls it before writing anything, so a
  read-only (or someone else's) second run is refused before the first is touched.
  `subfolders` (relative) are checked too where they exist; `what` names the files
  that would go there.
  """
  for path in paths:
    for folder in (path, *(os.path.join(path, s) for s in subfolders)):
      if os.path.isdir(folder) and not os.access(folder, os.W_OK | os.X_OK):
        raise WorkdirError(
          f"{flag}={path} is not writable: {folder} is read-only or not yours, and {what} "
          "would go there. Make it writable or leave that run out, then rerun the same command; "
          "nothing was written."
        )


def require(path: str) -> Workdir:
  """A finished workdir, or a clear error.

  Raises:
    WorkdirError: the folder is missing, is not an ls_keras workdir, is unfinished, corrupt
      or from an incompatible version.
  """
  if not os.path.isdir(path):
    raise WorkdirError(f"--workdir={path} does not exist.")
  workdir = Workdir(path)
  if not os.path.exists(workdir.file("config.json")):
    raise WorkdirError(f"--workdir={path} is not an ls_keras workdir (it has no config.json).")
  workdir.read_record()
  workdir.read_metrics()
  return workdir
