"""tools/benchmark.py runs in its quick mode and prints the table (a smoke run, not a measurement)."""

import os
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.slow
def test_benchmark_quick_mode_prints_every_row():
  result = subprocess.run([sys.executable, os.path.join(REPO, "tools", "benchmark.py"), "--quick"],
                          capture_output=True, text=True, timeout=600, cwd=REPO,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO})
  assert result.returncode == 0, result.stderr[-3000:]
  for row in ("train small_cnn", "train alexnet", "train resnet56", "input pipeline", "ECE + temperature fit"):
    assert row in result.stdout
  ratios = [float(line.split()[-1].rstrip("x")) for line in result.stdout.splitlines() if line.endswith("x")]
  assert len(ratios) == 6 and all(r > 0 for r in ratios)
