"""tools/benchmark.py in its quick mode: every row and the JSON table (a smoke run)."""

import importlib.util
import json
import os

import pytest

from conftest import REPO


@pytest.mark.slow
def test_benchmark_quick_mode_prints_the_machine_and_writes_every_row(tmp_path, capsys):
  spec = importlib.util.spec_from_file_location(
    "benchmark", os.path.join(REPO, "tools", "benchmark.py")
  )
  benchmark = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(benchmark)
  report = benchmark.main(["--quick", f"--json={tmp_path / 'bench.json'}"])
  out = capsys.readouterr().out
  assert out.startswith("Machine: ") and "precision auto -> " in out
  assert json.load(open(tmp_path / "bench.json")) == report
  rows = {(r["model"], r["precision"], r["kind"]) for r in report["rows"]}
  assert {("small_cnn", report["auto"], "train"), ("small_cnn", report["auto"], "xla")} <= rows
  assert all(r["ours_images_per_s"] > 0 and r["plain_images_per_s"] > 0 for r in report["rows"])
  assert {s["model"] for s in report["skipped"] if s["reason"] == "--quick"} == {
    "alexnet",
    "resnet56",
  }
  assert all(s["reason"] for s in report["skipped"])
  assert report["input_pipeline"]["ratio"] > 0 and report["ece_and_temperature_fit_seconds"] < 5
