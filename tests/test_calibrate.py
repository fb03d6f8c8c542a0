"""The calibrate command on saved runs."""

import json
import os
import re

import pytest

from conftest import fake_run, invoke


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("cal")
  baseline = fake_run(root / "base", alpha=0.0, temperature=2.0)  # Over-confident by T = 2.
  smoothed = fake_run(root / "ls", alpha=0.1, seed=1, temperature=1.0)
  out = root / "out"
  result = invoke(
    "calibrate", f"--workdir={baseline.path}", f"--workdir={smoothed.path}", f"--output_dir={out}"
  )
  assert result.code == 0, result.err[-3000:]
  return baseline, smoothed, out, result


def test_writes_json_png_and_table3(runs):
  baseline, smoothed, out, result = runs
  for path in (out / "reliability.png", out / "table3.md", out / "calibration.json"):
    assert path.exists() and path.stat().st_size > 0
  assert open(out / "reliability.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
  table = (out / "table3.md").read_text()
  assert "baseline ECE" in table and "(alpha = 0.1)" in table
  assert float(re.search(r"\(T = (\d+\.\d+)\)", table).group(1)) == pytest.approx(2.0, abs=0.1)
  assert table.strip() in result.out
  base = json.load(open(baseline.file("calibration.json")))
  assert base["temperature"] == pytest.approx(2.0, rel=0.1)  # Recovered from the saved logits.
  assert base["temperature_scaled"]["ece"] < base["uncalibrated"]["ece"]
  assert base["temperature_scaled"]["accuracy"] == base["uncalibrated"]["accuracy"]
  assert len(base["bins"]["count"]) == 15 and sum(base["bins"]["count"]) == 2000
  assert os.path.exists(smoothed.file("reliability.png"))


def test_reliability_diagram_goes_into_tensorboard(runs):
  from tensorboard.backend.event_processing import event_accumulator

  baseline = runs[0]
  acc = event_accumulator.EventAccumulator(
    baseline.file("tb", "calibration"), size_guidance={event_accumulator.TENSORS: 0}
  )
  acc.Reload()
  assert "reliability_diagram" in acc.Tags()["tensors"]
  (event,) = acc.Tensors("reliability_diagram")
  png = event.tensor_proto.string_val[2]  # [width, height, encoded image]
  assert png[:4] == b"\x89PNG"
