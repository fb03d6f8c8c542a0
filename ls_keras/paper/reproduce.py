"""The main job: every claim of the paper, tested in the regime it studies, judged by statistics.

`reproduce(preset, root)` runs (or reuses) the plan of a preset (`ls_keras.paper.recipes`)
under root/runs, builds one results table from it (root/report/results.jsonl, see
`ls_keras.experiments.results`), then evaluates each claim of `ls_keras.paper.claims` on
that table into root/report: one section per claim with the paper's number, the regime and
why, ours, the effect with its 95% confidence interval across seeds, a verdict by a printed
rule (`ls_keras.paper.verdicts`), and figures; plus the figure the paper does not have:
calibration against training length.
"""

import collections
import dataclasses
import os
import time
from typing import List, Optional

from ls_keras.core import hardware
from ls_keras.core import workdir as workdir_lib
from ls_keras.experiments import kd_sweep
from ls_keras.experiments import plan as plan_lib
from ls_keras.experiments import results as results_lib
from ls_keras.experiments.plan import Job
from ls_keras.paper import claims as claims_lib
from ls_keras.paper import recipes
from ls_keras.paper import report as report_lib

ANALYSES = ("results table",) + tuple(name for name, _ in claims_lib.STAGES) + ("report",)


def plan(preset: recipes.ReproducePreset, runs_root: str) -> List[Job]:
  """Every run of the preset: the LS grid (teachers), the students, other losses, the MI runs.

  The other calibrating losses train in the teacher regime with every seed: curve
  "online_ls" (key: its mix) and curve "focal" (key: its gamma).
  """
  jobs = kd_sweep.plan(preset.sweep, runs_root)
  teacher = preset.sweep.teacher
  for seed in preset.sweep.seeds:
    for mix in preset.online_ls_mixes:
      config = teacher.replace(loss="online_ls", online_ls_mix=mix, alpha=0.0, seed=seed)
      jobs.append(
        Job(f"online_ls_m{mix:g}_s{seed}", "train", config, "online_ls", mix, seed, "teacher")
      )
    for gamma in preset.focal_gammas:
      config = teacher.replace(loss="focal", focal_gamma=gamma, alpha=0.0, seed=seed)
      jobs.append(
        Job(f"focal_g{gamma:g}_s{seed}", "train", config, "focal", gamma, seed, "teacher")
      )
  for seed in preset.sweep.seeds:
    for alpha in (0.0, preset.accuracy_alpha):
      jobs.append(
        Job(
          f"mi_a{alpha:g}_s{seed}",
          "train",
          preset.mi.replace(alpha=alpha, seed=seed),
          "mi",
          alpha,
          seed,
          "mi",
        )
      )
  return jobs


def reproduce(
  preset_name: str,
  root: str,
  data_dir: str = "",
  fashion_mnist_source: str = "",
  download: bool = True,
  data: Optional[dict] = None,
) -> Optional[dict]:
  """Runs (or reuses) the preset's plan under root/runs; writes root/report/index.md and .html.

  Several processes may share one root (see experiments.plan.run_all): the one that finishes
  the last run writes the report; the others return None.

  Returns:
    {"claims": [{"number", "title", "outcome", "effect", "estimate"}], "seconds", "stage_times"}.

  Raises:
    UserError: unknown preset, --root a file, or any run's bad input (data not prepared, ...).

  `data`: overrides of the preset's data settings (`recipes.with_data`): its plan on
  another data set (a TFDS name, folder:PATH, npz:PATH).
  """
  workdir_lib.check_output_dir(root, "--root")
  root = os.path.abspath(root)  # Analyses compare the absolute workdir paths they record.
  preset = recipes.with_data(
    recipes.lookup(recipes.REPRODUCTIONS, preset_name)(
      recipes.preset_data(data_dir, fashion_mnist_source, download)
    ),
    **(data or {}),
  )
  runs_root, report_dir = os.path.join(root, "runs"), os.path.join(root, "report")
  jobs = plan(preset, runs_root)
  progress = plan_lib.PlanProgress(jobs, extra_steps=len(ANALYSES))
  started = time.time()
  outcome = plan_lib.run_all(jobs, runs_root, progress)
  report = plan_lib.claim_report(outcome, report_dir)
  if report is None:
    return None
  with report:
    return _analyse(
      preset_name,
      preset,
      jobs,
      outcome.results,
      runs_root,
      report_dir,
      progress,
      {"training runs": time.time() - started},
    )


def _analyse(preset_name, preset, jobs, results, runs_root, report_dir, progress, stage_times):
  """The results table, the claims, figures and report of a finished plan (see `reproduce`)."""
  stage_start = time.time()
  table = results_lib.build(jobs, results, runs_root)
  table.save(os.path.join(report_dir, results_lib.FILE))
  stage_times["results table"] = time.time() - stage_start
  progress.step("results table")
  evaluated = []
  for name, claim in claims_lib.STAGES:
    stage_start = time.time()
    evaluated.append(claim.evaluate(table, preset, report_dir))
    stage_times[name] = time.time() - stage_start
    progress.step(name)
  total = time.time() - progress.start
  records = [workdir_lib.Workdir(r["workdir"]).read_record() for r in table.rows]
  run_seconds = sum(workdir_lib.Workdir(r["workdir"]).run_seconds() for r in table.rows)
  machine = hardware.detect()
  report_lib.write(
    report_dir,
    preset_name,
    claims_lib.regimes.describe(table, preset),
    evaluated,
    stage_times,
    {
      "machine": machine.describe(),
      "precision": precision_line(records),
      "total": total,
      "run_seconds": run_seconds,
      "runs": len(table),
    },
  )
  progress.step("report")
  summary = [
    {
      "number": c.number,
      "title": c.title,
      "outcome": c.verdict.outcome,
      "effect": c.verdict.effect,
      "estimate": dataclasses.asdict(c.verdict.estimate),
    }
    for c in evaluated
    if c.number is not None
  ]
  workdir_lib.atomic_write_json(
    os.path.join(report_dir, "claims.json"), {"preset": preset_name, "claims": summary}
  )
  return {
    "claims": summary,
    "seconds": total,
    "stage_times": stage_times,
    "report": os.path.join(report_dir, "index.html"),
  }


def precision_line(records: List[dict]) -> str:
  """The precisions the runs trained at, as their config.json `sessions` recorded them.

  Read, not resolved again: a run resumed elsewhere, or a sweep started on another machine,
  trained at what its sessions say, whatever this machine would choose now.

  Args:
    records: the runs' config.json contents (`Workdir.read_record`).

  Returns:
    "bfloat16 (reason)" when every session agrees; otherwise each precision with its reason
    and how many sessions used it, most used first, joined by "; ".
  """
  counts = collections.Counter(
    (s.get("precision", "unknown"), s.get("precision_reason", "not recorded"))
    for record in records
    for s in record.get("sessions", [])
  )
  if not counts:
    return "not recorded"
  if len(counts) == 1:
    [(precision, reason)] = counts
    return f"{precision} ({reason})"
  return "; ".join(
    f"{precision} ({reason}) in {n} session{'s' * (n != 1)}"
    for (precision, reason), n in counts.most_common()
  )


def summary_lines(result: dict) -> List[str]:
  """One line per claim for the command's output."""
  lines = []
  for c in result["claims"]:
    e = c["estimate"]
    lines.append(
      f"Claim {c['number']}: {c['outcome']}: {c['effect']} = {e['mean']:.3f} [{e['low']:.3f}, "
      f"{e['high']:.3f}] ({e['n']} seeds)"
    )
  return lines
