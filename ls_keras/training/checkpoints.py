"""Epoch checkpoints through tf.train.CheckpointManager, restored with clear errors.

The manager writes a checkpoint's files first and only then (atomically, with relative
paths) names it in the index, keeping the last two; a kill at any moment leaves the index
pointing at the last complete checkpoint, which is what a rerun resumes from.
"""

import os
import time
from typing import Optional

import tensorflow as tf

from ls_keras.core.errors import WorkdirError

# Fault injection for the kill-and-resume tests: "step:N:MARKER" pauses once the global step
# reaches N, "checkpoint:N:MARKER" pauses inside the write of checkpoint N (after its files,
# before the index). The paused process creates MARKER and sleeps until it is killed.
FAULT_ENV = "LS_KERAS_FAULT_PAUSE"
KEEP = 2


def pause_point(kind: str, number: int) -> None:
  """Pauses here when $LS_KERAS_FAULT_PAUSE asks for this point (see FAULT_ENV); else nothing."""
  spec = os.environ.get(FAULT_ENV, "")
  if not spec:
    return
  want_kind, want_number, marker = spec.split(":", 2)
  reached = number >= int(want_number) if kind == "step" else number == int(want_number)
  if kind == want_kind and reached and not os.path.exists(marker):
    open(marker, "w").close()
    time.sleep(3600)


def manager(checkpoint: tf.train.Checkpoint, directory: str) -> tf.train.CheckpointManager:
  """The run's checkpoint manager: checkpoints `ckpt-<epoch>` in `directory`, the last KEEP kept."""
  return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=KEEP)


def save(checkpoints: tf.train.CheckpointManager, epoch: int) -> str:
  """Writes the checkpoint of `epoch` (files first, then the index); returns its path."""
  options = tf.train.CheckpointOptions(
    experimental_write_callbacks=[lambda: pause_point("checkpoint", epoch)]
  )
  return checkpoints.save(checkpoint_number=epoch, options=options)


def restore_latest(checkpoint: tf.train.Checkpoint, directory: str) -> Optional[str]:
  """Restores the newest complete checkpoint in `directory`; returns its path, or None if none.

  Raises:
    WorkdirError: the checkpoint is truncated or belongs to another model.
  """
  path = tf.train.latest_checkpoint(directory)
  if path is None:
    return None
  try:
    checkpoint.read(
      path
    ).assert_existing_objects_matched()  # read() pairs with the manager's write.
  except (tf.errors.OpError, AssertionError, ValueError, IndexError, KeyError) as e:
    raise WorkdirError(
      f"the checkpoint {path} cannot be restored ({type(e).__name__}: {str(e)[:160]}); it is "
      "truncated or belongs to another model. Delete its files to fall back to the previous "
      "checkpoint, or rerun with --overwrite to start afresh."
    ) from e
  return path
