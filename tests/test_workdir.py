import json
import os

import numpy as np
import pytest

from ls_keras.core import config, workdir
from ls_keras.core.errors import WorkdirError


def test_a_crash_during_a_write_leaves_the_old_file_and_no_debris(tmp_path, monkeypatch):
  path = str(tmp_path / "metrics.json")
  workdir.atomic_write_json(path, {"accuracy": 0.5})

  def crash(src, dst):
    raise KeyboardInterrupt("killed mid-rename")

  monkeypatch.setattr(os, "replace", crash)
  with pytest.raises(KeyboardInterrupt):
    workdir.atomic_write_json(path, {"accuracy": 0.9})
  monkeypatch.undo()
  assert json.load(open(path)) == {"accuracy": 0.5}
  assert os.listdir(tmp_path) == ["metrics.json"]


def test_npz_is_written_atomically_and_reads_back(tmp_path):
  run = workdir.Workdir(str(tmp_path))
  run.save_logits("test", np.ones((3, 2)), np.array([0, 1, 1]))
  logits, labels = run.load_logits("test")
  assert logits.dtype == np.float32 and labels.tolist() == [0, 1, 1]
  assert sorted(os.listdir(tmp_path / "logits")) == ["test.npz"]


def test_check_is_read_only_and_start_claims(tmp_path):
  run = workdir.Workdir(str(tmp_path / "w"))
  c = config.TrainConfig(alpha=0.1)
  assert run.check(c, "train") is False and not os.path.exists(run.path)
  assert run.start(c, "train") is False and os.path.exists(run.file("config.json"))
  assert run.check(c, "train") is True and run.start(c, "train") is True
  with pytest.raises(WorkdirError, match="settings that differ: alpha"):
    run.check(c.replace(alpha=0.2), "train")
  with pytest.raises(WorkdirError, match="different train run"):
    run.check(c, "distill")
  assert run.start(c.replace(alpha=0.2), "train", overwrite=True) is False
  assert run.read_config(config.TrainConfig).alpha == 0.2


def test_folder_that_is_not_a_workdir_is_refused(tmp_path):
  (tmp_path / "notes.txt").write_text("mine")
  with pytest.raises(WorkdirError, match="not an ls_keras workdir"):
    workdir.Workdir(str(tmp_path)).check(config.TrainConfig(), "train")


def test_unfinished_workdir_is_reported_as_such(tmp_path):
  run = workdir.Workdir(str(tmp_path / "w"))
  run.start(config.TrainConfig(), "train")
  with pytest.raises(WorkdirError, match="missing or unfinished"):
    workdir.require(run.path)


def test_overwrite_never_deletes_a_folder_that_is_not_a_workdir(tmp_path):
  (tmp_path / "notes.txt").write_text("mine")
  (tmp_path / "config.json").write_text("{}")  # Even with a config.json beside the user's files.
  run = workdir.Workdir(str(tmp_path))
  for overwrite in (False, True):
    with pytest.raises(WorkdirError, match="not an ls_keras workdir") as e:
      run.check(config.TrainConfig(), "train", overwrite=overwrite)
    assert "--overwrite" not in str(e.value)
  with pytest.raises(WorkdirError):
    run.start(config.TrainConfig(), "train", overwrite=True)
  assert (tmp_path / "notes.txt").read_text() == "mine"


def test_overwrite_clears_exactly_the_workdirs_entries(tmp_path):
  run = workdir.Workdir(str(tmp_path / "w"))
  run.start(config.TrainConfig(alpha=0.1), "train")
  run.write_metrics({"steps": 1})
  os.makedirs(run.file("tb", "train"))
  assert run.is_workdir()
  assert run.start(config.TrainConfig(alpha=0.2), "train", overwrite=True) is False
  assert sorted(os.listdir(run.path)) == ["config.json"]
  assert run.read_config(config.TrainConfig).alpha == 0.2


def test_a_file_or_a_path_below_a_file_is_refused(tmp_path):
  (tmp_path / "f").write_text("x")
  with pytest.raises(WorkdirError, match="is a file"):
    workdir.Workdir(str(tmp_path / "f")).check(config.TrainConfig(), "train")
  with pytest.raises(WorkdirError, match="cannot be created"):
    workdir.Workdir(str(tmp_path / "f" / "run")).check(config.TrainConfig(), "train")


def test_sessions_record_each_start(tmp_path):
  run = workdir.Workdir(str(tmp_path / "w"))
  c = config.TrainConfig()
  run.start(c, "train", session={"start_epoch": 0, "precision": "float32"})
  assert run.start(c, "train", session={"start_epoch": 3, "precision": "mixed_bfloat16"}) is True
  assert [s["start_epoch"] for s in run.read_record()["sessions"]] == [0, 3]
  run.end_session(12.5)
  assert run.read_record()["sessions"][-1]["seconds"] == 12.5 and run.run_seconds() == 12.5


@pytest.mark.parametrize(
  "edit, message",
  [
    (lambda c: {**c, "alpha": "0.1"}, 'setting "alpha" is "0.1", not a number'),
    (lambda c: {k: v for k, v in c.items() if k != "dataset"}, 'lacks the setting "dataset"'),
  ],
)
def test_a_malformed_config_json_names_the_file_and_the_setting(tmp_path, edit, message):
  run = workdir.Workdir(str(tmp_path / "run"))
  run.start(config.TrainConfig(), "train")
  record = json.load(open(run.file("config.json")))
  json.dump({**record, "config": edit(record["config"])}, open(run.file("config.json"), "w"))
  for read in (run.read_record, run.run_config, lambda: run.check(config.TrainConfig(), "train")):
    with pytest.raises(WorkdirError) as e:
      read()
    assert run.file("config.json") in str(e.value) and message in str(e.value)
  assert run.check(config.TrainConfig(), "train", overwrite=True) is False  # Ours: replaceable.


def test_finished_metrics_must_hold_what_a_run_records(tmp_path):
  run = workdir.Workdir(str(tmp_path / "run"))
  c = config.TrainConfig()
  run.start(c, "train")
  run.write_metrics({"train": {}, "validation": {"accuracy": 0.9}})
  with pytest.raises(WorkdirError, match="metrics.json lacks the numbers test.accuracy"):
    run.finished_metrics(c, "train")
  split = {"accuracy": 0.9, "nll": 0.3, "ece": 0.01}
  run.write_metrics({s: split for s in ("train", "validation", "test")})
  assert run.finished_metrics(c, "train")["test"] == split


def test_a_workdir_of_the_previous_version_resumes_as_the_same_run(tmp_path):
  """Its config.json lacks settings added since (their defaults): still this run, not another."""
  run = workdir.Workdir(str(tmp_path / "w"))
  settings = config.TrainConfig(alpha=0.1)
  run.start(settings, "train")
  record = json.load(open(run.file("config.json")))
  del record["config"]["checkpoint_every_steps"]
  json.dump(record, open(run.file("config.json"), "w"))
  assert run.check(settings, "train") is True
  with pytest.raises(WorkdirError, match="settings that differ: checkpoint_every_steps"):
    run.check(settings.replace(checkpoint_every_steps=10), "train")
