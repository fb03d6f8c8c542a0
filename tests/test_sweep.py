"""The distillation sweep on a tiny preset: plan, results, figure, and reuse on a second call."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, finished_runs, invoke
from ls_keras.experiments import kd_sweep as sweep
from ls_keras.paper import recipes


def test_plan_covers_the_four_curves_with_teachers_first():
  preset = recipes.SWEEPS["fashion_mnist"](recipes.preset_data())
  jobs = sweep.plan(preset, "/r")
  names = [j.name for j in jobs]
  per_seed = (
    2 * len(preset.teacher_alphas) + len(preset.temperatures) + len(preset.teacher_alphas) - 1
  )
  assert len(jobs) == per_seed * len(preset.seeds)
  for job in jobs:
    if job.kind == "distill":
      teacher = os.path.basename(job.config.teacher)
      assert names.index(teacher) < names.index(job.name)
      assert job.config.hidden_units == (800, 800) and job.config.beta == 1.0
  assert {j.curve for j in jobs} == set(sweep.CURVES)
  assert preset.teacher.hidden_units == (1200, 1200)


def test_the_anecdote_trains_as_appendix_a5_and_its_students_match_logits():
  """Teachers and students with the paper's optimiser; students 0.6 x half the squared error
  to the teacher's logits + 0.4 x cross-entropy. Without anecdote networks, the sweep's."""
  preset = recipes.SWEEPS["cifar10"](recipes.preset_data())
  jobs = {j.name: j for j in sweep.anecdote_plan(preset, "/r")}
  dropout, smoothed = jobs["anecdote_teacher_dropout"], jobs["anecdote_teacher_ls"]
  assert dropout.config == recipes.mnist_fc_teacher().replace(seed=0, dataset="mnist")
  assert (smoothed.config.alpha, smoothed.config.dropout) == (0.1, 0.0)
  for name in ("anecdote_student_of_dropout", "anecdote_student_of_ls"):
    student = jobs[name].config
    assert (student.beta, student.teacher_term, student.t_squared) == (0.6, "logit_matching", False)
    assert (student.hidden_units, student.augmentation) == ((800, 800), "none")
    assert (student.lr_schedule, student.dampening, student.last_layer_lr_scale) == (
      "linear",
      0.9,
      0.1,
    )
  plain = dataclasses.replace(preset, anecdote_teacher=None, anecdote_student=None)
  jobs = {j.name: j for j in sweep.anecdote_plan(plain, "/r")}
  assert jobs["anecdote_teacher_dropout"].config.model == preset.teacher.model == "resnet56"
  assert jobs["anecdote_student_of_ls"].config.model == preset.student.model


@pytest.mark.slow
def test_tiny_sweep_writes_table_figure_and_anecdote(tiny_sweep):
  root, result, _ = tiny_sweep
  report = json.load(open(os.path.join(root, "kd_sweep.json")))
  assert set(report["curves"]) == set(sweep.CURVES)
  kd_hard = report["curves"]["kd_hard"]
  assert kd_hard["key"] == [1.0, 4.0]
  assert kd_hard["gamma"][0] < kd_hard["gamma"][-1]  # Higher T, smoother teacher.
  assert report["curves"]["teacher"]["gamma"] == [0.0, 0.3]
  assert len(report["anecdote"]) == 4
  assert open(os.path.join(root, "figure5.png"), "rb").read(4) == b"\x89PNG"
  assert "with label smoothing" in result.out


@pytest.mark.slow
def test_second_call_runs_nothing_new(tiny_sweep, fashion_data_dir):
  root, _, _ = tiny_sweep
  before = finished_runs(root)
  result = invoke("kd_sweep", "--preset=tiny", f"--root={root}", f"--data_dir={fashion_data_dir}")
  assert result.code == 0, result.err[-3000:]
  assert len(before) == 11 and finished_runs(root) == before


@pytest.mark.slow
def test_two_workers_share_one_root_train_each_run_once_and_report_once(
  tiny_sweep, fashion_data_dir, tmp_path
):
  """Two kd_sweep processes on one root (a job array, or one process per GPU): every run is
  trained by exactly one of them, and one writes the same report as a lone process."""
  root = str(tmp_path / "shared")
  args = ["--preset=tiny", f"--root={root}", f"--data_dir={fashion_data_dir}"]
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
  procs = [
    subprocess.Popen(
      [sys.executable, "-m", "ls_keras.kd_sweep", *args],
      cwd=REPO,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for _ in range(2)
  ]
  outputs = [p.communicate(timeout=900) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
  runs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
  assert len(runs) == 11
  for run in runs:  # One session each: nobody trained a run twice, or resumed another's.
    sessions = json.load(open(os.path.join(root, run, "config.json")))["sessions"]
    assert len(sessions) == 1, run
  writers = [out for out, _ in outputs if "with label smoothing" in out]
  assert len(writers) == 1, [out[-500:] for out, _ in outputs]  # The report, written once.
  alone = json.load(open(os.path.join(tiny_sweep[0], "kd_sweep.json")))
  shared = json.load(open(os.path.join(root, "kd_sweep.json")))
  assert {k: v["key"] for k, v in shared["curves"].items()} == {
    k: v["key"] for k, v in alone["curves"].items()
  }
  assert sorted(shared["anecdote"]) == sorted(alone["anecdote"])
  assert not os.path.exists(os.path.join(root, ".lease"))
