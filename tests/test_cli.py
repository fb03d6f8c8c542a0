"""cli.py: quick answers before TensorFlow starts, its start-up chatter filtered, plain logs."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, tiny_train_args
from ls_keras import cli

# Runs a command in a fresh process and reports whether TensorFlow was imported for it.
_PROBE = """
import sys
from ls_keras import cli, train
code = cli.invoke(train, sys.argv[1:])
print(code, "tensorflow" in sys.modules)
"""


def _probe(*args):
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  return subprocess.run(
    [sys.executable, "-c", _PROBE, *map(str, args)],
    capture_output=True,
    text=True,
    cwd=REPO,
    env=env,
    timeout=120,
  )


@pytest.mark.parametrize(
  "extra, answer",
  [
    ((), "0 False"),  # Finished: its metrics, no training.
    (("--alpha=0.3",), "2 False"),  # Holds another run.
    (("--alpha=3",), "2 False"),  # A bad flag.
  ],
)
def test_answers_that_need_no_tensorflow_come_without_it(
  tiny_runs, fashion_data_dir, extra, answer
):
  result = _probe(*tiny_train_args(fashion_data_dir, tiny_runs[0.1], "--alpha=0.1", *extra))
  assert result.stdout.strip().splitlines()[-1] == answer, result.stderr[-2000:]


def test_a_finished_run_is_answered_in_plain_words(tiny_runs, fashion_data_dir):
  args = tiny_train_args(fashion_data_dir, tiny_runs[0.1], "--alpha=0.1")
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  result = subprocess.run(
    [sys.executable, "-m", "ls_keras.train", *args],
    capture_output=True,
    text=True,
    cwd=REPO,
    env=env,
    timeout=120,
  )
  assert result.returncode == 0
  assert result.stderr == f"{tiny_runs[0.1]} already holds this finished run; nothing to do.\n"
  assert set(json.loads(result.stdout)) == {"validation", "test"}


def test_a_fresh_run_shows_no_tensorflow_start_up_chatter(fashion_data_dir, tmp_path):
  args = tiny_train_args(
    fashion_data_dir, tmp_path / "w", "--model=mlp", "--hidden_units=8", "--epochs=1"
  )
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  result = subprocess.run(
    [sys.executable, "-m", "ls_keras.train", *args, "--train_examples=512"],
    capture_output=True,
    text=True,
    cwd=REPO,
    env=env,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  for chatter in ("cuInit", "oneDNN", "cpu_feature_guard", "absl::InitializeLog", "I0000"):
    assert chatter not in result.stderr, result.stderr
  assert "epoch 1/1: loss=" in result.stderr  # Our own lines, without absl's prefix.


def test_tensorflow_start_up_lines_keep_what_matters():
  lines = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    "I0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on. You may see ...\n",
    "I0000 00:00:1.0 1 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU ...\n",
    "E0000 00:00:1.0 1 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error\n",
    "W0000 00:00:1.0 1 some_op.cc:9] a real warning\n",
  ]
  assert cli.tensorflow_lines_worth_showing(lines) == [lines[4]]
  # With a driver installed, a failing cuInit is a real error: shown.
  assert cli.tensorflow_lines_worth_showing(lines[3:]) == lines[3:]


def test_help_lists_the_models_and_flagfile():
  result = subprocess.run(
    [sys.executable, "-m", "ls_keras.train", "--help"],
    capture_output=True,
    text=True,
    cwd=REPO,
    timeout=120,
  )
  assert "--model: <small_cnn|mlp|alexnet|resnet56|inception_v4>" in result.stdout
  assert "--flagfile" in result.stdout


def test_only_the_retracing_warning_about_our_loop_is_dropped():
  """A sweep traces each run's new loop once, which TensorFlow reports as retracing."""
  import logging as std_logging

  def record(function):
    message = (
      f"5 out of the last 9 calls to <function {function} at 0x7f51> triggered tf.function "
      "retracing. Tracing is expensive ..."
    )
    return std_logging.LogRecord("tf", std_logging.WARNING, "/x/tf/f.py", 1, message, (), None)

  keep = cli._OnlyOurInfo().filter
  assert not keep(record("Loop.__init__.<locals>.train_steps"))
  assert keep(record("my_step"))  # A user's function: their warning to see.
