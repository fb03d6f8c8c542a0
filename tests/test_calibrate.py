"""The calibrate command on saved runs."""

import json
import os
import re

import numpy as np
import pytest

from conftest import fake_run, fashion_arrays, invoke


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
  # Selective classification beside it: one set of predictions, three confidence scores.
  assert "| alpha 0 | " in table and "test AURC: MSP" in table
  for method in ("msp", "ts", "pnorm"):
    found = base["selective"][method]
    assert found["error"] == pytest.approx(1 - base["uncalibrated"]["accuracy"])
    assert 0 <= found["eaurc"] < found["aurc"] and found["num_examples"] == 2000


def test_table3_shows_the_measure_suite_with_bootstrap_intervals(runs):
  """Each run's ECE-15, adaptive ECE, classwise ECE and RMS calibration error, as trained and
  temperature scaled, each 'value [low, high]': the values of calibration.json, the
  over-confident baseline's intervals holding their values and separated by scaling."""
  baseline, _, out, _ = runs
  table = (out / "table3.md").read_text()
  assert "| ECE-15 | adaptive ECE | classwise ECE | RMS calibration error |" in table
  assert "95% bootstrap percentile interval over test examples, 200 resamples" in table
  base = json.load(open(baseline.file("calibration.json")))
  number = r"(\d\.\d{4})"
  cell = re.compile(rf" {number} \[{number}, {number}\] ")
  for key, label in (("uncalibrated", "as trained"), ("temperature_scaled", "temperature scaled")):
    row = re.search(rf"\| base \(alpha 0\) \| {label}[^|]* \|(.*)\|", table).group(1)
    cells = [cell.fullmatch(c).groups() for c in row.split("|")]
    for (value, low, high), name in zip(cells, ("ece", "adaptive_ece", "classwise_ece", "rms_ce")):
      interval = base["intervals"][key][name]
      assert float(value) == pytest.approx(base[key][name], abs=1e-4), name
      assert (float(low), float(high)) == pytest.approx(
        (interval["low"], interval["high"]), abs=1e-4
      )
  before, after = base["intervals"]["uncalibrated"], base["intervals"]["temperature_scaled"]
  for name in ("ece", "adaptive_ece", "classwise_ece", "rms_ce"):
    assert before[name]["low"] <= before[name]["estimate"] <= before[name]["high"], name
    assert after[name]["high"] < before[name]["low"], name  # T = 2 undone: clearly better.
  summary = json.load(open(out / "calibration.json"))
  assert summary["runs"][0]["intervals"] == base["intervals"]


def test_no_intervals_with_zero_resamples(tmp_path):
  run = fake_run(tmp_path / "run", alpha=0.0, n=300)
  out = tmp_path / "out"
  result = invoke("calibrate", f"--workdir={run.path}", f"--output_dir={out}", "--num_resamples=0")
  assert result.code == 0, result.err[-3000:]
  row = re.search(r"\| run \(alpha 0\) \| as trained \|(.*)\|", result.out).group(1)
  assert "[" not in row and len(row.split("|")) == 4
  assert "intervals" not in json.load(open(run.file("calibration.json")))


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


def test_calibrate_a_keras_file_trained_elsewhere(foreign_classifier, fashion_data_dir, tmp_path):
  """The logits are recovered from behind the softmax: every number equals the one computed
  independently from the model's own probabilities (calibration's probs= path)."""
  import numpy as np
  from ls_keras import calibration

  root, model = foreign_classifier
  out = tmp_path / "out"
  before = sorted(os.listdir(root))
  result = invoke(
    "calibrate",
    f"--model_file={root / 'classifier.keras'}",
    "--dataset=fashion_mnist",
    f"--data_dir={fashion_data_dir}",
    "--eval_examples=2000",
    f"--output_dir={out}",
  )
  assert result.code == 0, result.err[-3000:]
  assert sorted(os.listdir(root)) == before  # Nothing written next to the model.
  for name in ("calibration.json", "reliability.png", "table3.md"):
    assert (out / name).stat().st_size > 0
  report = json.load(open(out / "calibration.json"))
  assert "softmax undone" in report["logits"] and report["temperature_at_bound"] == ""
  x_val, y_val = fashion_arrays(fashion_data_dir, "validation", 2000)
  x_test, y_test = fashion_arrays(fashion_data_dir, "test", 2000)
  p_val, p_test = (np.asarray(model.predict(x, verbose=0), np.float64) for x in (x_val, x_test))
  p_val, p_test = (p / p.sum(1, keepdims=True) for p in (p_val, p_test))
  expected = calibration.summary(y_test, probs=p_test)
  for key in ("accuracy", "nll", "ece", "brier"):
    assert report["uncalibrated"][key] == pytest.approx(expected[key], abs=2e-4), key
  t = calibration.fit_temperature(y_val, np.log(p_val))
  assert report["temperature"] == pytest.approx(t, rel=1e-3)
  assert report["uncalibrated"]["accuracy"] > 0.6  # It learned something.
  table = (out / "table3.md").read_text()
  assert "classifier.keras" in table and f"({t:.2f})" in table and table.strip() in result.out


def test_calibrate_a_trusted_saved_model_uses_its_serve_output(
  foreign_classifier, fashion_data_dir, tmp_path
):
  root, _ = foreign_classifier
  args = [
    f"--model_file={root / 'saved_model'}",
    "--dataset=fashion_mnist",
    f"--data_dir={fashion_data_dir}",
    "--eval_examples=1000",
  ]
  refused = invoke("calibrate", *args, f"--output_dir={tmp_path / 'no'}")
  assert refused.code == 2 and "--trust_saved_model" in refused.err
  assert not (tmp_path / "no").exists()
  out = tmp_path / "out"
  result = invoke("calibrate", *args, "--trust_saved_model", f"--output_dir={out}")
  assert result.code == 0, result.err[-3000:]
  report = json.load(open(out / "calibration.json"))
  keras_out = tmp_path / "keras"
  same = invoke(
    "calibrate", *args[1:], f"--model_file={root / 'classifier.keras'}", f"--output_dir={keras_out}"
  )
  assert same.code == 0, same.err[-3000:]
  other = json.load(open(keras_out / "calibration.json"))
  assert report["logits"] == "its serve output"
  assert report["temperature"] == pytest.approx(other["temperature"], rel=1e-4)
  assert report["uncalibrated"]["ece"] == pytest.approx(other["uncalibrated"]["ece"], abs=1e-5)


def test_a_perfect_fit_prints_a_warning_for_a_temperature_at_its_bound(tmp_path):
  """Validation data classified perfectly: no finite T is optimal; the command says so."""
  from ls_keras.core import workdir

  run = fake_run(tmp_path / "run", alpha=0.0)
  labels = np.arange(300) % 10
  run.save_logits("validation", np.eye(10)[labels] * 20.0, labels)
  result = invoke(
    "calibrate", f"--workdir={run.path}", f"--output_dir={tmp_path / 'out'}", "--num_resamples=0"
  )
  assert result.code == 0, result.err[-3000:]
  assert "Warning: " in result.out and "classified perfectly" in result.out
  record = json.load(open(workdir.Workdir(run.path).file("calibration.json")))
  assert record["temperature"] == 0.01 and record["temperature_at_bound"] == "min"


def test_runs_of_other_losses_are_not_seeds_of_the_baseline(tmp_path):
  """An online-LS or focal run has alpha 0, but is its own row, never the baseline's seed."""
  from ls_keras.calibration import report

  base = fake_run(tmp_path / "base", alpha=0.0, n=300)
  focal = fake_run(tmp_path / "focal", alpha=0.0, seed=1, temperature=3.0, n=300)
  record = json.load(open(focal.file("config.json")))
  record["config"].update(loss="focal", focal_gamma=2.0)
  json.dump(record, open(focal.file("config.json"), "w"))
  alone = report.calibrate_runs([base.path], str(tmp_path / "alone"), num_resamples=0)
  both = report.calibrate_runs([base.path, focal.path], str(tmp_path / "both"), num_resamples=0)
  baseline_row = alone["table"].splitlines()[2].split("|")[2:4]  # Baseline ECE, then TS's.
  assert both["table"].splitlines()[2].split("|")[2:4] == baseline_row
  assert "| focal loss (gamma 2) | 1 |" in both["table"]
  assert [r["method"] for r in both["runs"]] == ["alpha 0", "focal loss (gamma 2)"]
