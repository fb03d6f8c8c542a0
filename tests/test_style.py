"""House style as tooling: ruff's checks and formatting (pyproject.toml) hold for the whole tree."""

import subprocess
import sys

from conftest import REPO


def _ruff(*args):
  return subprocess.run(
    [sys.executable, "-m", "ruff", *args, "ls_keras", "tools", "tests"],
    cwd=REPO,
    capture_output=True,
    text=True,
  )


def test_ruff_check_passes():
  result = _ruff("check", "--output-format=concise")
  assert result.returncode == 0, result.stdout[-3000:]


def test_ruff_format_is_applied():
  result = _ruff("format", "--check")
  assert result.returncode == 0, result.stdout[-3000:] + "\nRun: ruff format ls_keras tools tests"
