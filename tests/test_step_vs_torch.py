"""tools/step_vs_torch.py: oneDNN's verbose log per primitive, per-step costs, a real run."""

import importlib.util
import os
import types

import pytest

from conftest import REPO


def _tool():
  spec = importlib.util.spec_from_file_location(
    "step_vs_torch", os.path.join(REPO, "tools", "step_vs_torch.py")
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _exec(stamp, primitive, implementation, propagation, ms):
  return (
    f"onednn_verbose,v1,{stamp},primitive,exec,cpu,{primitive},{implementation},{propagation},"
    f"src:f32::blocked:acdb::f0,,alg:convolution_direct,mb8_ic3oc4,{ms}"
  )


def test_onednn_time_is_summed_per_primitive_inside_the_window_only():
  tool = _tool()
  lines = [
    "onednn_verbose,v1,primitive,info,template:timestamp,operation,engine,primitive",
    _exec(999.0, "convolution", "brg_conv_fwd:avx2", "forward_training", 50.0),  # Warm-up.
    "onednn_verbose,v1,1000.5,primitive,create:cache_miss,cpu,convolution,x,forward_training,,,,,1",
    _exec(1000.0, "convolution", "brg_conv_fwd:avx2", "forward_training", 1.5),
    _exec(1001.0, "convolution", "brg_conv_fwd:avx512", "forward_training", 2.0),
    _exec(1002.0, "convolution", "jit:avx2", "backward_weights", 4.0),
    _exec(1003.0, "reorder", "jit:uni", "undef", 0.25),
    _exec(1004.0, "shuffle", "ref:any", "forward_training", 0.5),
    _exec(1005.0, "convolution", "jit:avx2", "backward_data", "not-a-number"),
    "some other output line",
    _exec(2001.0, "convolution", "jit:avx2", "backward_data", 9.0),  # After the window.
  ]
  groups = tool.onednn_time_by_primitive(lines, 1000.0, 2000.0)
  assert groups == {
    "convolution forward": {
      "ms": 3.5,
      "calls": 2,
      "implementations": ["brg_conv_fwd:avx2", "brg_conv_fwd:avx512"],
    },
    "convolution filter gradient": {"ms": 4.0, "calls": 1, "implementations": ["jit:avx2"]},
    "layout reorders": {"ms": 0.25, "calls": 1, "implementations": ["jit:uni"]},
    "other": {"ms": 0.5, "calls": 1, "implementations": ["ref:any"]},
  }


def test_a_log_without_the_version_field_is_read_the_same():
  line = _exec(1000.0, "convolution", "jit:avx2", "backward_data", 2.5).replace(",v1,", ",", 1)
  groups = _tool().onednn_time_by_primitive([line], 0.0, 2000.0)
  assert groups == {
    "convolution input gradient": {"ms": 2.5, "calls": 1, "implementations": ["jit:avx2"]}
  }


def test_per_step_costs_come_from_the_difference_of_two_readings():
  tool = _tool()

  def usage(user, system, voluntary, involuntary):
    return types.SimpleNamespace(
      ru_utime=user, ru_stime=system, ru_nvcsw=voluntary, ru_nivcsw=involuntary
    )

  stats = tool.per_step(usage(1.0, 0.5, 10, 5), usage(3.0, 0.9, 410, 105), 2.0, 4, 128)
  assert stats == pytest.approx(
    {
      "images_per_s": 256.0,
      "wall_ms": 500.0,
      "cpu_ms": 600.0,
      "system_ms": 100.0,
      "context_switches": 125.0,
    }
  )


def test_render_puts_the_peers_side_by_side_and_marks_what_one_of_them_lacks():
  tool = _tool()
  common = {"images_per_s": 400, "wall_ms": 320, "cpu_ms": 600, "system_ms": 40}
  results = {
    "ls_keras": {
      **common,
      "context_switches": 2500,
      "onednn": {
        "batch norm gradient": {"ms": 50.0, "calls": 57},
        "layout reorders": {"ms": 20.0, "calls": 170},
      },
    },
    "PyTorch": {
      **common,
      "context_switches": 10,
      "onednn": {"layout reorders": {"ms": 2.0, "calls": 170}},
    },
  }
  table = tool.render(results).splitlines()
  assert table[0].split() == ["ls_keras", "PyTorch"]
  rows = {line[:34].strip(): line[34:].split() for line in table[1:]}
  assert rows["context switches per step"] == ["2500", "10"]
  assert rows["batch norm gradient"] == ["50.0", "ms", "(57)", "-"]
  assert rows["layout reorders"] == ["20.0", "ms", "(170)", "2.0", "ms", "(170)"]
  assert rows["all oneDNN calls"] == ["70.0", "ms", "2.0", "ms"]
  names = [line[:34].strip() for line in table]
  assert names.index("batch norm gradient") < names.index("layout reorders")  # Costliest first.


@pytest.mark.parametrize(
  "flag, named",
  [
    ("--precision=fp8", "--precision=fp8"),
    ("--steps=0", "--steps=0"),
    ("--batch=-1", "--batch=-1"),
  ],
)
def test_bad_flags_exit_2_naming_the_value_before_anything_runs(flag, named, capsys):
  with pytest.raises(SystemExit) as exit_info:
    _tool().main([flag])
  assert exit_info.value.code == 2 and named in capsys.readouterr().err


@pytest.mark.slow
def test_ours_counts_one_oneDNN_call_per_convolution_and_gradient_in_a_real_step():
  # small_cnn has two convolutions: per step two forward calls and two filter gradients,
  # and one input gradient (the first convolution's input is the image: no gradient).
  spec = {"model": "small_cnn", "precision": "float32", "steps": 2, "batch": 16}
  spec.update(shape=(28, 28, 1), alpha=0.1, classes=10, learning_rate=0.01)
  result = _tool().measure(["ours"], spec, repeats=1)["ours"]
  onednn = result["onednn"]
  assert onednn["convolution forward"]["calls"] == 2
  assert onednn["convolution filter gradient"]["calls"] == 2
  assert onednn["convolution input gradient"]["calls"] == 1
  assert all(group["ms"] > 0 for group in onednn.values())
  assert result["images_per_s"] > 0 and result["cpu_ms"] > 0 and result["context_switches"] >= 0
