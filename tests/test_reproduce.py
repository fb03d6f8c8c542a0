"""The main job on the tiny preset: every section, and nothing new on a second call."""

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, run_cli


def _finished(root):
  return {os.path.join(d, "metrics.json"): os.path.getmtime(os.path.join(d, "metrics.json"))
          for d, _, files in os.walk(root) if "metrics.json" in files}


@pytest.fixture(scope="module")
def reproduced(fashion_data_dir, tmp_path_factory):
  """A first call SIGKILLed once 3 runs are finished, then a second call that completes the plan."""
  root = str(tmp_path_factory.mktemp("repro"))
  args = ["--preset=tiny", f"--root={root}", f"--data_dir={fashion_data_dir}"]
  proc = subprocess.Popen([sys.executable, "-m", "ls_keras.reproduce", *args], cwd=REPO,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 600
  while len(_finished(root)) < 3 and proc.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  before_kill = _finished(root)
  assert 3 <= len(before_kill) < 16
  result = run_cli("ls_keras.reproduce", *args, timeout=1200)
  assert result.returncode == 0, result.stderr[-3000:]
  return root, result, before_kill


def test_interrupted_plan_reuses_finished_runs(reproduced):
  root, result, before_kill = reproduced
  assert result.stdout.count("already holds this finished run") == len(before_kill)
  assert all(os.path.getmtime(p) == t for p, t in before_kill.items())
  assert len(_finished(root)) == 16


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
  assert "Time per stage" in md and "total" in result.stdout
  assert "21/21" in result.stdout  # One progress bar over 5 runs + 11 distillation runs + 5 analyses.


def test_another_call_runs_nothing_new(reproduced, fashion_data_dir):
  root, _, _ = reproduced
  metrics = [os.path.join(dirpath, "metrics.json") for dirpath, _, files in os.walk(root) if "metrics.json" in files]
  stamps = {p: os.path.getmtime(p) for p in metrics}
  result = run_cli("ls_keras.reproduce", "--preset=tiny", f"--root={root}", f"--data_dir={fashion_data_dir}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert len(stamps) == 16 and stamps == {p: os.path.getmtime(p) for p in metrics}
  assert result.stdout.count("already holds this finished run") == 16
