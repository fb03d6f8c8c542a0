"""The distillation sweep of Figure 5, and the fully connected anecdote of Section 4.

A plan is a list of jobs (train or distill runs, each in its own workdir under a root).
Running it skips finished runs and resumes an interrupted one, so the sweep itself is
resumable; results are read back from the workdirs.
"""

import collections
import dataclasses
import os
import time
from typing import Callable, Dict, List

import numpy as np

from ls_keras.core import config as config_lib
from ls_keras import training
from ls_keras.core import plots
from ls_keras.distillation import run as distillation_run
from ls_keras.core import workdir as workdir_lib
from ls_keras.paper import recipes

CURVES = {
    "teacher": "teacher, trained with alpha = gamma",
    "direct": "student trained with alpha = gamma",
    "kd_hard": "student distilled from the hard-target teacher (growing T)",
    "kd_ls": "student distilled from LS teachers (T = 1)",
}


@dataclasses.dataclass(frozen=True)
class Job:
  name: str
  kind: str  # "train" or "distill"
  config: config_lib.TrainConfig
  curve: str  # A key of CURVES, or "anecdote".
  key: float  # alpha (teacher, direct, kd_ls) or T (kd_hard).


def plan(preset: recipes.SweepPreset, root: str) -> List[Job]:
  """Every run of the sweep, teachers before the students that need them."""
  jobs = []
  path = lambda name: os.path.join(root, name)  # noqa: E731
  for seed in preset.seeds:
    for alpha in preset.teacher_alphas:
      jobs.append(Job(f"teacher_a{alpha:g}_s{seed}", "train", preset.teacher.replace(alpha=alpha, seed=seed),
                      "teacher", alpha))
    for alpha in preset.teacher_alphas:
      jobs.append(Job(f"direct_a{alpha:g}_s{seed}", "train", preset.student.replace(alpha=alpha, seed=seed),
                      "direct", alpha))
    hard_teacher = path(f"teacher_a0_s{seed}")
    for t in preset.temperatures:
      jobs.append(Job(f"kd_hard_T{t:g}_s{seed}", "distill", _distill(preset.student, hard_teacher, t, seed),
                      "kd_hard", t))
    for alpha in preset.teacher_alphas:
      if alpha > 0:
        jobs.append(Job(f"kd_ls_a{alpha:g}_s{seed}", "distill",
                        _distill(preset.student, path(f"teacher_a{alpha:g}_s{seed}"), 1.0, seed), "kd_ls", alpha))
  return jobs


def anecdote_plan(preset: recipes.SweepPreset, root: str) -> List[Job]:
  """Section 4's anecdote: a dropout teacher and an LS teacher, each distilled into the same student."""
  seed = preset.seeds[0]
  dropout = preset.teacher.replace(dropout=preset.anecdote_dropout, alpha=0.0, seed=seed)
  smoothed = preset.teacher.replace(dropout=0.0, alpha=preset.anecdote_alpha, seed=seed)
  t = preset.anecdote_temperature
  return [Job("anecdote_teacher_dropout", "train", dropout, "anecdote", 0.0),
          Job("anecdote_teacher_ls", "train", smoothed, "anecdote", preset.anecdote_alpha),
          Job("anecdote_student_of_dropout", "distill",
              _distill(preset.student, os.path.join(root, "anecdote_teacher_dropout"), t, seed), "anecdote", t),
          Job("anecdote_student_of_ls", "distill",
              _distill(preset.student, os.path.join(root, "anecdote_teacher_ls"), t, seed), "anecdote", t)]


def _distill(student: config_lib.TrainConfig, teacher: str, temperature: float, seed: int):
  fields = {**dataclasses.asdict(student), "seed": seed, "alpha": 0.0}
  return config_lib.DistillConfig(**fields, teacher=teacher, temperature=temperature, beta=1.0)


def run_jobs(jobs: List[Job], root: str, log: Callable[[str], None] = print) -> Dict[str, dict]:
  """Runs each job unless finished (an interrupted one resumes); returns metrics by job name."""
  results = {}
  for i, job in enumerate(jobs, 1):
    workdir = os.path.join(root, job.name)
    start = time.time()
    if workdir_lib.Workdir(workdir).is_finished():
      log(f"[{i}/{len(jobs)}] {job.name}: finished earlier, reused")
    else:
      log(f"[{i}/{len(jobs)}] {job.name} ...")
    if job.kind == "train":
      results[job.name] = training.train_and_evaluate(job.config, workdir)
    else:
      results[job.name] = distillation_run.distill_and_evaluate(job.config, workdir)
    log(f"[{i}/{len(jobs)}] {job.name}: test accuracy {results[job.name]['test']['accuracy']:.4f} "
        f"({time.time() - start:.0f}s)")
  return results


def curves(jobs: List[Job], results: Dict[str, dict]) -> Dict[str, dict]:
  """Per curve: gamma (mean over seeds) and test accuracy min / mean / max over seeds, by key."""
  grouped = collections.defaultdict(lambda: collections.defaultdict(list))
  for job in jobs:
    if job.curve in CURVES:
      metrics = results[job.name]
      gamma = metrics.get("equivalent_smoothing", job.config.alpha)
      grouped[job.curve][job.key].append((gamma, metrics["test"]["accuracy"]))
  out = {}
  for curve, by_key in grouped.items():
    keys = sorted(by_key)
    points = [np.array(by_key[k]) for k in keys]
    out[curve] = {"key": keys, "gamma": [float(p[:, 0].mean()) for p in points],
                  "min": [float(p[:, 1].min()) for p in points], "mean": [float(p[:, 1].mean()) for p in points],
                  "max": [float(p[:, 1].max()) for p in points], "seeds": [len(p) for p in points]}
  return out


def figure5(summary: Dict[str, dict], path: str) -> None:
  lines, bands = {}, {}
  for curve, c in summary.items():
    order = np.argsort(c["gamma"])
    x = np.array(c["gamma"])[order]
    lines[CURVES[curve]] = (x, np.array(c["mean"])[order])
    bands[CURVES[curve]] = (np.array(c["min"])[order], np.array(c["max"])[order])
  fig = plots.line_plot(lines, "equivalent smoothing gamma", "test accuracy", band=bands,
                        title="Accuracy against equivalent smoothing\n(bands: min / max over seeds)")
  plots.save(fig, path)


def table(summary: Dict[str, dict]) -> str:
  lines = ["| curve | alpha or T | gamma | test accuracy mean | min | max | seeds |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
  for curve, c in summary.items():
    for i, key in enumerate(c["key"]):
      label = f"T = {key:g}" if curve == "kd_hard" else f"alpha = {key:g}"
      lines.append(f"| {CURVES[curve]} | {label} | {c['gamma'][i]:.3f} | {c['mean'][i]:.4f} | {c['min'][i]:.4f} | "
                   f"{c['max'][i]:.4f} | {c['seeds'][i]} |")
  return "\n".join(lines) + "\n"


def anecdote_table(results: Dict[str, dict]) -> str:
  err = lambda name: 100 * (1 - results[name]["test"]["accuracy"])  # noqa: E731
  return ("| teacher | teacher error | student error |\n| --- | --- | --- |\n"
          f"| with dropout | {err('anecdote_teacher_dropout'):.2f}% | {err('anecdote_student_of_dropout'):.2f}% |\n"
          f"| with label smoothing | {err('anecdote_teacher_ls'):.2f}% | {err('anecdote_student_of_ls'):.2f}% |\n")


def run_sweep(preset: recipes.SweepPreset, root: str, log: Callable[[str], None] = print) -> dict:
  """Runs (or reuses) the whole grid and the anecdote; writes kd_sweep.md/.json and figure5.png."""
  workdir_lib.check_output_dir(root, "--root")
  jobs, anecdote = plan(preset, root), anecdote_plan(preset, root)
  results = run_jobs(jobs + anecdote, root, log)
  summary = curves(jobs, results)
  figure5(summary, os.path.join(root, "figure5.png"))
  text = table(summary) + "\n" + anecdote_table(results)
  workdir_lib.atomic_write_bytes(os.path.join(root, "kd_sweep.md"), text.encode())
  report = {"curves": summary, "anecdote": {j.name: results[j.name]["test"] for j in anecdote}, "table": text}
  workdir_lib.atomic_write_json(os.path.join(root, "kd_sweep.json"), report)
  return report
