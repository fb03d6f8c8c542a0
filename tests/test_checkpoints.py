"""core/checkpoints.py: an unreadable index is repaired or refused, never "start over"."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from ls_keras.core.errors import WorkdirError
from ls_keras.core import checkpoints


def _model(value=0.0):
  model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
  model.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
  model.optimizer.build(model.trainable_variables)
  model.layers[0].kernel.assign(np.full((2, 1), value, np.float32))
  return model


def _save_steps(directory, steps=(10, 20, 30)):
  """Saves the checkpoints of `steps` (kernel = step); returns the model."""
  model = _model()
  manager = checkpoints.manager(checkpoints.make_checkpoint(model), directory)
  for step in steps:
    model.layers[0].kernel.assign(np.full((2, 1), step, np.float32))
    checkpoints.save(manager, step)
  return model


def _kernel_after_restore(directory):
  model = _model(-1.0)
  path = checkpoints.restore_latest(checkpoints.make_checkpoint(model), directory)
  return path, float(model.layers[0].kernel.numpy()[0, 0])


def test_checkpoints_are_named_by_step_and_the_last_two_kept(tmp_path):
  _save_steps(str(tmp_path))
  assert [os.path.basename(p) for p in checkpoints.listed(str(tmp_path))] == ["ckpt-20", "ckpt-30"]
  assert _kernel_after_restore(str(tmp_path)) == (str(tmp_path / "ckpt-30"), 30.0)


@pytest.mark.parametrize("garble", ["zero bytes", "garbage", "missing"])
def test_an_unreadable_index_is_rebuilt_from_the_files_present(tmp_path, garble):
  _save_steps(str(tmp_path))
  index = tmp_path / "checkpoint"
  if garble == "missing":
    index.unlink()
  else:
    index.write_bytes(b"" if garble == "zero bytes" else b"\x00\xffmodel_checkpoint_path: {{")
  assert _kernel_after_restore(str(tmp_path)) == (str(tmp_path / "ckpt-30"), 30.0)
  assert 'model_checkpoint_path: "ckpt-30"' in index.read_text()  # Rewritten for the manager.


def test_an_incomplete_checkpoint_is_not_used_for_the_repair(tmp_path):
  _save_steps(str(tmp_path))
  (tmp_path / "ckpt-30.data-00000-of-00001").unlink()  # A partial copy.
  (tmp_path / "checkpoint").write_text("garbled")
  assert _kernel_after_restore(str(tmp_path)) == (str(tmp_path / "ckpt-20"), 20.0)


def test_an_unreadable_index_without_complete_files_is_refused_not_restarted(tmp_path):
  _save_steps(str(tmp_path))
  for name in os.listdir(tmp_path):
    if name.startswith("ckpt-"):
      os.remove(tmp_path / name)
  (tmp_path / "checkpoint").write_text("garbled")
  with pytest.raises(WorkdirError, match="will not silently start the run over"):
    _kernel_after_restore(str(tmp_path))


def test_an_index_naming_files_outside_its_folder_is_refused(tmp_path):
  victim = tmp_path / "victim" / "checkpoints"
  _save_steps(str(victim))
  mine = tmp_path / "run" / "checkpoints"
  _save_steps(str(mine), steps=(1,))
  (mine / "checkpoint").write_text(
    'model_checkpoint_path: "../../victim/checkpoints/ckpt-30"\n'
    'all_model_checkpoint_paths: "../../victim/checkpoints/ckpt-30"\n'
  )
  with pytest.raises(WorkdirError, match="outside .*only reads its own checkpoints"):
    _kernel_after_restore(str(mine))
  with pytest.raises(WorkdirError, match="outside"):
    checkpoints.listed(str(mine))


def test_no_checkpoint_at_all_means_a_fresh_start(tmp_path):
  assert checkpoints.listed(str(tmp_path / "none")) == []
  assert _kernel_after_restore(str(tmp_path / "none")) == (None, -1.0)


def test_a_checkpoint_of_a_loss_scale_wrapped_optimizer_restores_unwrapped(tmp_path):
  """Written under mixed_float16 (LossScaleOptimizer around Adam) by an earlier version:
  the Adam state (its step count, moments) loads into a run that is not wrapped."""
  model = _model(7.0)
  wrapped = keras.optimizers.LossScaleOptimizer(model.optimizer)
  wrapped.build(model.trainable_variables)
  model.optimizer.iterations.assign(42)
  tf.train.Checkpoint(model=model, optimizer=wrapped).write(str(tmp_path / "ckpt-42"))
  (tmp_path / "checkpoint").write_text('model_checkpoint_path: "ckpt-42"\n')
  restored = _model(-1.0)
  checkpoint = checkpoints.make_checkpoint(restored)
  assert checkpoints.restore_latest(checkpoint, str(tmp_path)) == str(tmp_path / "ckpt-42")
  assert int(restored.optimizer.iterations.numpy()) == 42
  assert float(restored.layers[0].kernel.numpy()[0, 0]) == 7.0
