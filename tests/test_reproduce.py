"""The main job on the tiny preset: every section, and nothing new on a second call."""

import os

import pytest

from conftest import run_cli


@pytest.fixture(scope="module")
def reproduced(fashion_data_dir, tmp_path_factory):
  root = str(tmp_path_factory.mktemp("repro"))
  result = run_cli("ls_keras.reproduce", "--preset=tiny", f"--root={root}", f"--data_dir={fashion_data_dir}",
                   timeout=1200)
  assert result.returncode == 0, result.stderr[-3000:]
  return root, result


def test_report_has_every_claim_with_paper_ours_and_verdict(reproduced):
  root, result = reproduced
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
  assert "Time per stage" in md and "total" in result.stdout
  assert "21/21" in result.stdout  # One progress bar over 5 runs + 11 distillation runs + 5 analyses.


def test_second_call_runs_nothing_new(reproduced, fashion_data_dir):
  root, _ = reproduced
  metrics = [os.path.join(dirpath, "metrics.json") for dirpath, _, files in os.walk(root) if "metrics.json" in files]
  stamps = {p: os.path.getmtime(p) for p in metrics}
  result = run_cli("ls_keras.reproduce", "--preset=tiny", f"--root={root}", f"--data_dir={fashion_data_dir}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert len(stamps) == 16 and stamps == {p: os.path.getmtime(p) for p in metrics}
  assert result.stdout.count("already holds this finished run") == 16
