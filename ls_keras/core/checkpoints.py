"""Checkpoints through tf.train.CheckpointManager, restored with clear errors, never silently lost.

The manager writes a checkpoint's files first and only then (atomically, with relative
paths) names it in the index `checkpoints/checkpoint`, keeping the last two; a kill at any
moment leaves the index pointing at the last complete checkpoint, which is what a rerun
resumes from. Checkpoints are numbered by global step (`ckpt-<step>`): at the end of an
evaluation period, every `--checkpoint_every_steps`, and when the run is preempted.

An index that cannot be read (a partial copy or sync) never means "start over": it is
rebuilt from the complete checkpoint files present, or the run is refused. An index that
names a file outside its folder (a crafted or carelessly copied workdir) is refused.

The optimizer is saved without its loss-scale wrapper (mixed_float16's
`LossScaleOptimizer`), so a run resumes whichever precision `auto` resolves to on the
machine that resumes it; the dynamic loss scale restarts from its initial value.
"""

import os
import re
import shutil
import time
from typing import List, Optional

import keras
import tensorflow as tf
from absl import logging

from ls_keras.core import workdir as workdir_lib
from ls_keras.core.errors import WorkdirError

# Fault injection for the kill-and-resume tests: "step:N:MARKER" pauses once the global step
# reaches N, "checkpoint:N:MARKER" pauses inside the write of checkpoint N (after its files,
# before the index). The paused process creates MARKER and waits until it is killed or the
# test deletes MARKER (to let it go on, say after sending it SIGTERM).
FAULT_ENV = "LS_KERAS_FAULT_PAUSE"
KEEP = 2
INDEX = "checkpoint"
# What reading a truncated or foreign checkpoint raises (IndexError: "Read less bytes than
# requested"; AssertionError: objects left unmatched).
UNREADABLE = (tf.errors.OpError, AssertionError, ValueError, IndexError, KeyError)
_NAME = re.compile(r"^ckpt-(\d+)\.index$")


def pause_point(kind: str, number: int) -> None:
  """Pauses here when $LS_KERAS_FAULT_PAUSE asks for this point (see FAULT_ENV); else nothing."""
  spec = os.environ.get(FAULT_ENV, "")
  if not spec:
    return
  want_kind, want_number, marker = spec.split(":", 2)
  reached = number >= int(want_number) if kind == "step" else number == int(want_number)
  if kind == want_kind and reached and not os.path.exists(marker + ".done"):
    open(marker, "w").close()
    open(marker + ".done", "w").close()  # Pause once only.
    while os.path.exists(marker):
      time.sleep(0.05)


def optimizer_state(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
  """The optimizer whose variables a checkpoint holds: the inner one of a loss-scale wrapper."""
  return getattr(optimizer, "inner_optimizer", optimizer)


def make_checkpoint(
  model: keras.Model,
  epoch: Optional[tf.Variable] = None,
  random: Optional[list] = None,
  loss: Optional[list] = None,
) -> tf.train.Checkpoint:
  """A run's checkpoint: the model, its optimizer's state (see optimizer_state), and the loop's.

  Args:
    model: the trained model (a classifier or a Distiller), compiled.
    epoch: the number of completed epochs (an int64 variable), for the training loop.
    random: the model's random generator states (dropout), see training.run.random_states.
    loss: the variables of a loss with state across steps (online label smoothing's, see
      training.run.online_smoothing); None: a stateless loss, and no such entry.
  """
  return tf.train.Checkpoint(**_children(model, model.optimizer, epoch, random, loss))


def _children(model, optimizer, epoch, random, loss) -> dict:
  children = {"model": model, "optimizer": optimizer_state(optimizer)}
  if epoch is not None:
    children["epoch"] = epoch
  if random is not None:
    children["random"] = random
  if loss is not None:
    children["loss"] = loss
  return children


def manager(checkpoint: tf.train.Checkpoint, directory: str) -> tf.train.CheckpointManager:
  """The run's checkpoint manager: `ckpt-<step>` files in `directory`, the last KEEP kept."""
  return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=KEEP)


def save(checkpoints: tf.train.CheckpointManager, step: int) -> str:
  """Writes the checkpoint of global step `step` (files first, then the index); returns its path."""
  options = tf.train.CheckpointOptions(
    experimental_write_callbacks=[lambda: pause_point("checkpoint", step)]
  )
  try:
    return checkpoints.save(checkpoint_number=step, options=options)
  except BaseException:
    # TensorFlow writes into ckpt-<step>_temp first; a failed write (a full disk) leaves it.
    for name in os.listdir(checkpoints.directory):
      if name.startswith(f"ckpt-{step}_temp"):
        shutil.rmtree(os.path.join(checkpoints.directory, name), ignore_errors=True)
    raise


def complete_checkpoints(directory: str) -> List[str]:
  """Paths (without suffix) of the checkpoints in `directory` whose files are all present.

  Sorted by step. A checkpoint is complete when its `.index` file and every data shard it
  names in its file names (`.data-0000i-of-0000n`) exist.
  """
  try:
    names = os.listdir(directory)
  except (FileNotFoundError, NotADirectoryError):
    return []
  found = []
  for name in names:
    match = _NAME.match(name)
    if not match:
      continue
    prefix = name[: -len(".index")]
    shards = [n for n in names if n.startswith(prefix + ".data-")]
    counts = {n.rsplit("-of-", 1)[-1] for n in shards}
    if len(counts) == 1 and len(shards) == int(counts.pop()):
      found.append((int(match.group(1)), os.path.join(directory, prefix)))
  return [path for _, path in sorted(found)]


def _inside(path: str, directory: str) -> bool:
  real, folder = os.path.realpath(path), os.path.realpath(directory)
  return os.path.commonpath([real, folder]) == folder


def listed(directory: str) -> List[str]:
  """The checkpoints the index of `directory` names, oldest first; [] when there is none.

  Read-only. An index that cannot be read is replaced, in what this returns, by the
  complete checkpoint files present (see `repair` to rewrite it).

  Raises:
    WorkdirError: the index names a file outside `directory`, or cannot be read while no
      complete checkpoint file is present.
  """
  index = os.path.join(directory, INDEX)
  if not os.path.exists(index):
    return complete_checkpoints(directory)[-KEEP:]
  try:
    state = tf.train.get_checkpoint_state(directory)
  except Exception:  # pylint: disable=broad-except  # TF raises several types for a bad proto.
    state = None
  if state is None or not state.model_checkpoint_path:
    complete = complete_checkpoints(directory)
    if not complete:
      raise WorkdirError(
        f"{index} cannot be read and no complete checkpoint is beside it; ls_keras will not "
        "silently start the run over. Restore the checkpoints from where they were copied, "
        "or rerun with --overwrite to start afresh."
      )
    return complete[-KEEP:]
  paths = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
  if state.model_checkpoint_path not in paths:
    paths.append(state.model_checkpoint_path)
  resolved = [p if os.path.isabs(p) else os.path.join(directory, p) for p in paths]
  for original, path in zip(paths, resolved):
    if not _inside(path, directory):
      raise WorkdirError(
        f"{index} names the checkpoint {original}, outside {directory}; a run only reads its "
        "own checkpoints (the index was crafted or copied from another run). Delete that "
        "index file to rebuild it from the checkpoint files present."
      )
  return resolved


def repair(directory: str) -> None:
  """Rewrites an unreadable or missing index from the complete checkpoint files present.

  Leaves a readable index alone. Raises WorkdirError where `listed` does.
  """
  index = os.path.join(directory, INDEX)
  paths = listed(directory)
  try:
    readable = os.path.exists(index) and tf.train.get_checkpoint_state(directory) is not None
  except Exception:  # pylint: disable=broad-except
    readable = False
  if readable or not paths:
    return
  names = [os.path.basename(p) for p in paths]
  text = f'model_checkpoint_path: "{names[-1]}"\n' + "".join(
    f'all_model_checkpoint_paths: "{n}"\n' for n in names
  )
  workdir_lib.atomic_write_bytes(index, text.encode())
  logging.warning(
    "%s could not be read; rebuilt it from the complete checkpoints present (%s).",
    index,
    ", ".join(names),
  )


def restore_latest(checkpoint: tf.train.Checkpoint, directory: str) -> Optional[str]:
  """Restores the newest complete checkpoint in `directory`; returns its path, or None if none.

  Repairs an unreadable index first (see `repair`). A checkpoint written with the
  optimizer inside a loss-scale wrapper (before the wrapper was left out) is read too.

  Raises:
    WorkdirError: the checkpoint is truncated, belongs to another model, or the index
      names files outside `directory` or cannot be repaired.
  """
  repair(directory)
  paths = listed(directory)
  if not paths:
    return None
  path = paths[-1]
  unreadable = UNREADABLE
  try:
    try:
      checkpoint.read(path).assert_existing_objects_matched()  # read() pairs with the write.
    except unreadable as first:
      try:
        _read_wrapped(checkpoint, path)
      except unreadable:
        raise first from None
  except unreadable as e:
    raise WorkdirError(
      f"the checkpoint {path} cannot be restored ({type(e).__name__}: {str(e)[:160]}); it is "
      "truncated or belongs to another model. Delete its files to fall back to the previous "
      "checkpoint, or rerun with --overwrite to start afresh."
    ) from e
  return path


def _read_wrapped(checkpoint: tf.train.Checkpoint, path: str) -> None:
  """Reads a checkpoint whose optimizer was saved inside a LossScaleOptimizer."""
  names = ("model", "epoch", "random", "loss")
  children = {name: getattr(checkpoint, name, None) for name in names}
  children = {name: value for name, value in children.items() if value is not None}
  wrapped = tf.train.Checkpoint(
    optimizer=tf.train.Checkpoint(inner_optimizer=checkpoint.optimizer), **children
  )
  wrapped.read(path).assert_existing_objects_matched()
