"""The main job: every claim of the paper, tested in the regime it studies, judged by statistics.

`reproduce(preset, root)` runs (or reuses) the plan of a preset (`ls_keras.paper.recipes`)
under root/runs, then analyses it into root/report: one section per claim with the
paper's number, the regime and why, ours, the effect with its 95% confidence interval
across seeds, a verdict by a printed rule (`ls_keras.paper.verdicts`), and figures; plus
the figure the paper does not have: calibration against training length.
"""

import dataclasses
import os
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from ls_keras import calibration
from ls_keras.calibration import report as calibration_report
from ls_keras.core import hardware, plots
from ls_keras.core import workdir as workdir_lib
from ls_keras.distillation import sweep
from ls_keras.paper import recipes, verdicts
from ls_keras.paper import report as report_lib
from ls_keras.projection import report as projection_report
from ls_keras.training import plan as plan_lib
from ls_keras.training.plan import Job

PAPER = {
  "accuracy": (
    "CIFAR-10 AlexNet 86.8 ± 0.2 (alpha 0) vs 86.7 ± 0.3 (alpha 0.1); CIFAR-100 ResNet-56 "
    "72.1 ± 0.3 vs 72.7 ± 0.3; ImageNet Inception-v4 80.9 vs 80.9 (Table 2)."
  ),
  "projection": (
    "With LS, penultimate activations form tight, equidistant clusters around their templates; "
    "a semantically similar pair spreads into an arc instead of overlapping (Figure 1)."
  ),
  "calibration": (
    "ECE, CIFAR-100 ResNet-56: baseline 0.150, temperature scaling 0.021 (T 1.9), LS 0.024 "
    "(alpha 0.05); ImageNet Inception-v4: 0.071, 0.022 (T 1.4), 0.035 (alpha 0.1) (Table 3)."
  ),
  "distillation": (
    "Every student distilled from the hard-target teacher beats the student trained with LS; "
    "LS teachers make no better, sometimes worse, students (Figure 5)."
  ),
  "information": (
    "The mutual information between example index and logit difference rises, then falls; "
    "with LS it ends much lower, near log 2 (Figure 6)."
  ),
}
ANALYSES = (
  "accuracy",
  "projection",
  "calibration",
  "training length",
  "distillation",
  "mutual information",
  "report",
)
ACCURACY_MARGIN = 1.0  # Points of accuracy within which "about the same" holds.
CALIBRATION_MARGIN = 0.015  # ECE within which LS calibrates "about as well as" temperature scaling.
OVER_CONFIDENT_T, OVER_CONFIDENT_RATIO = (
  1.3,
  3.0,
)  # The regime: fitted T and ECE / temperature-scaled ECE.


@dataclasses.dataclass
class Claim:
  """One section of the report."""

  number: int
  title: str
  paper: str
  regime: str  # Markdown: the recipe, why, and what it reached.
  ours: str  # Markdown: tables and numbers.
  verdict: verdicts.Verdict
  parts: Sequence[verdicts.Verdict] = ()  # When the verdict combines several rules.
  figures: Sequence[str] = ()  # Paths relative to the report folder.


def plan(preset: recipes.ReproducePreset, runs_root: str) -> List[Job]:
  """Every run of the preset: the LS grid (teachers), the students, and the MI runs."""
  jobs = sweep.plan(preset.sweep, runs_root)
  for seed in preset.sweep.seeds:
    for alpha in (0.0, preset.accuracy_alpha):
      jobs.append(
        Job(
          f"mi_a{alpha:g}_s{seed}", "train", preset.mi.replace(alpha=alpha, seed=seed), "mi", alpha
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

  Several processes may share one root (see training.plan.run_all): the one that finishes
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
  progress = plan_lib.Progress(jobs, extra_steps=len(ANALYSES))
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
  """The claims, figures and report of a finished plan (see `reproduce`)."""
  analysis = Analysis(preset, runs_root, report_dir, results)
  claims = []
  for name, build in (
    ("accuracy", analysis.accuracy),
    ("projection", analysis.projection),
    ("calibration", analysis.calibration),
    ("training length", analysis.training_length),
    ("distillation", analysis.distillation),
    ("mutual information", analysis.information),
  ):
    stage_start = time.time()
    built = build()
    if isinstance(built, Claim):
      claims.append(built)
    stage_times[name] = time.time() - stage_start
    progress.step(name)
  total = time.time() - progress.start
  run_seconds = sum(
    workdir_lib.Workdir(os.path.join(runs_root, j.name)).run_seconds() for j in jobs
  )
  machine = hardware.detect()
  precision, reason = hardware.resolve_precision(preset.sweep.teacher.precision, machine)
  report_lib.write(
    report_dir,
    preset_name,
    analysis.regimes(),
    claims,
    analysis.when,
    stage_times,
    {
      "machine": machine.describe(),
      "precision": f"{precision} ({reason})",
      "total": total,
      "run_seconds": run_seconds,
      "runs": len(jobs),
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
    for c in claims
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


def _mean_std(values) -> str:
  values = np.asarray(values, np.float64)
  return f"{values.mean():.4f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.4f}"


def describe_config(config) -> str:
  """The settings of a regime that matter, in one line."""
  network = (
    f"{config.model} {'-'.join(map(str, config.hidden_units))}"
    if config.model == "mlp"
    else config.model
  )
  size = (
    f"first {config.train_examples} training images"
    if config.train_examples
    else "the whole training split"
  )
  length = f"{config.train_steps} steps" if config.train_steps else f"{config.epochs} epochs"
  return (
    f"{network} on {config.dataset} ({size}), {config.optimizer} lr {config.learning_rate:g}, "
    "batch "
    f"{config.batch_size}, {length}, weight decay {config.weight_decay:g}, augmentation "
    f"{'on' if config.augment else 'off'}"
  )


class Analysis:
  """The claims, computed from finished runs."""

  def __init__(
    self, preset: recipes.ReproducePreset, runs_root: str, report_dir: str, results: Dict[str, dict]
  ):
    self.preset, self.runs_root, self.report_dir, self.results = (
      preset,
      runs_root,
      report_dir,
      results,
    )
    self.seeds = tuple(preset.sweep.seeds)
    self.alphas = tuple(preset.sweep.teacher_alphas)
    self.when = None

  def run(self, name: str) -> str:
    """The workdir of run `name`."""
    return os.path.join(self.runs_root, name)

  def teacher(self, alpha: float, seed: int) -> str:
    """The name of the main regime's run at `alpha` and `seed` (also a teacher of claim 4)."""
    return f"teacher_a{alpha:g}_s{seed}"

  def regimes(self) -> str:
    """Markdown: each regime's recipe, why it was chosen, and what it reached."""
    base = [self.results[self.teacher(0.0, s)]["train"]["accuracy"] for s in self.seeds]
    mi = [self.results[f"mi_a0_s{s}"]["train"]["accuracy"] for s in self.seeds]
    reached = self.over_confidence()
    return (
      f"**Main regime** (claims 1-4, the teachers of claim 4, and the figure above): "
      f"{describe_config(self.preset.sweep.teacher)}; LS grid "
      f"{', '.join(f'{a:g}' for a in self.alphas)}; "
      f"{len(self.seeds)} seeds. Training accuracy of the baseline: {_mean_std(base)}. "
      f"{reached['text']}\n\n*Why:* {self.preset.why}\n\n"
      f"**Mutual-information regime** (claim 5): {describe_config(self.preset.mi)}; alpha 0 and "
      f"{self.preset.accuracy_alpha:g}; {len(self.seeds)} seeds. Training accuracy of the "
      "baseline: "
      f"{_mean_std(mi)}.\n\n*Why:* {self.preset.mi_why}"
    )

  def over_confidence(self) -> dict:
    """Whether the baseline reached the paper's regime: fitted T, and ECE against scaled ECE."""
    results = [
      calibration_report.calibrate_run(
        workdir_lib.Workdir(self.run(self.teacher(0.0, s))), write=False
      )
      for s in self.seeds
    ]
    t = float(np.mean([r["temperature"] for r in results]))
    ece = float(np.mean([r["uncalibrated"]["ece"] for r in results]))
    scaled = float(np.mean([r["temperature_scaled"]["ece"] for r in results]))
    ratio = ece / max(scaled, 1e-12)
    reached = t >= OVER_CONFIDENT_T and ratio >= OVER_CONFIDENT_RATIO
    text = (
      f"The paper's regime means an over-confident baseline: fitted T >= {OVER_CONFIDENT_T:g} and "
      "test ECE at "
      f"least {OVER_CONFIDENT_RATIO:g}x its temperature-scaled ECE. Here T = {t:.2f} and ECE "
      f"{ece:.3f} = "
      f"{ratio:.1f}x {scaled:.3f}: **{'reached' if reached else 'not reached'}**"
      f"{'.' if reached else ', so the verdicts below are outside the regime the paper studies.'}"
    )
    return {"reached": reached, "temperature": t, "ece": ece, "scaled": scaled, "text": text}

  # Claim 1 (Table 2).
  def accuracy(self) -> Claim:
    """Claim 1 (Table 2): test accuracy of alpha 0 and the paper's alpha, paired by seed."""
    a = self.preset.accuracy_alpha
    diffs = [
      100
      * (
        self.results[self.teacher(a, s)]["test"]["accuracy"]
        - self.results[self.teacher(0.0, s)]["test"]["accuracy"]
      )
      for s in self.seeds
    ]
    verdict = verdicts.within(
      verdicts.interval(diffs),
      ACCURACY_MARGIN,
      f"test accuracy of alpha {a:g} minus alpha 0, in points",
    )
    rows = [
      "| alpha | training accuracy | test accuracy (mean ± sd over seeds) |",
      "| --- | --- | --- |",
    ]
    for alpha in self.alphas:
      runs = [self.results[self.teacher(alpha, s)] for s in self.seeds]
      rows.append(
        f"| {alpha:g} | {_mean_std([r['train']['accuracy'] for r in runs])} | "
        f"{_mean_std([r['test']['accuracy'] for r in runs])} |"
      )
    return Claim(
      1,
      "Label smoothing keeps accuracy about the same (Table 2)",
      PAPER["accuracy"],
      "the main regime (see Regimes).",
      "\n".join(rows),
      verdict,
    )

  # Claim 2 (Figure 1).
  def projection(self) -> Claim:
    """Claim 2 (Figure 1): cluster tightness in the template plane, LS over baseline, per seed."""
    a = self.preset.accuracy_alpha
    ratios, cvs, triples = [], [], None
    for i, seed in enumerate(self.seeds):
      runs = [self.run(self.teacher(0.0, seed)), self.run(self.teacher(a, seed))]
      out = os.path.join(self.report_dir, "projection", f"seed_{seed}")
      summary = projection_report.project_runs(
        runs,
        ["dissimilar", "similar"],
        out,
        self.preset.projection_examples,
        1000 if i == 0 else 0,
        data_dir=self.preset.sweep.teacher.data_dir,  # The command's --data_dir.
      )
      triples = triples or summary["triples"]

      def mean_of(run, triple, key):
        values = [
          n["plane"][key]
          for n in summary["tightness"]
          if n["workdir"] == os.path.abspath(run) and n["classes"] == summary["triples"][triple]
        ]
        assert values, f"no projection of {run} for triple {triple}"
        return float(np.mean(values))

      ratios.append(mean_of(runs[1], 0, "ratio") / mean_of(runs[0], 0, "ratio"))
      cvs.append((mean_of(runs[0], 1, "equidistance_cv"), mean_of(runs[1], 1, "equidistance_cv")))
    estimate = verdicts.ratio_interval(ratios)
    verdict = verdicts.below(
      estimate,
      1.0,
      f"cluster spread / centroid separation in the template plane, alpha "
      f"{a:g} over alpha 0 (dissimilar classes, train and validation)",
    )
    cvs = np.array(cvs)
    ours = (
      f"Seed {self.seeds[0]}'s classes: dissimilar {' / '.join(triples[0])}, similar "
      f"{' / '.join(triples[1])} "
      "(each seed picks its own from its baseline's confusions). Spread over separation, LS over "
      "baseline, "
      f"per seed: {', '.join(f'{r:.3f}' for r in ratios)}. Equidistance of the similar triple's "
      "centroids "
      f"(coefficient of variation, 0 = equilateral): {cvs[:, 0].mean():.3f} without LS, "
      f"{cvs[:, 1].mean():.3f} with LS (means over seeds)."
    )
    return Claim(
      2,
      "Label smoothing makes tight, equidistant clusters (Figure 1)",
      PAPER["projection"],
      f"the main regime's runs at alpha 0 and {a:g} (see Regimes).",
      ours,
      verdict,
      figures=[f"projection/seed_{self.seeds[0]}/projection.png"],
    )

  # Claim 3 (Table 3, Figure 2).
  def calibration(self) -> Claim:
    """Claim 3 (Table 3, Figure 2): LS (alpha chosen on validation) against baseline and TS."""
    per = {}  # (alpha, seed) -> calibration of the test split, and the validation ECE.
    for alpha in self.alphas:
      for seed in self.seeds:
        run = workdir_lib.Workdir(self.run(self.teacher(alpha, seed)))
        result = calibration_report.calibrate_run(run, write=False)
        logits, labels = run.load_logits("validation")
        result["validation_ece"] = calibration.expected_calibration_error(labels, logits=logits)
        per[(alpha, seed)] = result
    smoothed = [a for a in self.alphas if a > 0]
    best = min(smoothed, key=lambda a: np.mean([per[(a, s)]["validation_ece"] for s in self.seeds]))
    base = [per[(0.0, s)]["uncalibrated"]["ece"] for s in self.seeds]
    scaled = [per[(0.0, s)]["temperature_scaled"]["ece"] for s in self.seeds]
    ls = [per[(best, s)]["uncalibrated"]["ece"] for s in self.seeds]
    improvement = verdicts.above(
      verdicts.interval(np.subtract(base, ls)),
      0.0,
      f"test ECE of the baseline minus that of LS (alpha {best:g})",
    )
    gap = verdicts.below(
      verdicts.interval(np.subtract(ls, scaled)),
      CALIBRATION_MARGIN,
      f"test ECE of LS (alpha {best:g}) minus that of the temperature-scaled baseline",
    )
    outcome = verdicts.all_of(improvement, gap)
    verdict = dataclasses.replace(
      gap,
      outcome=outcome,
      rule=f"held if both parts hold: {improvement.rule}; and "
      f"{gap.rule}. Did not hold if either did not.",
    )
    rows = [
      "| alpha | test accuracy | test NLL | test ECE [95% CI] | fitted T | ECE after temperature "
      "scaling |",
      "| --- | --- | --- | --- | --- | --- |",
    ]
    for alpha in self.alphas:
      rs = [per[(alpha, s)] for s in self.seeds]
      rows.append(
        f"| {alpha:g}{' (best on validation)' if alpha == best else ''} | "
        f"{np.mean([r['uncalibrated']['accuracy'] for r in rs]):.4f} | "
        f"{np.mean([r['uncalibrated']['nll'] for r in rs]):.3f} | "
        f"{verdicts.interval([r['uncalibrated']['ece'] for r in rs]).format(3)} | "
        f"{np.mean([r['temperature'] for r in rs]):.2f} | "
        f"{np.mean([r['temperature_scaled']['ece'] for r in rs]):.3f} |"
      )
    regime = f"the main regime (see Regimes). {self.over_confidence()['text']}"
    first = self.seeds[0]
    calibration_report.calibrate_runs(
      [self.run(self.teacher(0.0, first)), self.run(self.teacher(best, first))],
      os.path.join(self.report_dir, "calibration"),
    )
    ours = (
      "Temperature fitted on validation, every number on test; the LS alpha is chosen on "
      "validation ECE.\n\n" + "\n".join(rows)
    )
    return Claim(
      3,
      "Label smoothing calibrates about as well as temperature scaling (Table 3, Figure 2)",
      PAPER["calibration"],
      regime,
      ours,
      verdict,
      parts=(improvement, gap),
      figures=["calibration/reliability.png"],
    )

  # "When does label smoothing help?": calibration against training length.
  def training_length(self) -> None:
    """The report's own figure: test ECE and accuracy of the LS grid against epochs trained."""
    histories = {
      (a, s): workdir_lib.read_json(os.path.join(self.run(self.teacher(a, s)), "history.json"))
      for a in self.alphas
      for s in self.seeds
    }
    epochs = np.array([h["epoch"] for h in histories[(0.0, self.seeds[0])]])

    def band(alpha, key):
      values = np.array([[h[key] for h in histories[(alpha, s)]] for s in self.seeds])
      return values.mean(0), values.min(0), values.max(0)

    ece = {
      "alpha 0 (hard targets)": band(0.0, "test_ece"),
      "alpha 0 + temperature scaling": band(0.0, "test_ece_temperature_scaled"),
    }
    ece.update({f"alpha {a:g}": band(a, "test_ece") for a in self.alphas if a > 0})
    accuracy = {"alpha 0 (hard targets)": band(0.0, "test_accuracy")}
    accuracy.update({f"alpha {a:g}": band(a, "test_accuracy") for a in self.alphas if a > 0})
    temperature = band(0.0, "temperature")[0]
    path = os.path.join(self.report_dir, "when.png")
    plots.save(
      plots.panels_against(
        epochs,
        [("test ECE", ece), ("test accuracy", accuracy)],
        "epochs trained",
        "When does label smoothing help? (bands: min / max over seeds)",
      ),
      path,
    )
    base = ece["alpha 0 (hard targets)"][0]
    crossings = {}
    for a in self.alphas[1:]:
      better = np.nonzero(ece[f"alpha {a:g}"][0] < base)[0]
      crossings[a] = int(epochs[better[0]]) if len(better) else None
    over = np.nonzero(temperature >= OVER_CONFIDENT_T)[0]
    self.when = {
      "figure": "when.png",
      "epochs": epochs.tolist(),
      "baseline_ece": base.tolist(),
      "baseline_temperature": temperature.tolist(),
      "crossings": crossings,
      "over_confident_from": int(epochs[over[0]]) if len(over) else None,
      "ls_ece_first": {a: float(ece[f"alpha {a:g}"][0][0]) for a in self.alphas[1:]},
      "ls_ece_last": {a: float(ece[f"alpha {a:g}"][0][-1]) for a in self.alphas[1:]},
      "scaled_last": float(ece["alpha 0 + temperature scaling"][0][-1]),
    }

  # Claim 4 (Figure 5).
  def distillation(self) -> Claim:
    """Claim 4 (Figure 5): students of the hard-target teacher against students of LS teachers."""
    jobs = sweep.plan(self.preset.sweep, self.runs_root)
    summary = sweep.curves(jobs, self.results)
    sweep.figure5(summary, os.path.join(self.report_dir, "figure5.png"))
    self._students_against_temperature(jobs)

    def accuracy(name, split="test"):
      return self.results[name][split]["accuracy"]

    temperatures = self.preset.sweep.temperatures
    ls_alphas = [a for a in self.alphas if a > 0]
    best_t = max(
      temperatures,
      key=lambda t: np.mean([accuracy(f"kd_hard_T{t:g}_s{s}", "validation") for s in self.seeds]),
    )
    best_a = max(
      ls_alphas,
      key=lambda a: np.mean([accuracy(f"kd_ls_a{a:g}_s{s}", "validation") for s in self.seeds]),
    )
    diffs = [
      100 * (accuracy(f"kd_hard_T{best_t:g}_s{s}") - accuracy(f"kd_ls_a{best_a:g}_s{s}"))
      for s in self.seeds
    ]
    verdict = verdicts.above(
      verdicts.interval(diffs),
      0.0,
      f"test accuracy of the best student of the hard-target teacher (T = {best_t:g}) minus "
      f"that of the best student of an LS teacher (alpha {best_a:g}, T = 1), in points; both "
      "chosen on validation",
    )
    lines = [sweep.table(summary)]
    direct_alphas = [a for a in (self.preset.sweep.direct_alphas or self.alphas) if a > 0]
    if direct_alphas:
      best_alpha = max(
        direct_alphas,
        key=lambda a: np.mean([accuracy(f"direct_a{a:g}_s{s}", "validation") for s in self.seeds]),
      )
      best_direct = np.mean([accuracy(f"direct_a{best_alpha:g}_s{s}") for s in self.seeds])
      beaten = sum(m > best_direct for m in summary["kd_hard"]["mean"])
      lines.append(
        f"Students of the hard-target teacher that beat the student trained directly with LS "
        f"(alpha {best_alpha:g}, chosen on validation; test {best_direct:.4f}): {beaten} of "
        f"{len(summary['kd_hard']['mean'])} temperatures."
      )
    t2 = [j for j in jobs if j.curve == "kd_hard_t2"]
    for t in sorted({j.key for j in t2}):
      with_t2 = [accuracy(f"kd_hard_T{t:g}_t2_s{s}") for s in self.seeds]
      without = [accuracy(f"kd_hard_T{t:g}_s{s}") for s in self.seeds]
      lines.append(
        f"The T^2 variant at T = {t:g}: {_mean_std(with_t2)} (the paper's loss: "
        f"{_mean_std(without)})."
      )
    regime = (
      f"teachers: the main regime's runs (LS grid {', '.join(f'{a:g}' for a in self.alphas)}). "
      "Students: "
      f"{describe_config(self.preset.sweep.student)}, distilled with the paper's loss (beta = 1, "
      "no T^2) or "
      "trained directly with LS."
    )
    return Claim(
      4,
      "Teachers trained with label smoothing distil worse (Figure 5)",
      PAPER["distillation"],
      regime,
      "\n\n".join(lines),
      verdict,
      figures=["figure5.png", "students_against_T.png"],
    )

  def _students_against_temperature(self, jobs: List[Job]) -> None:
    curves, bands = {}, {}
    groups = {
      "students of the hard-target teacher": [j for j in jobs if j.curve == "kd_hard"],
      "... with the T^2 factor": [j for j in jobs if j.curve == "kd_hard_t2"],
    }
    for alpha in self.alphas[1:]:
      groups[f"students of the alpha {alpha:g} teacher"] = [
        j for j in jobs if j.curve in ("kd_ls", "kd_ls_hot") and j.key == alpha
      ]
    for label, group in groups.items():
      by_t = {}
      for job in group:
        by_t.setdefault(job.config.temperature, []).append(
          self.results[job.name]["test"]["accuracy"]
        )
      if not by_t:
        continue
      ts = np.array(sorted(by_t))
      values = [np.array(by_t[t]) for t in ts]
      curves[label] = (ts, np.array([v.mean() for v in values]))
      bands[label] = (np.array([v.min() for v in values]), np.array([v.max() for v in values]))
    fig = plots.line_plot(
      curves,
      "distillation temperature T",
      "student test accuracy",
      band=bands,
      title="Students against temperature (bands: min / max over seeds)",
    )
    plots.save(fig, os.path.join(self.report_dir, "students_against_T.png"))

  # Claim 5 (Figure 6).
  def information(self) -> Claim:
    """Claim 5 (Figure 6): the mutual information at the end of training, LS over baseline."""
    a = self.preset.accuracy_alpha
    series = {
      (alpha, s): workdir_lib.read_json(
        os.path.join(self.run(f"mi_a{alpha:g}_s{s}"), "mutual_information.json")
      )
      for alpha in (0.0, a)
      for s in self.seeds
    }
    final = {k: v[-1]["mi"] for k, v in series.items()}
    peak = {k: max(p["mi"] for p in v) for k, v in series.items()}
    # The estimate is clipped to [0, log N]: a floor keeps a (pathological) zero from dividing.
    floor = 1e-6
    ratios = [(final[(a, s)] + floor) / (final[(0.0, s)] + floor) for s in self.seeds]
    estimate = verdicts.ratio_interval(ratios)
    verdict = verdicts.below(
      estimate, 1.0, f"mutual information at the end of training, alpha {a:g} over alpha 0"
    )
    fall = verdicts.ratio_interval(
      [(final[(0.0, s)] + floor) / (peak[(0.0, s)] + floor) for s in self.seeds]
    )
    log_n = series[(0.0, self.seeds[0])][0]["log_n"]
    steps = np.array([p["step"] for p in series[(0.0, self.seeds[0])]])

    def band(alpha):
      values = np.array([[p["mi"] for p in series[(alpha, s)]] for s in self.seeds])
      return values.mean(0), values.min(0), values.max(0)

    fig = plots.panels_against(
      steps,
      [("I(X; logit difference) [nats]", {"alpha 0": band(0.0), f"alpha {a:g}": band(a)})],
      "training step",
      f"Mutual information (log N = {log_n:.2f}, log 2 = 0.69)\nbands: min / max over seeds",
    )
    plots.save(fig, os.path.join(self.report_dir, "mutual_information.png"))
    came = "came" if fall.high < 0.97 else "did not come (within the interval)"
    ours = (
      f"At the end of training: {_mean_std([final[(0.0, s)] for s in self.seeds])} nats without "
      "LS, "
      f"{_mean_std([final[(a, s)] for s in self.seeds])} with LS; peaks "
      f"{np.mean([peak[(0.0, s)] for s in self.seeds]):.3f} "
      f"and {np.mean([peak[(a, s)] for s in self.seeds]):.3f} (log N = {log_n:.3f}, log 2 = "
      "0.693). The fall "
      f"after the peak {came} for the baseline: final / peak = {fall.format(3)}."
    )
    regime = "the mutual-information regime (see Regimes)."
    return Claim(
      5,
      "Label smoothing erases information in the logits (Figure 6)",
      PAPER["information"],
      regime,
      ours,
      verdict,
      figures=["mutual_information.png"],
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
