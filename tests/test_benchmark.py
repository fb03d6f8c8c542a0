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
  assert report["matmul_gflops"]["float32"] > 0
  (main,) = [r for r in report["rows"] if r["kind"] == "train" and r["precision"] == report["auto"]]
  expected = {"keras_float32"} | ({"keras_auto"} if report["auto"] != "float32" else set())
  assert expected <= set(main["peers"]) and set(main["ratios"]) == set(main["peers"])
  assert main["training_flops_per_image"] > 1e6 and main["achieved_gflops"] > 0
  torch_skips = {s["peer"] for s in report["skipped"] if "peer" in s}
  assert {"torch_float32", "torch_bfloat16"} <= set(main["peers"]) | torch_skips  # Run or said.


def test_training_flops_of_small_cnn_are_counted_from_its_layers():
  spec = importlib.util.spec_from_file_location(
    "benchmark", os.path.join(REPO, "tools", "benchmark.py")
  )
  benchmark = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(benchmark)
  # conv 3x3x1x32 and 3x3x32x64 at 28x28 and 14x14, dense 3136x128 and 128x10; x2 x3.
  forward = 2 * (9 * 32 * 28 * 28 + 9 * 32 * 64 * 14 * 14 + 3136 * 128 + 128 * 10)
  assert benchmark.training_flops_per_image("small_cnn", (28, 28, 1)) == 3 * forward
