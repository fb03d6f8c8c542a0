import json
import os

import keras
import numpy as np
import pytest

from conftest import invoke, tiny_train_args
from ls_keras import mutual_information
from ls_keras.core.errors import UserError


def brute_force(y):
  """The paper's formula with explicit Gaussian densities, no log-sum-exp."""
  n, copies = y.shape
  mu = y.mean(1)
  sigma = np.sqrt(np.mean((y - mu[:, None]) ** 2))

  def pdf(v, m):
    return np.exp(-((v - m) ** 2) / (2 * sigma**2)) / (sigma * np.sqrt(2 * np.pi))

  total = 0.0
  for x in range(n):
    for c in range(copies):
      total += np.log(pdf(y[x, c], mu[x])) - np.log(np.mean(pdf(y[x, c], mu)))
  return total / (n * copies)


@pytest.mark.parametrize("seed, spread", [(0, 0.5), (1, 2.0), (2, 10.0)])
def test_agrees_with_brute_force_reference(seed, spread):
  rng = np.random.RandomState(seed)
  y = rng.normal(0, spread, (40, 1)) + rng.normal(0, 1, (40, 5))
  result = mutual_information.mutual_information(y)
  assert result["mi"] == pytest.approx(brute_force(y), abs=1e-9)
  assert 0.0 <= result["mi"] <= np.log(40)


def test_identical_outputs_carry_no_information():
  assert mutual_information.mutual_information(np.full((30, 4), 2.5))["mi"] == 0.0
  rng = np.random.RandomState(0)
  same_mean = rng.normal(0, 1, (1, 200)).repeat(
    600, 0
  )  # Every example gives the same distribution.
  assert mutual_information.mutual_information(same_mean)["mi"] == pytest.approx(0.0, abs=1e-9)


def test_well_separated_low_noise_outputs_reach_log_n():
  rng = np.random.RandomState(0)
  y = np.arange(600)[:, None] * 10.0 + rng.normal(0, 0.01, (600, 5))
  result = mutual_information.mutual_information(y)
  assert result["mi"] == pytest.approx(np.log(600), abs=1e-6)
  assert result["log_n"] == pytest.approx(np.log(600))


def test_two_clusters_give_log_2():
  """Examples within a cluster have the same mean (their copies permute one noise draw)."""
  rng = np.random.RandomState(0)
  noise = rng.normal(0, 1, 5)
  y = np.repeat([[0.0], [100.0]], 300, axis=0) + np.stack(
    [rng.permutation(noise) for _ in range(600)]
  )
  assert mutual_information.mutual_information(y)["mi"] == pytest.approx(np.log(2), abs=1e-6)


@pytest.mark.parametrize("shape", [(1, 5), (10, 1), (5,)])
def test_too_few_examples_or_copies_is_an_error(shape):
  with pytest.raises(UserError, match="N >= 2"):
    mutual_information.mutual_information(np.zeros(shape))


def test_model_without_logits_layer_is_an_error():
  model = keras.Sequential(
    [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10, name="out")]
  )
  differences = mutual_information.LogitDifferences(
    np.zeros((4, 28, 28, 1), np.float32), (0, 1), 2, "shift"
  )
  with pytest.raises(UserError, match="no layer named penultimate or logits"):
    differences(model, 0)


def test_augmented_copies_differ_and_are_reproducible():
  images = np.random.RandomState(0).uniform(0, 255, (3, 28, 28, 1)).astype(np.float32)
  differences = mutual_information.LogitDifferences(images, (0, 1), 4, "shift", seed=1)
  a, b = differences.augmented(5).numpy(), differences.augmented(5).numpy()
  np.testing.assert_array_equal(a, b)
  assert a.shape == (12, 28, 28, 1)
  assert len({x.tobytes() for x in a[:4]}) > 1  # Copies of one example are augmented differently.


@pytest.fixture(scope="module")
def mi_run(fashion_data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("mi") / "w")
  result = invoke(
    "train",
    *tiny_train_args(
      fashion_data_dir,
      workdir,
      "--mi_every_steps=16",
      "--mi_examples_per_class=20",
      "--mi_augmentations=3",
    ),
  )
  assert result.code == 0, result.err[-3000:]
  return workdir


def test_callback_writes_a_finite_series_during_training(mi_run):
  series = json.load(open(os.path.join(mi_run, "mutual_information.json")))
  assert [p["step"] for p in series] == [0, 16, 32, 48, 64]  # 2 epochs x 32 steps, every 16.
  assert all(0.0 <= p["mi"] <= np.log(40) for p in series)
  assert series[-1]["mi"] > 0.0
  from tensorboard.backend.event_processing import event_accumulator

  acc = event_accumulator.EventAccumulator(os.path.join(mi_run, "tb", "train"))
  acc.Reload()
  assert len(acc.Tensors("mutual_information")) == 5


def test_cli_plots_series_and_recomputes_from_checkpoints(mi_run, fashion_data_dir, tmp_path):
  result = invoke("mutual_info", f"--workdir={mi_run}", f"--output_dir={tmp_path}")
  assert result.code == 0, result.err[-3000:]
  assert open(tmp_path / "mutual_information.png", "rb").read(4) == b"\x89PNG"
  out, data = f"--output_dir={tmp_path}", f"--data_dir={fashion_data_dir}"
  result = invoke("mutual_info", f"--workdir={mi_run}", out, "--recompute", data)
  assert result.code == 0, result.err[-3000:]
  recomputed = json.load(open(os.path.join(mi_run, "mutual_information_recomputed.json")))
  recorded = {
    p["step"]: p["mi"] for p in json.load(open(os.path.join(mi_run, "mutual_information.json")))
  }
  assert [p["step"] for p in recomputed] == [32, 64]  # The two kept checkpoints.
  for p in recomputed:  # Same weights, same augmentation draw: the same estimate.
    assert p["mi"] == pytest.approx(recorded[p["step"]], abs=0.05)
