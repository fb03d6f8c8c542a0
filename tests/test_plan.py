"""Plans of many runs: the progress line's estimate of the time left, and workers sharing one."""

import os
import subprocess
import sys
import threading
import time

from ls_keras.core import config, lease
from ls_keras.experiments import plan


def _job(name, model="mlp", epochs=1):
  return plan.Job(
    name, "train", config.TrainConfig(model=model, epochs=epochs), "teacher", 0.0, 0, "teacher"
  )


def test_estimate_uses_the_mean_time_of_each_group_of_alike_runs():
  jobs = [
    _job("a"),
    _job("b"),
    _job("c", model="small_cnn"),
    _job("d", model="small_cnn"),
    _job("e"),
  ]
  lines = []
  progress = plan.PlanProgress(jobs, log=lines.append, extra_steps=1)
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


class _OtherWorker:
  """Another process' run in progress: holds the run's lease (in this process, through a
  second file descriptor, which flock treats as a separate owner) until `finish`."""

  def __init__(self, folder):
    self.folder = folder
    self.lease = lease.Lease(folder)
    self.lease.acquire()

  def finish(self, delay):
    def later():
      time.sleep(delay)
      open(os.path.join(self.folder, "metrics.json"), "w").write('{"test": {"accuracy": 0.5}}')
      self.lease.release()

    thread = threading.Thread(target=later)
    thread.start()
    return thread


def _fake_runs(monkeypatch, root, seconds=0.0):
  """plan.run replaced by a run that takes `seconds` and writes metrics.json; returns the calls."""
  calls = []

  def fake_run(job, root_):
    done = os.path.join(root_, job.name, "metrics.json")
    if os.path.exists(done):  # Finished: reused, as the real run() does.
      return {"test": {"accuracy": 1.0}}
    calls.append(job.name)
    time.sleep(seconds)
    open(os.path.join(root_, job.name, "metrics.json"), "w").write('{"test": {"accuracy": 1}}')
    return {"test": {"accuracy": 1.0}}

  for name in ("t", "s", "u"):
    os.makedirs(os.path.join(root, name), exist_ok=True)
  monkeypatch.setattr(plan, "run", fake_run)
  monkeypatch.setattr(plan, "POLL_SECONDS", 0.01)
  return calls


def _distill_job(name, teacher):
  distill = config.DistillConfig(model="mlp", teacher=teacher)
  return plan.Job(name, "distill", distill, "kd", 1.0, 0, "student")


def test_a_run_another_worker_owns_is_left_to_it_and_its_student_waits(tmp_path, monkeypatch):
  root = str(tmp_path)
  calls = _fake_runs(monkeypatch, root)
  other = _OtherWorker(os.path.join(root, "t"))
  jobs = [_job("t"), _distill_job("s", os.path.join(root, "t")), _job("u")]
  thread = other.finish(delay=0.3)
  outcome = plan.run_all(jobs, root, plan.PlanProgress(jobs, log=lambda line: None))
  thread.join()
  assert calls == ["u", "s"]  # t is the other worker's; s waited for its teacher t.
  assert set(outcome.results) == {"t", "s", "u"}
  assert outcome.completed_here  # s, trained here, finished last: this process reports.


def test_the_worker_that_did_not_finish_the_last_run_leaves_the_report(tmp_path, monkeypatch):
  root = str(tmp_path)
  calls = _fake_runs(monkeypatch, root)
  other = _OtherWorker(os.path.join(root, "t"))
  jobs = [_job("t"), _job("u")]
  thread = other.finish(delay=0.3)  # Finishes after u.
  outcome = plan.run_all(jobs, root, plan.PlanProgress(jobs, log=lambda line: None))
  thread.join()
  assert calls == ["u"] and not outcome.completed_here
  assert plan.claim_report(outcome, str(tmp_path / "report")) is None
  assert not (tmp_path / "report").exists()


def test_a_lone_worker_and_a_rerun_write_the_report_under_its_lease(tmp_path, monkeypatch):
  root = str(tmp_path)
  calls = _fake_runs(monkeypatch, root)
  jobs = [_job("t"), _job("u")]
  first = plan.run_all(jobs, root, plan.PlanProgress(jobs, log=lambda line: None))
  again = plan.run_all(jobs, root, plan.PlanProgress(jobs, log=lambda line: None))
  assert calls == ["t", "u"]  # The second call reuses both.
  assert first.completed_here and again.completed_here
  report = plan.claim_report(first, str(tmp_path / "report"))
  with report:
    assert plan.claim_report(again, str(tmp_path / "report")) is None  # Being written.


def test_planning_imports_no_tensorflow():
  """Plans, the sweep's grid and the presets are pure Python: a command can answer (flag
  errors, finished runs) before TensorFlow's slow start, and the layer cannot reach up."""
  code = (
    "import sys, ls_keras.experiments.plan, ls_keras.experiments.kd_sweep, ls_keras.paper.recipes;"
    " assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
  )
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
