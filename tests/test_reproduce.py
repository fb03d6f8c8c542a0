"""The main job on the tiny preset: every section, verdicts by rule, figures, reuse of runs."""

import json
import math
import os

import pytest

from conftest import finished_runs, invoke
from ls_keras.paper import recipes, reproduce

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reproduced(fashion_data_dir, tmp_path_factory):
  """The tiny preset, in this process. (Killing and resuming a plan: tests/test_faults.py.)"""
  root = str(tmp_path_factory.mktemp("reproduce"))
  relative = os.path.relpath(root)  # A relative --root; the second call below gives it absolute.
  result = invoke(
    "reproduce", "--preset=tiny", f"--root={relative}", f"--data_dir={fashion_data_dir}"
  )
  assert result.code == 0, result.err[-3000:]
  return root, result


def test_plan_has_every_run_once():
  preset = recipes.REPRODUCTIONS["tiny"](recipes.preset_data())
  jobs = reproduce.plan(preset, "/r")
  names = [j.name for j in jobs]
  assert (
    len(names) == len(set(names)) == 2 * (2 + 2 + 2 + 1 + 2 + 1 + 1 + 2)
  )  # Seeds x (teachers, direct, T, T^2, LS, online LS, focal, MI).
  assert all(j.config.track_test for j in jobs if j.regime == "teacher")
  teacher = preset.sweep.teacher
  for curve, loss, key in (("online_ls", "online_ls", 0.5), ("focal", "focal", 3.0)):
    runs = [j for j in jobs if j.curve == curve]
    assert [(j.seed, j.key) for j in runs] == [(s, key) for s in preset.sweep.seeds]
    for j in runs:  # The teacher regime, with this loss instead of LS.
      assert j.config == teacher.replace(
        loss=loss, seed=j.seed, **{"online_ls_mix" if curve == "online_ls" else "focal_gamma": key}
      )


def test_report_has_every_claim_with_effect_interval_verdict_and_rule(reproduced):
  root, result = reproduced
  md = open(os.path.join(root, "report", "index.md")).read()
  page = open(os.path.join(root, "report", "index.html")).read()
  for claim in range(1, 7):
    assert f"## Claim {claim}" in md and f"Claim {claim}:" in result.out
  assert md.count("**Paper:**") == 6 and md.count("**Verdict:**") == 6 and md.count("*Rule:*") == 6
  assert md.count("Inconclusive") >= 6  # Two seeds: the rules refuse to call it.
  assert "## Regimes" in md and "## When does label smoothing help?" in md
  assert (
    "<table>" in page and page.count("<h2>") >= 7
  )  # Rendered by Python-Markdown, tables included.
  figures = [line.split("](")[1].rstrip(")") for line in md.splitlines() if line.startswith("![")]
  assert {
    "when.png",
    "figure5.png",
    "students_against_T.png",
    "mutual_information.png",
    "calibration/reliability.png",
    "risk_coverage.png",
  } <= set(figures)
  for figure in figures:
    assert open(os.path.join(root, "report", figure), "rb").read(4) == b"\x89PNG", figure
    assert f'src="{figure}"' in page
  claims = json.load(open(os.path.join(root, "report", "claims.json")))["claims"]
  assert [c["outcome"] for c in claims] == ["inconclusive"] * 6  # Two seeds: too few for a rule.
  assert all(c["estimate"]["n"] == 2 and math.isfinite(c["estimate"]["mean"]) for c in claims), (
    claims
  )


def test_another_call_runs_nothing_new_however_the_root_is_spelled(reproduced, fashion_data_dir):
  root, _ = reproduced
  before = finished_runs(root)
  result = invoke("reproduce", "--preset=tiny", f"--root={root}", f"--data_dir={fashion_data_dir}")
  assert result.code == 0, result.err[-3000:]
  assert len(before) == 26 and finished_runs(root) == before


def test_precision_line_reads_what_the_runs_recorded():
  def record(*sessions):
    return {"sessions": [{"precision": p, "precision_reason": r} for p, r in sessions]}

  gpu = ("bfloat16", "a GPU with bfloat16")
  cpu = ("float32", "no accelerator")
  assert (
    reproduce.precision_line([record(gpu), record(gpu, gpu)]) == "bfloat16 (a GPU with bfloat16)"
  )
  assert reproduce.precision_line([record(gpu, cpu), record(gpu)]) == (
    "bfloat16 (a GPU with bfloat16) in 2 sessions; float32 (no accelerator) in 1 session"
  )
  assert reproduce.precision_line([{"sessions": []}, {}]) == "not recorded"
