"""The distillation sweep of Figure 5, and the fully connected anecdote of Section 4.

Teachers over an alpha grid; students trained directly with LS; students distilled from
the hard-target teacher at growing T; students distilled from LS teachers (at T = 1, and
optionally hotter); optionally the T^2 variant. Everything is plotted against the
equivalent smoothing gamma (paper Section 4). The plan is resumable (`ls_keras.experiments.plan`).
Its grids (`SweepPreset`) are defined here and filled by the named presets of
`ls_keras.paper.recipes`, which sits above this layer.
"""

import dataclasses
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from ls_keras.core import config as config_lib
from ls_keras.core import workdir as workdir_lib
from ls_keras.experiments import plan as plan_lib
from ls_keras.experiments import results as results_lib
from ls_keras.experiments.plan import Job


@dataclasses.dataclass(frozen=True)
class SweepPreset:
  """The grid of one distillation sweep (Figure 5) and the Section 4 anecdote."""

  teacher: config_lib.TrainConfig
  student: config_lib.TrainConfig
  teacher_alphas: Tuple[float, ...]
  temperatures: Tuple[float, ...]
  seeds: Tuple[int, ...]
  direct_alphas: Tuple[
    float, ...
  ] = ()  # Students trained directly with LS (default: teacher_alphas).
  ls_temperatures: Tuple[float, ...] = (1.0,)  # Temperatures at which LS teachers are distilled...
  hot_ls_alphas: Tuple[
    float, ...
  ] = ()  # ... above T = 1, only these teachers (default: every LS teacher).
  t_squared_temperatures: Tuple[float, ...] = ()  # Hard-teacher students with the T^2 factor too.
  anecdote: bool = True
  anecdote_dropout: float = 0.5
  anecdote_alpha: float = 0.1
  anecdote_temperature: float = 4.0  # With logit matching, only gamma's T.
  # The anecdote's networks and optimiser (None: the sweep's teacher and student); the
  # presets give Appendix A.5's (`paper.recipes.mnist_fc_teacher` and `mnist_fc_student`).
  anecdote_teacher: Optional[config_lib.TrainConfig] = None
  anecdote_student: Optional[config_lib.TrainConfig] = None
  # A.5's student: 0.4 x cross-entropy + 0.6 x half the squared error to the teacher's logits.
  anecdote_beta: float = 0.6
  anecdote_teacher_term: str = "logit_matching"


CURVES = {
  "teacher": "teacher, trained with alpha = gamma",
  "direct": "student trained with alpha = gamma",
  "kd_hard": "student distilled from the hard-target teacher (growing T)",
  "kd_ls": "student distilled from LS teachers (T = 1)",
}


def distill_config(
  student: config_lib.TrainConfig,
  teacher: str,
  temperature: float,
  seed: int,
  t_squared: bool = False,
  beta: float = 1.0,
  teacher_term: str = "cross_entropy",
) -> config_lib.DistillConfig:
  """A student distilled from the teacher workdir `teacher`, by default with Figure 5's loss.

  Figure 5's: beta = 1, the cross-entropy at T; the anecdote's: `beta` 0.6 of logit matching.
  """
  fields = {**dataclasses.asdict(student), "seed": seed, "alpha": 0.0}
  return config_lib.DistillConfig(
    **fields,
    teacher=teacher,
    temperature=temperature,
    beta=beta,
    t_squared=t_squared,
    teacher_term=teacher_term,
  )


def plan(preset: SweepPreset, root: str) -> List[Job]:
  """Every run of the sweep, teachers before the students that need them.

  Names: teacher_a{alpha}_s{seed}, direct_a{alpha}_s{seed}, kd_hard_T{T}_s{seed},
  kd_hard_T{T}_t2_s{seed} (T^2 variant), kd_ls_a{alpha}_s{seed} (T = 1) and
  kd_ls_a{alpha}_T{T}_s{seed} (hotter).
  """
  jobs = []
  for seed in preset.seeds:
    for alpha in preset.teacher_alphas:
      jobs.append(
        Job(
          f"teacher_a{alpha:g}_s{seed}",
          "train",
          preset.teacher.replace(alpha=alpha, seed=seed),
          "teacher",
          alpha,
          seed,
          "teacher",
        )
      )
    for alpha in preset.direct_alphas or preset.teacher_alphas:
      jobs.append(
        Job(
          f"direct_a{alpha:g}_s{seed}",
          "train",
          preset.student.replace(alpha=alpha, seed=seed),
          "direct",
          alpha,
          seed,
          "student",
        )
      )
    hard_teacher = os.path.join(root, f"teacher_a0_s{seed}")
    for t in preset.temperatures:
      jobs.append(
        Job(
          f"kd_hard_T{t:g}_s{seed}",
          "distill",
          distill_config(preset.student, hard_teacher, t, seed),
          "kd_hard",
          t,
          seed,
          "student",
        )
      )
    for t in preset.t_squared_temperatures:
      jobs.append(
        Job(
          f"kd_hard_T{t:g}_t2_s{seed}",
          "distill",
          distill_config(preset.student, hard_teacher, t, seed, t_squared=True),
          "kd_hard_t2",
          t,
          seed,
          "student",
        )
      )
    for alpha in preset.teacher_alphas:
      if alpha == 0:
        continue
      teacher = os.path.join(root, f"teacher_a{alpha:g}_s{seed}")
      for t in preset.ls_temperatures:
        if t != 1 and preset.hot_ls_alphas and alpha not in preset.hot_ls_alphas:
          continue
        name = f"kd_ls_a{alpha:g}_s{seed}" if t == 1 else f"kd_ls_a{alpha:g}_T{t:g}_s{seed}"
        jobs.append(
          Job(
            name,
            "distill",
            distill_config(preset.student, teacher, t, seed),
            "kd_ls" if t == 1 else "kd_ls_hot",
            alpha,
            seed,
            "student",
          )
        )
  return jobs


def anecdote_plan(preset: SweepPreset, root: str) -> List[Job]:
  """Section 4's anecdote: a dropout teacher and an LS teacher, each distilled into a student.

  The students learn as Appendix A.5's: `anecdote_beta` of `anecdote_teacher_term` (there,
  0.6 of half the squared error to the teacher's logits) and the rest hard cross-entropy.
  """
  if not preset.anecdote:
    return []
  seed = preset.seeds[0]
  teacher = preset.anecdote_teacher or preset.teacher
  dropout = teacher.replace(dropout=preset.anecdote_dropout, alpha=0.0, seed=seed)
  smoothed = teacher.replace(dropout=0.0, alpha=preset.anecdote_alpha, seed=seed)
  t = preset.anecdote_temperature
  student = preset.anecdote_student or preset.student
  loss = dict(beta=preset.anecdote_beta, teacher_term=preset.anecdote_teacher_term)
  return [
    Job(
      "anecdote_teacher_dropout",
      "train",
      dropout,
      "anecdote_dropout",
      0.0,
      seed,
      "anecdote_teacher",
    ),
    Job(
      "anecdote_teacher_ls",
      "train",
      smoothed,
      "anecdote_ls",
      preset.anecdote_alpha,
      seed,
      "anecdote_teacher",
    ),
    Job(
      "anecdote_student_of_dropout",
      "distill",
      distill_config(student, os.path.join(root, "anecdote_teacher_dropout"), t, seed, **loss),
      "anecdote_dropout",
      t,
      seed,
      "anecdote_student",
    ),
    Job(
      "anecdote_student_of_ls",
      "distill",
      distill_config(student, os.path.join(root, "anecdote_teacher_ls"), t, seed, **loss),
      "anecdote_ls",
      t,
      seed,
      "anecdote_student",
    ),
  ]


def curves(table: results_lib.Table) -> Dict[str, dict]:
  """Per Figure 5 curve and key: gamma (mean over seeds), test accuracy min / mean / max."""
  out = {}
  for curve in CURVES:
    keys = table.keys(curve=curve)
    if not keys:
      continue
    points = [
      np.array([(r["gamma"], r["test_accuracy"]) for r in table.select(curve=curve, key=k)])
      for k in keys
    ]
    out[curve] = {
      "key": keys,
      "gamma": [float(p[:, 0].mean()) for p in points],
      "min": [float(p[:, 1].min()) for p in points],
      "mean": [float(p[:, 1].mean()) for p in points],
      "max": [float(p[:, 1].max()) for p in points],
      "seeds": [len(p) for p in points],
    }
  return out


def figure5(summary: Dict[str, dict], path: str) -> None:
  """Figure 5: test accuracy against equivalent smoothing gamma, mean and min-max over seeds."""
  from ls_keras.core import plots  # Here: planning a sweep needs no matplotlib.

  lines, bands = {}, {}
  for curve, c in summary.items():
    order = np.argsort(c["gamma"])
    x = np.array(c["gamma"])[order]
    lines[CURVES[curve]] = (x, np.array(c["mean"])[order])
    bands[CURVES[curve]] = (np.array(c["min"])[order], np.array(c["max"])[order])
  fig = plots.line_plot(
    lines,
    "equivalent smoothing gamma",
    "test accuracy",
    band=bands,
    title="Accuracy against equivalent smoothing\n(bands: min / max over seeds)",
  )
  plots.save(fig, path)


def table(summary: Dict[str, dict]) -> str:
  """Markdown: one row per point of each Figure 5 curve."""
  lines = [
    "| curve | alpha or T | gamma | test accuracy mean | min | max | seeds |",
    "| --- | --- | --- | --- | --- | --- | --- |",
  ]
  for curve, c in summary.items():
    for i, key in enumerate(c["key"]):
      label = f"T = {key:g}" if curve == "kd_hard" else f"alpha = {key:g}"
      lines.append(
        f"| {CURVES[curve]} | {label} | {c['gamma'][i]:.3f} | {c['mean'][i]:.4f} | "
        f"{c['min'][i]:.4f} | "
        f"{c['max'][i]:.4f} | {c['seeds'][i]} |"
      )
  return "\n".join(lines) + "\n"


def anecdote_table(table: results_lib.Table) -> str:
  """Markdown: test error of the dropout and LS teachers and of their students."""

  def error(curve, regime):
    return 100 * (1 - table.one(curve=curve, regime=regime)["test_accuracy"])

  rows = [("with dropout", "anecdote_dropout"), ("with label smoothing", "anecdote_ls")]
  return "| teacher | teacher error | student error |\n| --- | --- | --- |\n" + "".join(
    f"| {label} | {error(curve, 'anecdote_teacher'):.2f}% | "
    f"{error(curve, 'anecdote_student'):.2f}% |\n"
    for label, curve in rows
  )


def run_sweep(preset: SweepPreset, root: str) -> Optional[dict]:
  """Runs (or reuses) the grid and the anecdote; writes kd_sweep.md/.json, results.jsonl, Figure 5.

  Several processes may share one root (see experiments.plan.run_all): the one that finishes
  the last run writes the report and returns it; the others return None.

  Raises:
    UserError: --root is a file or cannot be created; any run's bad input.
  """
  workdir_lib.check_output_dir(root, "--root")
  root = os.path.abspath(root)  # Students name their teachers by absolute path.
  jobs, anecdote = plan(preset, root), anecdote_plan(preset, root)
  outcome = plan_lib.run_all(jobs + anecdote, root, plan_lib.PlanProgress(jobs + anecdote))
  report = plan_lib.claim_report(outcome, root)
  if report is None:
    return None
  with report:
    return _write_report(jobs, anecdote, outcome.results, root)


def _write_report(jobs: List[Job], anecdote: List[Job], results: Dict[str, dict], root: str):
  runs = results_lib.build(jobs + anecdote, results, root, calibrate_runs=False)
  runs.save(os.path.join(root, results_lib.FILE))
  summary = curves(runs)
  figure5(summary, os.path.join(root, "figure5.png"))
  text = table(summary) + ("\n" + anecdote_table(runs) if anecdote else "")
  workdir_lib.atomic_write_bytes(os.path.join(root, "kd_sweep.md"), text.encode())
  report = {
    "curves": summary,
    "anecdote": {j.name: results[j.name]["test"] for j in anecdote},
    "table": text,
  }
  workdir_lib.atomic_write_json(os.path.join(root, "kd_sweep.json"), report)
  return report
