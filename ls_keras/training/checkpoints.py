"""Epoch checkpoints: fully written before the index names them; restored with clear errors.

A kill at any moment leaves the index pointing at the last complete checkpoint, which is
what a rerun resumes from.
"""

import os
import time
from typing import Optional

import tensorflow as tf
from google.protobuf import text_format

from ls_keras.core.errors import WorkdirError
from ls_keras.core.workdir import atomic_write_bytes

# Fault injection for the kill-and-resume tests: "step:N:MARKER" pauses once the global step
# reaches N, "checkpoint:N:MARKER" pauses inside the write of checkpoint N (after its files,
# before the index). The paused process creates MARKER and sleeps until it is killed.
FAULT_ENV = "LS_KERAS_FAULT_PAUSE"


def pause_point(kind: str, number: int) -> None:
  spec = os.environ.get(FAULT_ENV, "")
  if not spec:
    return
  want_kind, want_number, marker = spec.split(":", 2)
  reached = number >= int(want_number) if kind == "step" else number == int(want_number)
  if kind == want_kind and reached and not os.path.exists(marker):
    open(marker, "w").close()
    time.sleep(3600)


def save(checkpoint: tf.train.Checkpoint, directory: str, number: int, keep: int = 2) -> str:
  """Writes checkpoint `number`, then (atomically) names it in the index; keeps the last `keep`."""
  path = checkpoint.write(os.path.join(directory, f"ckpt-{number}"))
  pause_point("checkpoint", number)
  state = tf.train.get_checkpoint_state(directory)
  previous = [p for p in (state.all_model_checkpoint_paths if state else []) if p != path]
  kept = previous[-(keep - 1):] if keep > 1 else []
  # Relative names keep a moved workdir resumable; the index file is replaced atomically.
  names = [os.path.basename(p) for p in kept + [path]]
  state = tf.compat.v1.train.generate_checkpoint_state_proto(directory, names[-1], all_model_checkpoint_paths=names)
  atomic_write_bytes(os.path.join(directory, "checkpoint"), text_format.MessageToString(state).encode())
  for old in previous[:len(previous) - len(kept)]:
    for f in tf.io.gfile.glob(old + ".*"):
      tf.io.gfile.remove(f)
  return path


def restore_latest(checkpoint: tf.train.Checkpoint, directory: str) -> Optional[str]:
  """Restores the newest complete checkpoint in `directory`; returns its path, or None if none."""
  path = tf.train.latest_checkpoint(directory)
  if path is None:
    return None
  try:
    checkpoint.read(path).assert_existing_objects_matched()  # read() pairs with write().
  except (tf.errors.OpError, AssertionError, ValueError, IndexError, KeyError) as e:
    raise WorkdirError(f"the checkpoint {path} cannot be restored ({type(e).__name__}: {str(e)[:160]}); it is "
                       "truncated or belongs to another model. Delete its files to fall back to the previous "
                       "checkpoint, or rerun with --overwrite to start afresh.") from e
  return path
