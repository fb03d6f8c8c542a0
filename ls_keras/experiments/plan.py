"""Plans of many runs (sweeps, the main job): run or reuse each, with one progress line and an ETA.

A plan is a list of `Job`s, each a train or distill run in its own workdir under a root,
that says what it is (curve, key, seed, regime) so that its results are found by those
fields, never by parsing or rebuilding its name (see `ls_keras.experiments.results`).
Running it reuses finished runs and resumes an interrupted one, so the plan itself is
resumable; results are read back from the workdirs. Several processes can share one plan
(see `run_all`).
"""

import collections
import dataclasses
import os
import time
from typing import Callable, Dict, List, Optional

from absl import logging

from ls_keras.core import config as config_lib
from ls_keras.core import workdir as workdir_lib


@dataclasses.dataclass(frozen=True)
class Job:
  """One run of a plan: its workdir name, kind ("train" or "distill") and config.

  `curve` and `key` say where its result goes: a curve or group name ("teacher", "kd_hard",
  "mi", ...), and the value varied along that curve (alpha, or T). `seed` is the run's seed
  and `regime` the preset's config it was built from ("teacher", "student", "mi", ...).
  """

  name: str
  kind: str
  config: config_lib.TrainConfig
  curve: str
  key: float
  seed: int
  regime: str


def _group(job: Job) -> tuple:
  """Runs that cost about the same: the same network, data size and length."""
  c = job.config
  return (
    job.kind,
    c.model,
    tuple(c.hidden_units) if c.model == "mlp" else (),
    c.train_examples,
    c.epochs,
    c.train_steps,
  )


class PlanProgress:
  """One progress line per run: how many are done, time so far, and an estimate of the time left.

  The estimate is, for each remaining run, the mean time of the finished runs of its group
  (same network, data and length; otherwise of all runs), so it sharpens as the plan goes.
  """

  def __init__(
    self, jobs: List[Job], log: Callable[[str], None] = logging.info, extra_steps: int = 0
  ):
    self.jobs, self.log, self.extra_steps = jobs, log, extra_steps
    self.done, self.start = 0, time.time()
    self.seconds: Dict[tuple, List[float]] = collections.defaultdict(list)

  @property
  def total(self) -> int:
    """Steps on the bar: the runs and the extra (analysis) steps."""
    return len(self.jobs) + self.extra_steps

  def remaining_seconds(self) -> Optional[float]:
    """The estimate of the time left, or None before any run was timed."""
    measured = [s for times in self.seconds.values() for s in times]
    if not measured:
      return None
    overall = sum(measured) / len(measured)
    left = self.jobs[self.done :] if self.done < len(self.jobs) else []
    return sum(
      sum(self.seconds[_group(j)]) / len(self.seconds[_group(j)])
      if self.seconds[_group(j)]
      else overall
      for j in left
    )

  def step(self, what: str, seconds: Optional[float] = None, job: Optional[Job] = None) -> None:
    """Records one finished step (a run, with its time unless reused; or an analysis)."""
    self.done += 1
    if job is not None and seconds is not None:
      self.seconds[_group(job)].append(seconds)
    width = 30
    filled = int(width * self.done / max(self.total, 1))
    elapsed = time.time() - self.start
    left = self.remaining_seconds()
    eta = f", about {_clock(left)} left" if left is not None and self.done < self.total else ""
    self.log(
      f"[{'=' * filled}{' ' * (width - filled)}] {self.done}/{self.total} {what} "
      f"({_clock(elapsed)} so far{eta})"
    )


def _clock(seconds: float) -> str:
  minutes, secs = divmod(int(round(seconds)), 60)
  return f"{minutes}:{secs:02d}"


def run(job: Job, root: str) -> dict:
  """Runs (or reuses, or resumes) one job in root/<job.name>; returns its metrics."""
  from ls_keras import mutual_information, training  # Here: planning needs no TensorFlow.
  from ls_keras.distillation import run as distillation_run

  workdir = os.path.join(root, job.name)
  callbacks = (mutual_information.callback_for_run,)
  if job.kind == "train":
    return training.train_and_evaluate(job.config, workdir, verbose=False, callbacks=callbacks)
  return distillation_run.distill_and_evaluate(
    job.config, workdir, verbose=False, callbacks=callbacks
  )


# How long a worker waits between looks at runs other workers are training.
POLL_SECONDS = 2.0


@dataclasses.dataclass
class Outcome:
  """What `run_all` leaves: every job's metrics, and whether this process completed the plan.

  `completed_here` is False when this process waited for another worker's runs and the
  last run to finish was not its own: the worker that finished it writes the report, so
  the report is written once.
  """

  results: Dict[str, dict]
  completed_here: bool


def _prerequisite(job: Job) -> Optional[str]:
  """The workdir `job` needs finished first (a student's teacher run), or None."""
  teacher = getattr(job.config, "teacher", "")
  if job.kind == "distill" and teacher and os.path.isdir(teacher):
    return teacher
  return None


def run_all(jobs: List[Job], root: str, progress: PlanProgress) -> Outcome:
  """Runs each job unless finished (an interrupted one resumes); returns metrics by job name.

  Several processes may run the same plan on one root (one per GPU, or a scheduler's job
  array on shared storage): each takes the next run nobody owns (see core/lease.py), skips
  runs another worker is training or whose teacher is not finished yet, and comes back to
  them; so every run is trained once, and each process returns once all are finished.
  """
  from ls_keras.core import lease as lease_lib

  if not jobs:
    return Outcome({}, True)
  results: Dict[str, dict] = {}
  pending, trained_here, others, announced = list(jobs), set(), set(), set()
  while pending:
    deferred = []
    for job in pending:
      workdir = workdir_lib.Workdir(os.path.join(root, job.name))
      teacher = _prerequisite(job)
      owner = None if workdir.is_finished() else lease_lib.holder(workdir.path)
      if owner is not None:
        others.add(job.name)
      if owner is not None or (teacher and not workdir_lib.Workdir(teacher).is_finished()):
        deferred.append(job)
        if job.name not in announced:
          announced.add(job.name)
          why = f"trained by {owner.describe()}" if owner else f"waiting for {teacher}"
          logging.info("%s: %s; coming back to it.", job.name, why)
        continue
      reused = workdir.is_finished()
      started = time.time()
      try:
        results[job.name] = run(job, root)
      except lease_lib.LeaseHeldError:  # Another worker took it between our look and our claim.
        others.add(job.name)
        deferred.append(job)
        continue
      accuracy = results[job.name]["test"]["accuracy"]
      if reused:
        by = "another worker" if job.name in others else "earlier"
        progress.step(f"{job.name}: finished by {by}, reused (test accuracy {accuracy:.4f})")
      else:
        trained_here.add(job.name)
        progress.step(f"{job.name}: test accuracy {accuracy:.4f}", time.time() - started, job)
    if len(deferred) == len(pending):
      time.sleep(POLL_SECONDS)  # Nothing to do here until another worker finishes a run.
    pending = deferred
  last = max(jobs, key=lambda j: os.path.getmtime(os.path.join(root, j.name, "metrics.json")))
  return Outcome(results, not others or last.name in trained_here)


def claim_report(outcome: Outcome, folder: str):
  """The lease under which this process writes the plan's report in `folder`, or None.

  None when another worker completed the plan (it writes the report) or is writing it now;
  the caller then writes nothing. Use the lease as a context manager around the writing.
  """
  from ls_keras.core import lease as lease_lib

  if not outcome.completed_here:
    logging.info("Another worker finished the last run; it writes the report in %s.", folder)
    return None
  report = lease_lib.Lease(folder, "the report")
  try:
    report.acquire()
  except lease_lib.LeaseHeldError as e:
    logging.info("The report in %s is being written by %s.", folder, e.owner_text)
    return None
  return report
