"""The main job on the tiny preset: every section, and nothing new on a second call."""

import os

import pytest

from conftest import finished_runs, invoke, kill_after_finished

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reproduced(fashion_data_dir, reproduce_root, tiny_sweep):
  """A first call SIGKILLed once 3 of its training runs are finished, then a second call
  (in this process) that completes the plan. Its distillation runs are the session's
  tiny sweep, already finished under the same root."""
  root = str(reproduce_root)
  args = ["--preset=tiny", f"--root={root}", f"--data_dir={fashion_data_dir}"]
  before_kill = kill_after_finished("ls_keras.reproduce", args, os.path.join(root, "runs"), 3)
  assert 3 <= len(before_kill) < 5
  before_kill.update(finished_runs(tiny_sweep[0]))
  result = invoke("reproduce", *args)
  assert result.code == 0, result.err[-3000:]
  return root, result, before_kill


def test_interrupted_plan_reuses_finished_runs(reproduced):
  root, _, before_kill = reproduced
  after = finished_runs(root)
  assert all(after[p] == t for p, t in before_kill.items())
  assert len(after) == 16


def test_report_has_every_claim_with_paper_ours_and_verdict(reproduced):
  root, result, _ = reproduced
  md = open(os.path.join(root, "report", "index.md")).read()
  page = open(os.path.join(root, "report", "index.html")).read()
  for claim in range(1, 6):
    assert f"Claim {claim}" in md and f"Claim {claim}" in page
  assert md.count("**Paper:**") == 5 and md.count("**Verdict:**") == 5
  assert md.count("Held") + md.count("Did not hold") + md.count("Partly held") >= 5
  assert page.count("data:image/png;base64,") == 4  # Figures 1, 2, 5, 6 embedded.
  for figure in ("calibration/reliability.png", "projection/projection.png", "figure5.png",
                 "mutual_information/mutual_information.png"):
    assert os.path.exists(os.path.join(root, "report", figure))
  assert "Time per stage" in md and "total" in result.out
  assert "21/21" in result.out  # One progress bar over 5 runs + 11 distillation runs + 5 analyses.


def test_another_call_runs_nothing_new(reproduced, fashion_data_dir):
  root, _, _ = reproduced
  before = finished_runs(root)
  result = invoke("reproduce", "--preset=tiny", f"--root={root}", f"--data_dir={fashion_data_dir}")
  assert result.code == 0, result.err[-3000:]
  assert len(before) == 16 and finished_runs(root) == before
