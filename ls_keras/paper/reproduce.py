"""The main job: every run the paper's claims need at a preset's scale, and a report per claim.

Stages reuse finished runs and existing analysis outputs, so a second call only redoes what
is missing. The report states, for each claim, the paper's numbers, ours (mean +- std over
seeds) and whether the claim held here, in one plain sentence.
"""

import base64
import html
import os
import time
from typing import Callable, Dict, List

import numpy as np

from ls_keras import training
from ls_keras.calibration import report as calibration_report
from ls_keras.distillation import sweep
from ls_keras.mutual_information import report as mutual_info_report
from ls_keras.projection import report as projection_report
from ls_keras.core import workdir as workdir_lib
from ls_keras.paper import recipes


PAPER = {
    "accuracy": "CIFAR-10 AlexNet 86.8 +- 0.2 (alpha 0) vs 86.7 +- 0.3 (alpha 0.1); CIFAR-100 ResNet-56 72.1 +- 0.3 vs "
                "72.7 +- 0.3; ImageNet Inception-v4 80.9 vs 80.9 (Table 2).",
    "calibration": "ECE, CIFAR-100 ResNet-56: baseline 0.150, temperature scaling 0.021 (T 1.9), LS 0.024 (alpha "
                   "0.05); ImageNet Inception-v4: 0.071, 0.022 (T 1.4), 0.035 (alpha 0.1) (Table 3).",
    "projection": "With LS, penultimate activations form tight, equidistant clusters around their templates; "
                  "a semantically similar pair spreads into an arc instead of overlapping (Figure 1).",
    "distillation": "Every student distilled from the hard-target teacher beats the student trained with LS; LS "
                    "teachers make no better, sometimes worse, students (Figure 5). MNIST: dropout teacher 0.67% / "
                    "student 0.74% error; LS teacher 0.59% / student 0.91%.",
    "information": "The mutual information between example index and logit difference rises, then falls; with LS "
                   "it ends much lower, near log 2 (Figure 6).",
}


class Progress:
  """One progress bar over the whole plan (runs and analyses), with each stage's time."""

  def __init__(self, total: int, log: Callable[[str], None] = print):
    self.total, self.done, self.log, self.start = total, 0, log, time.time()
    self.stage_times: Dict[str, float] = {}

  def step(self, what: str) -> None:
    self.done += 1
    width = 30
    filled = int(width * self.done / max(self.total, 1))
    elapsed = time.time() - self.start
    self.log(f"[{'=' * filled}{' ' * (width - filled)}] {self.done}/{self.total} {what} ({elapsed:.0f}s)")


def _train_runs(preset: recipes.ReproducePreset) -> List[sweep.Job]:
  jobs = []
  for alpha in preset.table2_alphas:
    for seed in preset.seeds:
      config = preset.base.replace(alpha=alpha, seed=seed)
      if seed == preset.seeds[0]:  # The first seed's runs also record the mutual information.
        config = config.replace(mi_every_steps=preset.mi_every_steps, mi_classes=tuple(preset.mi_classes))
      jobs.append(sweep.Job(f"train_a{alpha:g}_s{seed}", "train", config, "table2", alpha))
  for alpha in preset.extra_alphas:
    jobs.append(sweep.Job(f"train_a{alpha:g}_s{preset.seeds[0]}", "train",
                          preset.base.replace(alpha=alpha, seed=preset.seeds[0]), "table3", alpha))
  return jobs


def reproduce(preset_name: str, root: str, data_dir: str = "", fashion_mnist_source: str = "",
              log: Callable[[str], None] = print) -> dict:
  """Runs (or reuses) everything, then writes root/report/index.md and index.html."""
  workdir_lib.check_output_dir(root, "--root")
  data = recipes.preset_data(data_dir, fashion_mnist_source)
  preset = recipes.lookup(recipes.REPRODUCTIONS, preset_name)(data)
  kd = recipes.SWEEPS[preset.sweep](data)
  runs_root, kd_root, report_dir = (os.path.join(root, d) for d in ("runs", "kd_sweep", "report"))
  train_jobs = _train_runs(preset)
  kd_jobs = sweep.plan(kd, kd_root) + sweep.anecdote_plan(kd, kd_root)
  analyses = ("calibration", "projection", "mutual information", "distillation summary", "report")
  progress = Progress(len(train_jobs) + len(kd_jobs) + len(analyses), log)
  stage_start = time.time()
  results = {}
  for job in train_jobs:
    results[job.name] = training.train_and_evaluate(job.config, os.path.join(runs_root, job.name))
    progress.step(job.name)
  progress.stage_times["Table 2/3 runs"] = time.time() - stage_start
  stage_start = time.time()
  kd_results = {}
  for job in kd_jobs:
    kd_results.update(sweep.run_jobs([job], kd_root, log=lambda _: None))
    progress.step(job.name)
  progress.stage_times["distillation runs"] = time.time() - stage_start
  first = preset.seeds[0]
  base_run, ls_run = (os.path.join(runs_root, f"train_a{a:g}_s{first}") for a in preset.table2_alphas)
  all_runs = [os.path.join(runs_root, j.name) for j in train_jobs]
  os.makedirs(report_dir, exist_ok=True)

  def stage(name, out_file, fn):
    start = time.time()
    path = os.path.join(report_dir, out_file)
    if not os.path.exists(path):
      fn()
    progress.stage_times[name] = time.time() - start
    progress.step(name)

  stage("calibration", "calibration/calibration.json",
        lambda: calibration_report.calibrate_runs(all_runs, os.path.join(report_dir, "calibration")))
  stage("projection", "projection/projection.json",
        lambda: projection_report.project_runs([base_run, ls_run], ["dissimilar", "similar"],
                                               os.path.join(report_dir, "projection"),
                                               examples_per_class=20 if preset_name == "tiny" else 100))
  stage("mutual information", "mutual_information/mutual_information.json",
        lambda: mutual_info_report.plot_runs([base_run, ls_run], os.path.join(report_dir, "mutual_information")))

  def summarize_kd():
    summary = sweep.curves(sweep.plan(kd, kd_root), kd_results)
    sweep.figure5(summary, os.path.join(report_dir, "figure5.png"))
    workdir_lib.atomic_write_json(os.path.join(report_dir, "kd_sweep.json"),
                                  {"curves": summary, "table": sweep.table(summary),
                                   "anecdote": sweep.anecdote_table(kd_results)})
  stage("distillation summary", "kd_sweep.json", summarize_kd)
  sections = build_sections(preset, results, report_dir, base_run, ls_run)
  write_report(sections, report_dir, progress.stage_times, preset_name)
  progress.step("report")
  total = time.time() - progress.start
  log(f"Report: {os.path.join(report_dir, 'index.html')} (total {total:.0f}s)")
  for s in sections:
    log(f"- {s['title']}: {s['verdict']}")
  return {"sections": sections, "seconds": total, "stage_times": progress.stage_times}


def _mean_std(values) -> str:
  values = np.asarray(values, np.float64)
  return f"{values.mean():.4f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.4f}"


def build_sections(preset, results, report_dir, base_run, ls_run) -> List[dict]:
  """One section per claim: paper, ours, verdict, figures."""
  a0, a1 = preset.table2_alphas
  acc = {a: [results[f"train_a{a:g}_s{s}"]["test"]["accuracy"] for s in preset.seeds] for a in (a0, a1)}
  diff = np.mean(acc[a1]) - np.mean(acc[a0])
  noise = max(2 * np.sqrt((np.var(acc[a0], ddof=1) + np.var(acc[a1], ddof=1)) / 2), 0.005)
  held = abs(diff) <= noise
  sections = [{
      "title": "Claim 1 (Table 2): label smoothing keeps accuracy about the same",
      "paper": PAPER["accuracy"],
      "ours": (f"Test accuracy over {len(preset.seeds)} seeds: alpha {a0:g}: {_mean_std(acc[a0])}; alpha {a1:g}: "
               f"{_mean_std(acc[a1])} (difference {100 * diff:+.2f} points)."),
      "verdict": ("Held: " if held else "Did not hold: ") + f"the difference is {100 * abs(diff):.2f} points, "
                 f"{'within' if held else 'beyond'} the {100 * noise:.2f}-point noise band (2 std, at least 0.5).",
      "figures": []}]
  cal = workdir_lib.read_json(os.path.join(report_dir, "calibration", "calibration.json"))
  by_alpha = {}
  for r in cal["runs"]:
    by_alpha.setdefault(r["alpha"], []).append(r)
  base_ece = np.mean([r["uncalibrated"]["ece"] for r in by_alpha[a0]])
  ts_ece = np.mean([r["temperature_scaled"]["ece"] for r in by_alpha[a0]])
  best = min((a for a in by_alpha if a > 0), key=lambda a: np.mean([r["uncalibrated"]["ece"] for r in by_alpha[a]]))
  ls_ece = np.mean([r["uncalibrated"]["ece"] for r in by_alpha[best]])
  held = ls_ece < base_ece and ls_ece <= ts_ece + 0.01
  sections.append({
      "title": "Claim 3 (Table 3, Figure 2): label smoothing calibrates about as well as temperature scaling",
      "paper": PAPER["calibration"], "ours": cal["table"],
      "verdict": ("Held: " if held else "Did not hold: ") + f"baseline ECE {base_ece:.3f}, temperature scaling "
                 f"{ts_ece:.3f}, best LS (alpha {best:g}) {ls_ece:.3f}" + (
                     "." if held else (" — the baseline is not over-confident here, so there is little for LS "
                                       "to fix and it makes the network under-confident." if base_ece < 0.03
                                       else ".")),
      "figures": ["calibration/reliability.png"]})
  proj = workdir_lib.read_json(os.path.join(report_dir, "projection", "projection.json"))
  rows = {(os.path.basename(n["workdir"]), tuple(n["classes"]), n["split"]): n for n in proj["tightness"]}
  names = [os.path.basename(base_run), os.path.basename(ls_run)]
  dissimilar, similar = (tuple(t) for t in proj["triples"])
  ratio = lambda run, triple: np.mean([rows[(run, triple, s)]["plane"]["ratio"] for s in ("train", "validation")])  # noqa: E731
  cv = lambda run, triple: np.mean([rows[(run, triple, s)]["plane"]["equidistance_cv"] for s in ("train", "validation")])  # noqa: E731
  # Margins keep noise from passing as an effect: 5% tighter, 10% more equidistant.
  tighter = ratio(names[1], dissimilar) < 0.95 * ratio(names[0], dissimilar)
  equidistant = cv(names[1], similar) < 0.9 * cv(names[0], similar)
  sections.append({
      "title": "Claim 2 (Figure 1): label smoothing makes tight, equidistant clusters",
      "paper": PAPER["projection"],
      "ours": (f"Spread / centroid separation in the template plane (mean of train and validation; smaller is "
               f"tighter): dissimilar triple {' / '.join(dissimilar)}: {ratio(names[0], dissimilar):.3f} without LS, "
               f"{ratio(names[1], dissimilar):.3f} with LS; similar triple {' / '.join(similar)}: "
               f"{ratio(names[0], similar):.3f} vs {ratio(names[1], similar):.3f}. Equidistance (CV of centroid "
               f"distances) of the similar triple: {cv(names[0], similar):.3f} vs {cv(names[1], similar):.3f}."),
      "verdict": ("Held: " if tighter and equidistant else "Partly held: " if tighter or equidistant
                  else "Did not hold: ") + f"with LS the dissimilar clusters are "
                 f"{'tighter' if tighter else 'not clearly tighter (under 5%)'} and the similar triple's centroids "
                 f"are {'more' if equidistant else 'not clearly more (under 10%)'} equidistant.",
      "figures": ["projection/projection.png"]})
  kd = workdir_lib.read_json(os.path.join(report_dir, "kd_sweep.json"))
  curves = kd["curves"]
  best_hard, best_ls = max(curves["kd_hard"]["mean"]), max(curves["kd_ls"]["mean"])
  direct_best = max(curves["direct"]["mean"])
  held = best_ls <= best_hard
  sections.append({
      "title": "Claim 4 (Figure 5): teachers trained with label smoothing distil worse",
      "paper": PAPER["distillation"], "ours": kd["table"] + "\n" + kd["anecdote"],
      "verdict": ("Held: " if held else "Did not hold: ") + f"best student of the hard-target teacher "
                 f"{best_hard:.4f}, best student of an LS teacher {best_ls:.4f}, best student trained with LS "
                 f"{direct_best:.4f}.",
      "figures": ["figure5.png"]})
  mi = workdir_lib.read_json(os.path.join(report_dir, "mutual_information", "mutual_information.json"))
  final = {os.path.basename(k): v[-1]["mi"] for k, v in mi.items()}
  peak = {os.path.basename(k): max(p["mi"] for p in v) for k, v in mi.items()}
  log_n = next(iter(mi.values()))[0]["log_n"]
  lower = final[names[1]] < final[names[0]]
  held = final[names[1]] < 0.9 * final[names[0]]  # "Much lower": at least 10% below the baseline.
  sections.append({
      "title": "Claim 5 (Figure 6): label smoothing erases information in the logits",
      "paper": PAPER["information"],
      "ours": (f"I(X; Y) at the end of training: {final[names[0]]:.3f} nats without LS, {final[names[1]]:.3f} with "
               f"LS (peaks {peak[names[0]]:.3f} and {peak[names[1]]:.3f}; log N = {log_n:.3f}, log 2 = 0.693)."),
      "verdict": ("Held: " if held else "Partly held: " if lower else "Did not hold: ") + "with LS the estimate "
                 f"ends {final[names[1]] / final[names[0]]:.0%} of the baseline's"
                 + ("." if held else f" — {'lower, but not much lower' if lower else 'not lower'}; the paper's "
                                     "rise-then-fall needs training long enough to overfit."),
      "figures": ["mutual_information/mutual_information.png"]})
  return sorted(sections, key=lambda s: s["title"])


def write_report(sections: List[dict], report_dir: str, stage_times: Dict[str, float], preset: str) -> None:
  md = [f"# When Does Label Smoothing Help? — reproduced with ls_keras (preset `{preset}`)", ""]
  body = [f"<h1>When Does Label Smoothing Help? — reproduced with ls_keras (preset <code>{preset}</code>)</h1>"]
  for s in sections:
    md += [f"## {s['title']}", "", f"**Paper:** {s['paper']}", "", "**Here:**", "", s["ours"], "",
           f"**Verdict:** {s['verdict']}", ""] + [f"![{f}]({f})" for f in s["figures"]] + [""]
    body += [f"<h2>{html.escape(s['title'])}</h2>", f"<p><b>Paper:</b> {html.escape(s['paper'])}</p>",
             f"<pre>{html.escape(s['ours'])}</pre>", f"<p><b>Verdict:</b> {html.escape(s['verdict'])}</p>"]
    for f in s["figures"]:
      with open(os.path.join(report_dir, f), "rb") as png:
        data = base64.b64encode(png.read()).decode()
      body.append(f'<img alt="{html.escape(f)}" style="max-width:100%" src="data:image/png;base64,{data}">')
  times = "".join(f"<li>{html.escape(k)}: {v:.0f}s</li>" for k, v in stage_times.items())
  md += ["## Time per stage", ""] + [f"- {k}: {v:.0f}s" for k, v in stage_times.items()]
  body.append(f"<h2>Time per stage</h2><ul>{times}</ul>")
  workdir_lib.atomic_write_bytes(os.path.join(report_dir, "index.md"), ("\n".join(md) + "\n").encode())
  page = "<!doctype html><meta charset='utf-8'><title>ls_keras report</title><body style='font-family:sans-serif;" \
         "max-width:60em;margin:auto'>" + "\n".join(body) + "</body>"
  workdir_lib.atomic_write_bytes(os.path.join(report_dir, "index.html"), page.encode())
