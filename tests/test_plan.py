"""Plans of many runs: the progress line's estimate of the time left."""

from ls_keras.core import config
from ls_keras.training import plan


def _job(name, model="mlp", epochs=1):
  return plan.Job(name, "train", config.TrainConfig(model=model, epochs=epochs), "teacher", 0.0)


def test_estimate_uses_the_mean_time_of_each_group_of_alike_runs():
  jobs = [
    _job("a"),
    _job("b"),
    _job("c", model="small_cnn"),
    _job("d", model="small_cnn"),
    _job("e"),
  ]
  lines = []
  progress = plan.Progress(jobs, log=lines.append, extra_steps=1)
  assert progress.remaining_seconds() is None  # Nothing measured yet: no estimate.
  progress.step("a", 10.0, jobs[0])
  assert progress.remaining_seconds() == 40.0  # 4 runs left at the overall mean of 10 s.
  progress.step("b", 20.0, jobs[1])
  progress.step("c", 100.0, jobs[2])
  assert (
    progress.remaining_seconds() == 100.0 + 15.0
  )  # d: its group's 100 s; e: the MLP group's mean of 15 s.
  progress.step("d: reused")  # A reused run takes no time and teaches the estimate nothing.
  assert "4/6" in lines[-1] and "left" in lines[-1]
